"""Time the subject-overlap check (reconciler.policy) on a large, realistic repository.

Generates N streams (default 5,000) the way a multi-tenant platform lays them out:
tenants of 20 streams each under ``tenant.<id>.``, most subjects ending in a wildcard
(``.>``, ``.*``, ``.*.created``), some streams with a second subject, a few platform
streams with cross-tenant wildcards (``tenant.*.audit``), and a handful of deliberate
clashes so the finder has something to report. Then it times

1. ``SubjectTrie``: the overlap finder alone over every subject;
2. ``check_overlap`` and the whole ``check_policy`` (tenancy, overlap, quotas,
   required fields, name patterns) on the validated resources;
3. for scale, ``validate_paths`` of the same manifests written to a temp dir (the
   validation these checks are added to), and a brute-force all-pairs comparison on a
   sample, extrapolated.

Run::

    .venv/bin/python bench/overlap.py [--streams 5000] [--clashes 10] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reconciler.environments import ProjectConfig  # noqa: E402
from reconciler.policy import check_overlap, check_policy  # noqa: E402
from reconciler.subjects import SubjectTrie, overlaps  # noqa: E402
from reconciler.validate import validate_paths  # noqa: E402

STREAMS_PER_TENANT = 20
DOMAINS = ["orders", "payments", "shipping", "inventory", "users", "billing", "events", "audit"]


def generate(n: int, clashes: int, seed: int) -> tuple[list[dict], dict]:
    """Stream manifests (as dicts) and the jsops.yaml config for them."""
    rng = random.Random(seed)
    docs: list[dict] = []
    tenants: dict[str, dict] = {}
    platform = [
        ("LOGS", ["logs.app.>"]),
        ("METRICS", ["metrics.*.cpu", "metrics.*.mem"]),
        ("TENANT_AUDIT", ["tenant.*.audit"]),
    ]
    for name, subjects in platform:
        docs.append(_stream(name, None, subjects))
    for i in range(n - len(platform)):
        tenant = f"t{i // STREAMS_PER_TENANT:04d}"
        tenants.setdefault(
            tenant,
            {
                "stream_pattern": f"^{tenant.upper()}_[A-Z0-9_]+$",
                "quota": {"max_streams": STREAMS_PER_TENANT, "max_bytes": "100GiB"},
            },
        )
        domain = f"{rng.choice(DOMAINS)}{i % STREAMS_PER_TENANT}"
        base = f"tenant.{tenant}.{domain}"
        subjects = [rng.choice([f"{base}.>", f"{base}.*", f"{base}.*.created", f"{base}.v1.*"])]
        if rng.random() < 0.3:
            side = f"tenant.{tenant}.{domain}-{rng.choice(['dlq', 'retry'])}"
            subjects.append(f"{side}.{rng.choice(['*', '>'])}")
        subjects = list(dict.fromkeys(subjects))
        docs.append(_stream(f"{tenant.upper()}_S{i}", tenant, subjects))
    tenant_docs = [d for d in docs if d["metadata"].get("tenant")]
    for k in range(clashes):  # copy a subject of one tenant stream into another of its tenant
        victim = rng.choice(tenant_docs)
        tenant = victim["metadata"]["tenant"]
        clash = _stream(f"{tenant.upper()}_CLASH{k}", tenant, [victim["spec"]["subjects"][0]])
        docs.append(clash)
    config = {"project": "bench", "tenants": tenants, "policy": {"require": ["max_bytes"]}}
    return docs, config


def _stream(name: str, tenant: str | None, subjects: list[str]) -> dict:
    meta: dict = {"name": name}
    if tenant:
        meta["tenant"] = tenant
    return {
        "apiVersion": "jsops/v1",
        "kind": "Stream",
        "metadata": meta,
        "spec": {"subjects": subjects, "max_age": "7d", "max_bytes": "1GiB"},
    }


def timed(label: str, func, *args):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = func(*args)
    elapsed = time.perf_counter() - start
    print(f"{label:<48} {elapsed * 1000:9.1f} ms")
    return result, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=5000)
    parser.add_argument("--clashes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--files", type=int, default=50, help="manifest files to spread over")
    args = parser.parse_args()

    docs, config_data = generate(args.streams, args.clashes, args.seed)
    config = ProjectConfig.model_validate(config_data)
    subjects = [(s, i) for i, d in enumerate(docs) for s in d["spec"]["subjects"]]
    print(
        f"{len(docs)} streams, {len(subjects)} subjects, {len(config.tenants)} tenants, "
        f"{args.clashes} deliberate clashes"
    )

    def finder() -> int:
        trie: SubjectTrie[int] = SubjectTrie()
        found = 0
        for subject, owner in subjects:
            found += sum(1 for _, other in trie.overlapping(subject) if other != owner)
            trie.insert(subject, owner)
        return found

    pairs, t_finder = timed("SubjectTrie: insert + query every subject", finder)

    with tempfile.TemporaryDirectory() as tmp:
        per_file = max(1, -(-len(docs) // args.files))
        for f in range(0, len(docs), per_file):
            text = "---\n".join(json.dumps(d) + "\n" for d in docs[f : f + per_file])
            Path(tmp, f"m{f // per_file:03d}.yaml").write_text(text)
        (resources, problems), t_validate = timed(
            "validate_paths (load + models + cross rules)", validate_paths, [tmp], {}
        )
        overlap_problems, _ = timed("check_overlap", check_overlap, resources)
        policy_problems, t_policy = timed(
            "check_policy (tenancy, overlap, quotas, ...)", check_policy, resources, config
        )
    sample = [s for s, _ in subjects[:200]]
    everything = [s for s, _ in subjects]
    start = time.perf_counter()
    for s in sample:
        for other in everything:
            overlaps(s, other)
    per_subject = (time.perf_counter() - start) / len(sample)
    brute_ms = per_subject * len(subjects) * 1000 / 2  # each pair once
    print(f"{'brute force all pairs (extrapolated)':<48} {brute_ms:9.1f} ms")
    print(
        f"overlapping pairs found: {pairs}; overlap diagnostics: {len(overlap_problems)}; "
        f"policy diagnostics: {len(policy_problems)}; validate diagnostics: {len(problems)}"
    )
    print(
        f"policy adds {t_policy:.3f}s to a {t_validate:.2f}s validate "
        f"({t_policy / t_validate:.1%}); the finder alone takes {t_finder:.3f}s"
    )
    ok = t_policy < 1.0 and len(overlap_problems) >= args.clashes
    print("OK: under one second" if ok else "SLOW or missed clashes")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
