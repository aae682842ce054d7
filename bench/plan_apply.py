"""Benchmark: jsops against raw JetStream API baselines, side by side in one run.

    .venv/bin/python bench/plan_apply.py [--streams 1000] [--consumers 3] [--scale 1 10]
                                         [--repeat 3] [--write-docs]

For each scale, on fresh nats-servers (memory-backed temp stores), it times whole
processes, as a user runs them, alternating the runs it repeats and taking medians:

* ``raw create``: a nats-py script that creates every stream (and every bucket's
  stream), then every consumer, with pipelined (concurrent) raw requests: apply's floor;
* ``apply``: ``jsops apply --auto-approve`` from empty, with a cold parse cache;
  ``apply (warm)`` the same after a ``jsops plan`` of those manifests (not timed) left
  the caches warm, as in a CI job that plans, then applies;
* ``raw list``: a script doing only the paged ``STREAM.LIST``/``CONSUMER.LIST``: plan's floor;
* ``plan``: ``jsops plan --detailed-exitcode`` on the applied state (no changes), parse
  cache warm (a repeated plan), and ``plan (cold)`` with ``JSOPS_NO_CACHE=1``;
* the newer work, each on the applied state: ``plan --format json``, ``apply PLANFILE``
  (saved-plan verification: plans again and compares, then nothing to do), ``status``;
  drift digests and buckets (1 in 100 of the declared resources is a KeyValue bucket)
  are inside every plan above; ``json / plan`` and ``FILE / plan`` are their ratios to
  plan (each within 1.1x: new work must not slow plan by more than 10%);
* peak RSS of each jsops process (GNU time ``%M``), and ``jsops --help``.

Targets (issue 15): plan <= 2.0x raw list at 1k and <= 2.5x at 10k, apply <= 1.2x raw
create, peak RSS <= 200 MB at 10k, ``jsops --help`` under 0.15 s. ``--write-docs``
replaces the results table in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reconciler.server import free_port, start_server  # noqa: E402

BUCKET_EVERY = 100  # one declared stream in this many is a KeyValue bucket instead
APPLY_ROUNDS_UP_TO = 2000  # streams: creates timed `--repeat` times up to this many

RAW_CREATE = r"""
import asyncio, json, sys, nats
async def main(url, n, c):
    nc = await nats.connect(url)
    async def req(subj, body):
        msg = await nc.request(subj, json.dumps(body).encode(), timeout=60)
        reply = json.loads(msg.data)
        assert "error" not in reply, reply
    sem = asyncio.Semaphore(256)
    async def bounded(subj, body):
        async with sem:
            await req(subj, body)
    def stream(i):
        if i % BUCKET_EVERY == BUCKET_EVERY - 1:  # what nats.go's CreateKeyValue sends
            return f"KV_B{i:05d}", {"name": f"KV_B{i:05d}", "subjects": [f"$KV.B{i:05d}.>"],
                "max_msgs_per_subject": 1, "discard": "new", "allow_rollup_hdrs": True,
                "deny_delete": True, "allow_direct": True, "storage": "memory",
                "num_replicas": 1, "duplicate_window": 120000000000, "max_bytes": -1,
                "max_age": 0, "max_msg_size": -1, "pedantic": False}
        return f"S{i:05d}", {"name": f"S{i:05d}", "subjects": [f"bench.s{i:05d}.>"],
            "max_age": 604800000000000, "storage": "memory", "max_bytes": 1048576,
            "pedantic": True}
    streams = [stream(i) for i in range(n)]
    await asyncio.gather(*(bounded(f"$JS.API.STREAM.CREATE.{name}", body)
                           for name, body in streams))
    await asyncio.gather(*(bounded(f"$JS.API.CONSUMER.CREATE.S{i:05d}.C{j}", {
        "stream_name": f"S{i:05d}", "action": "create", "pedantic": True,
        "config": {"durable_name": f"C{j}", "ack_policy": "explicit", "max_deliver": 5,
                   "filter_subject": f"bench.s{i:05d}.{j}"}})
        for i in range(n) for j in range(c) if i % BUCKET_EVERY != BUCKET_EVERY - 1))
    await nc.close()
BUCKET_EVERY = int(sys.argv[4])
asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""

RAW_LIST = r"""
import asyncio, json, sys, nats
async def main(url):
    nc = await nats.connect(url, pending_size=64 * 1024 * 1024)
    async def paged(subj, key):
        out, off = [], 0
        while True:
            msg = await nc.request(subj, json.dumps({"offset": off}).encode(), timeout=60)
            r = json.loads(msg.data); page = r.get(key) or []
            out += page; off += len(page)
            if not page or off >= r["total"]:
                return out
    streams = await paged("$JS.API.STREAM.LIST", "streams")
    sem = asyncio.Semaphore(64)
    async def consumers(name):
        async with sem:
            return await paged(f"$JS.API.CONSUMER.LIST.{name}", "consumers")
    lists = await asyncio.gather(*(consumers(s["config"]["name"]) for s in streams))
    print(len(streams), sum(len(x) for x in lists))
    await nc.close()
asyncio.run(main(sys.argv[1]))
"""


def write_project(root: Path, url: str, n: int, c: int, files: int = 50) -> None:
    (root / "manifests").mkdir(parents=True)
    (root / "jsops.yaml").write_text(
        f"project: bench\nenvironments:\n  bench:\n    servers:\n      - {url}\n    timeout: 60\n"
    )
    chunks: list[list[str]] = [[] for _ in range(files)]
    for i in range(n):
        if i % BUCKET_EVERY == BUCKET_EVERY - 1:
            chunks[i % files].append(
                textwrap.dedent(f"""\
                apiVersion: jsops/v1
                kind: KeyValue
                metadata: {{name: B{i:05d}}}
                spec: {{storage: memory}}
                """)
            )
            continue
        docs = [
            textwrap.dedent(f"""\
            apiVersion: jsops/v1
            kind: Stream
            metadata: {{name: S{i:05d}}}
            spec:
              subjects: ["bench.s{i:05d}.>"]
              max_age: 7d
              storage: memory
              max_bytes: 1MiB
            """)
        ]
        for j in range(c):
            docs.append(
                textwrap.dedent(f"""\
                apiVersion: jsops/v1
                kind: Consumer
                metadata: {{name: C{j}, stream: S{i:05d}}}
                spec: {{ack_policy: explicit, max_deliver: 5, filter_subject: "bench.s{i:05d}.{j}"}}
                """)
            )
        chunks[i % files].append("---\n".join(docs))
    for k, chunk in enumerate(chunks):
        if chunk:
            (root / "manifests" / f"part{k:03d}.yaml").write_text("---\n".join(chunk))


def timed(
    cmd: list[str], cwd: Path, env: dict[str, str] | None = None, ok: tuple[int, ...] = (0, 2)
) -> tuple[float, float]:
    """Wall time (s) and peak RSS (MB) of one process (GNU time ``%M``)."""
    gnu_time = shutil.which("time") or "/usr/bin/time"
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        wrapped = (
            [gnu_time, "-q", "-f", "%M", "-o", rss.name, *cmd] if Path(gnu_time).exists() else cmd
        )
        start = time.perf_counter()
        proc = subprocess.run(
            wrapped, cwd=cwd, capture_output=True, text=True, check=False, env=env
        )
        elapsed = time.perf_counter() - start
        if proc.returncode not in ok:
            raise SystemExit(f"{cmd} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        text = rss.read().strip()
    return elapsed, (int(text.splitlines()[-1]) / 1024 if text else 0.0)


def _median(runs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(r[0] for r in runs), max(r[1] for r in runs)


def run_scale(n: int, c: int, repeat: int) -> dict[str, Any]:
    py = sys.executable
    jsops = str(Path(py).parent / "jsops")
    buckets = n // BUCKET_EVERY
    results: dict[str, Any] = {"streams": n - buckets, "buckets": buckets}
    results["consumers"] = (n - buckets) * c
    with tempfile.TemporaryDirectory(prefix="jsops-bench-") as tmp:
        tmpdir = Path(tmp)
        base_env = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "JSOPS_"))}
        cold = {**base_env, "JSOPS_NO_CACHE": "1"}
        results["help_s"] = min(timed([jsops, "--help"], tmpdir)[0] for _ in range(3))
        # Creates are timed on fresh servers, raw then jsops, alternating: `repeat` rounds
        # up to APPLY_ROUNDS_UP_TO streams (a 10k round takes a minute or two), else one.
        rounds = repeat if n <= APPLY_ROUNDS_UP_TO else 1
        creates: list[float] = []
        applies: list[tuple[float, float]] = []
        warm_applies: list[tuple[float, float]] = []
        apply = [jsops, "apply", "--auto-approve", "-e", "bench"]
        server = None
        try:
            for r in range(rounds):
                raw_server = start_server(port=free_port(), store_dir=tmpdir / f"raw-store{r}")
                try:
                    url = raw_server.url
                    create = [py, "-c", RAW_CREATE, url, str(n), str(c), str(BUCKET_EVERY)]
                    creates.append(timed(create, tmpdir)[0])
                finally:  # its streams' housekeeping would load every run after
                    raw_server.stop()
                if server is not None:
                    server.stop()
                # apply (warm): what CI does after `jsops plan` of the same manifests on
                # the same runner (the plan, not timed, leaves the caches warm)
                warm_server = start_server(port=free_port(), store_dir=tmpdir / f"warm-store{r}")
                try:
                    warm_proj = tmpdir / f"warm-project{r}"
                    write_project(warm_proj, warm_server.url, n, c)
                    primed = {**base_env, "JSOPS_CACHE_DIR": str(tmpdir / f"warm-cache{r}")}
                    timed([jsops, "plan", "-e", "bench"], warm_proj, primed)
                    warm_applies.append(timed(apply, warm_proj, primed))
                finally:
                    warm_server.stop()
                server = start_server(port=free_port(), store_dir=tmpdir / f"jsops-store{r}")
                proj = tmpdir / f"project{r}"
                write_project(proj, server.url, n, c)
                # a cold parse cache for each apply; the last one's is the warm cache after
                warm = {**base_env, "JSOPS_CACHE_DIR": str(tmpdir / f"cache{r}")}
                applies.append(timed(apply, proj, warm))
            assert server is not None
            results["raw_create_s"] = statistics.median(creates)
            results["apply_s"], results["apply_mb"] = _median(applies)
            results["apply_warm_s"], results["apply_warm_mb"] = _median(warm_applies)
            raw_list = [py, "-c", RAW_LIST, server.url]
            plan = [jsops, "plan", "-e", "bench", "--detailed-exitcode"]
            saved = proj / "saved.plan"  # a plan file of the applied state: all unchanged
            timed([*plan, "--out", str(saved)], proj, warm, ok=(0,))
            apply_saved = [jsops, "apply", "-e", "bench", str(saved)]
            runs: dict[str, list[tuple[float, float]]] = {}
            for _ in range(repeat):  # alternating, so a slow moment hits every measure
                runs.setdefault("raw_list", []).append(timed(raw_list, tmpdir))
                runs.setdefault("plan", []).append(timed(plan, proj, warm, ok=(0,)))
                runs.setdefault("plan_cold", []).append(timed(plan, proj, cold, ok=(0,)))
                json_plan = [*plan, "--format", "json"]
                runs.setdefault("plan_json", []).append(timed(json_plan, proj, warm, ok=(0,)))
                runs.setdefault("apply_saved", []).append(timed(apply_saved, proj, warm, ok=(0,)))
            status = [jsops, "status", "-e", "bench", "--format", "json"]
            if subprocess.run([jsops, "status", "--help"], capture_output=True).returncode == 0:
                runs["status"] = [timed(status, proj, warm, ok=(0,)) for _ in range(repeat)]
            for key, measured in runs.items():
                results[f"{key}_s"], results[f"{key}_mb"] = _median(measured)
        finally:
            if server is not None:
                server.stop()
    results["plan_ratio"] = results["plan_s"] / results["raw_list_s"]
    results["plan_cold_ratio"] = results["plan_cold_s"] / results["raw_list_s"]
    results["apply_ratio"] = results["apply_s"] / results["raw_create_s"]
    results["apply_warm_ratio"] = results["apply_warm_s"] / results["raw_create_s"]
    # the newer work against plan (issue 15: none may cost plan more than 10%)
    results["plan_json_ratio"] = results["plan_json_s"] / results["plan_s"]
    results["apply_saved_ratio"] = results["apply_saved_s"] / results["plan_s"]
    jsops_mb = [k for k in results if k.endswith("_mb") and k != "raw_list_mb"]
    peak = max(jsops_mb, key=lambda k: results[k])
    results["peak_mb"] = results[peak]
    results["peak_of"] = PEAK_NAMES.get(peak, peak)
    return results


PEAK_NAMES = {
    "plan_mb": "plan",
    "plan_cold_mb": "cold plan",
    "plan_json_mb": "plan json",
    "apply_mb": "apply",
    "apply_warm_mb": "warm apply",
    "apply_saved_mb": "apply FILE",
    "status_mb": "status",
}


COLUMNS = [  # (key, heading, format)
    ("streams", "streams", "{:,.0f}"),
    ("consumers", "consumers", "{:,.0f}"),
    ("buckets", "KV", "{:,.0f}"),
    ("raw_list_s", "raw list", "{:.2f} s"),
    ("plan_s", "plan", "{:.2f} s"),
    ("plan_ratio", "plan / raw", "{:.2f}x"),
    ("plan_cold_s", "plan (cold)", "{:.2f} s"),
    ("plan_cold_ratio", "cold / raw", "{:.2f}x"),
    ("raw_create_s", "raw create", "{:.2f} s"),
    ("apply_s", "apply", "{:.2f} s"),
    ("apply_ratio", "apply / raw", "{:.2f}x"),
    ("apply_warm_s", "apply (warm)", "{:.2f} s"),
    ("apply_warm_ratio", "warm / raw", "{:.2f}x"),
    ("plan_json_s", "plan json", "{:.2f} s"),
    ("plan_json_ratio", "json / plan", "{:.2f}x"),
    ("apply_saved_s", "apply FILE", "{:.2f} s"),
    ("apply_saved_ratio", "FILE / plan", "{:.2f}x"),
    ("status_s", "status", "{:.2f} s"),
    ("plan_mb", "plan MB", "{:.0f}"),
    ("apply_mb", "apply MB", "{:.0f}"),
    ("peak_mb", "peak MB", "{:.0f}"),
    ("peak_of", "peak in", "{}"),
    ("help_s", "--help", "{:.2f} s"),
]


def table(rows: list[dict[str, Any]]) -> str:
    cols = [c for c in COLUMNS if any(c[0] in r for r in rows)]
    lines = ["| " + " | ".join(h for _, h, _ in cols) + " |"]
    lines.append("|" + "|".join("---:" for _ in cols) + "|")
    for r in rows:
        cells = [fmt.format(r[k]) if k in r else "-" for k, _, fmt in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def write_docs(rows: list[dict[str, Any]], repeat: int) -> Path:
    doc = ROOT / "docs" / "benchmarks.md"
    text = doc.read_text()
    server = subprocess.run(
        [str(Path(sys.executable).parent / "nats-server"), "--version"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    block = (
        f"{BEGIN}\n"
        f"Run of {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {os.cpu_count()} cores, "
        f"{server or 'nats-server'}, Python {platform.python_version()}, "
        f"medians of {repeat} alternating runs (`bench/plan_apply.py --write-docs`).\n\n"
        f"{table(rows)}\n{END}"
    )
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) :]
    else:
        text += "\n" + block + "\n"
    doc.write_text(text)
    return doc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--consumers", type=int, default=3)
    parser.add_argument("--scale", type=int, nargs="+", default=[1])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    # jsops as installed: pip compiles an installed package's bytecode, but an editable
    # checkout run with PYTHONDONTWRITEBYTECODE=1 (as CI machines often are) compiles
    # every module again on every run (0.1 s of each jsops process).
    compileall.compile_dir(ROOT / "reconciler", quiet=1)
    rows = []
    for scale in args.scale:
        rows.append(run_scale(args.streams * scale, args.consumers, args.repeat))
        print(table(rows[-1:]) if not args.json else json.dumps(rows[-1]), flush=True)
    if args.json:
        return 0
    print()
    print(table(rows))
    if args.write_docs:
        print(f"wrote {write_docs(rows, args.repeat)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
