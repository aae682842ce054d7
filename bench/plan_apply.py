"""Benchmark: jsops plan/apply against raw JetStream API baselines on one server.

    .venv/bin/python bench/plan_apply.py [--streams 1000] [--consumers 3] [--scale 1 10]

For each scale, on a fresh nats-server (memory-backed temp store), it measures whole
processes, as a user runs them:

* ``raw create``: a Python/nats-py script that creates every stream, then every
  consumer, with pipelined (concurrent) raw requests: the floor for ``apply``;
* ``jsops apply`` from empty (``--auto-approve``);
* ``raw list``: a script that lists every stream and consumer with paged
  ``STREAM.LIST``/``CONSUMER.LIST`` requests: the floor for ``plan``;
* ``jsops plan`` on the applied state (must be "no changes");
* peak RSS of the jsops processes.

Targets (from the project brief): plan <= 3x raw list, apply <= 1.5x raw create,
10x the resources costs about 10x the time, under 300 MB.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reconciler.server import free_port, start_server  # noqa: E402

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
    await asyncio.gather(*(bounded(f"$JS.API.STREAM.CREATE.S{i:05d}", {
        "name": f"S{i:05d}", "subjects": [f"bench.s{i:05d}.>"], "max_age": 604800000000000,
        "storage": "memory", "max_bytes": 1048576, "pedantic": True}) for i in range(n)))
    await asyncio.gather(*(bounded(f"$JS.API.CONSUMER.CREATE.S{i:05d}.C{j}", {
        "stream_name": f"S{i:05d}", "action": "create", "pedantic": True,
        "config": {"durable_name": f"C{j}", "ack_policy": "explicit", "max_deliver": 5,
                   "filter_subject": f"bench.s{i:05d}.{j}"}})
        for i in range(n) for j in range(c)))
    await nc.close()
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


def timed(cmd: list[str], cwd: Path) -> tuple[float, int, str]:
    """Wall time, peak RSS (KiB) of that process alone (GNU time), stdout."""
    gnu_time = shutil.which("time") or "/usr/bin/time"
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        wrapped = (
            [gnu_time, "-q", "-f", "%M", "-o", rss.name, *cmd] if Path(gnu_time).exists() else cmd
        )
        start = time.perf_counter()
        proc = subprocess.run(wrapped, cwd=cwd, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - start
        if proc.returncode not in (0, 2):
            raise SystemExit(f"{cmd} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        text = rss.read().strip()
    return elapsed, int(text.splitlines()[-1]) if text else 0, proc.stdout


def run_scale(n: int, c: int, repeat: int) -> dict[str, float]:
    py = sys.executable
    jsops = str(Path(py).parent / "jsops")
    results: dict[str, float] = {"streams": n, "consumers": n * c}
    with tempfile.TemporaryDirectory(prefix="jsops-bench-") as tmp:
        tmpdir = Path(tmp)
        # Baseline server: raw creates and raw list.
        port = free_port()
        server = start_server(port=port, store_dir=tmpdir / "raw-store")
        try:
            t, _, _ = timed([py, "-c", RAW_CREATE, server.url, str(n), str(c)], tmpdir)
            results["raw_create_s"] = t
            best = min(timed([py, "-c", RAW_LIST, server.url], tmpdir)[0] for _ in range(repeat))
            results["raw_list_s"] = best
        finally:
            server.stop()
        # jsops on a fresh server.
        port = free_port()
        server = start_server(port=port, store_dir=tmpdir / "jsops-store")
        try:
            proj = tmpdir / "project"
            write_project(proj, server.url, n, c)
            t, rss_apply, _ = timed([jsops, "apply", "--auto-approve", "-e", "bench"], proj)
            results["jsops_apply_s"] = t
            plans = [
                timed([jsops, "plan", "-e", "bench", "--detailed-exitcode"], proj)
                for _ in range(repeat)
            ]
            results["jsops_plan_s"] = min(p[0] for p in plans)
            results["apply_rss_mb"] = rss_apply / 1024
            results["plan_rss_mb"] = max(p[1] for p in plans) / 1024
            results["peak_rss_mb"] = max(results["apply_rss_mb"], results["plan_rss_mb"])
        finally:
            server.stop()
    results["plan_ratio"] = results["jsops_plan_s"] / results["raw_list_s"]
    results["apply_ratio"] = results["jsops_apply_s"] / results["raw_create_s"]
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--consumers", type=int, default=3)
    parser.add_argument("--scale", type=int, nargs="+", default=[1])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args()
    rows = [run_scale(args.streams * s, args.consumers, args.repeat) for s in args.scale]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    head = (
        f"{'streams':>8} {'consumers':>9} {'raw list':>9} {'plan':>7} {'x':>5} "
        f"{'raw create':>10} {'apply':>7} {'x':>5} {'plan MB':>8} {'apply MB':>8}"
    )
    print(head)
    for r in rows:
        print(
            f"{r['streams']:>8} {r['consumers']:>9} {r['raw_list_s']:>8.2f}s "
            f"{r['jsops_plan_s']:>6.2f}s {r['plan_ratio']:>5.2f} {r['raw_create_s']:>9.2f}s "
            f"{r['jsops_apply_s']:>6.2f}s {r['apply_ratio']:>5.2f} {r['plan_rss_mb']:>8.0f} "
            f"{r['apply_rss_mb']:>8.0f}"
        )
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
