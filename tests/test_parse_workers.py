"""A large repository is parsed and validated in forked worker processes
(reconciler/workers.py): the same plan, the same errors in the same order, the same
parse cache as in one process.

The CLI runs as its own process here, as a user runs it: forking is only done with no
other thread running, and a test process has the server fixtures' log threads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from harness.project import TestProject, make_project
from harness.servers import SingleServer, unique_name

from reconciler.load import SourceFile
from reconciler.workers import MIN_TEXT, shares

JSOPS = [sys.executable, "-m", "reconciler"]
FILES = 4
STREAMS_PER_FILE = 120  # with 3 consumers each: about 190 KB of YAML in all


def _run(proj: TestProject, *args: str, workers: str, cache: bool = False) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JSOPS_")}
    env["JSOPS_PARSE_WORKERS"] = workers
    if not cache:
        env["JSOPS_NO_CACHE"] = "1"
    done = subprocess.run(
        [*JSOPS, *args], cwd=proj.root, env=env, capture_output=True, text=True, timeout=120
    )
    return done.returncode, done.stdout, done.stderr


def _large(tmp_path: Path, url: str) -> tuple[TestProject, str]:
    prefix = unique_name("PW")
    proj = make_project(tmp_path, url)
    for f in range(FILES):
        docs = []
        for s in range(STREAMS_PER_FILE):
            name = f"{prefix}_{f}_{s:03d}"
            docs.append(
                f"apiVersion: jsops/v1\nkind: Stream\nmetadata:\n  name: {name}\nspec:\n"
                f"  subjects: ['{name.lower()}.>']\n  storage: memory\n  max_age: 1h\n"
                "  description: a stream of the parse-workers test, long enough to count\n"
            )
            for c in range(3):
                docs.append(
                    f"apiVersion: jsops/v1\nkind: Consumer\nmetadata:\n  name: C{c}\n"
                    f"  stream: {name}\nspec:\n  ack_policy: explicit\n  max_deliver: 5\n"
                    f"  filter_subject: {name.lower()}.{c}\n"
                )
        proj.write(f"part{f}.yaml", "---\n".join(docs))
    text = sum(p.stat().st_size for p in (proj.root / "manifests").iterdir())
    assert text > MIN_TEXT  # large enough for workers by default, too
    return proj, prefix


def _details(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("jsops: parsed")]


def _without_details(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if not line.startswith("jsops: parsed")]


def test_workers_plan_exactly_what_one_process_plans(
    tmp_path: Path, nats_server: SingleServer
) -> None:
    proj, _ = _large(tmp_path, nats_server.url)
    code, two, err = _run(proj, "-v", "plan", "--format", "json", workers="2")
    assert code == 0, err
    declared = FILES * STREAMS_PER_FILE * 4
    assert _details(err) == [
        f"jsops: parsed and validated {FILES} files in 2 processes: {declared} resources"
        + err.split(f"{declared} resources", 1)[1].splitlines()[0]
    ]
    code, one, err_one = _run(proj, "-v", "plan", "--format", "json", workers="1")
    assert code == 0 and _details(err_one) == []  # one process: nothing forked

    def changes(out: str) -> list[object]:
        return json.loads(out)["changes"]

    assert len(changes(two)) == declared
    assert changes(two) == changes(one)  # every create, its wire config, its location


def test_a_problem_found_by_a_worker_is_reported_as_one_process_reports_it(
    tmp_path: Path, nats_server: SingleServer
) -> None:
    proj, prefix = _large(tmp_path, nats_server.url)
    first = proj.root / "manifests" / "part0.yaml"
    last = proj.root / "manifests" / f"part{FILES - 1}.yaml"
    first.write_text(first.read_text().replace("max_deliver: 5", "max_deliver: five", 1))
    # a duplicate of a stream of the first file (a check across files) and a bad unit
    last.write_text(
        last.read_text()
        + f"---\napiVersion: jsops/v1\nkind: Stream\nmetadata: {{name: {prefix}_0_000}}\n"
        + "spec: {subjects: [dup.>], max_age: 1 fortnight}\n"
    )
    results = {w: _run(proj, "-v", "validate", workers=w) for w in ("1", "2")}
    (code1, out1, err1), (code2, out2, err2) = results["1"], results["2"]
    assert code1 == code2 == 1
    assert (out2, _without_details(err2)) == (out1, _without_details(err1))
    assert "part0.yaml:" in out1 + err1 and "max_deliver" in out1 + err1
    assert f"part{FILES - 1}.yaml:" in out1 + err1
    assert _details(err2) and all("validating again here" in d for d in _details(err2))


def test_workers_fill_the_parse_cache_as_one_process_does(
    tmp_path: Path, nats_server: SingleServer
) -> None:
    proj, _ = _large(tmp_path, nats_server.url)
    cache_dir = Path(os.environ["HOME"]) / ".cache" / "jsops"
    kept = {}
    for workers in ("2", "1"):
        code, _, err = _run(proj, "-v", "validate", workers=workers, cache=True)
        assert code == 0 and bool(_details(err)) == (workers == "2"), err
        [cache_file] = sorted(cache_dir.glob("parse-*.json"))
        entries = json.loads(cache_file.read_text())["entries"]
        kept[workers] = {key: text for key, (_used_at, text) in entries.items()}
        for path in cache_dir.iterdir():
            path.unlink()  # the next run starts cold
    assert len(kept["2"]) == FILES  # every file, from whichever worker parsed it
    assert kept["2"] == kept["1"]


def test_a_small_repository_is_validated_in_one_process(
    tmp_path: Path, nats_server: SingleServer
) -> None:
    proj = make_project(tmp_path, nats_server.url)
    proj.write("s.yaml", "apiVersion: jsops/v1\nkind: Stream\nmetadata: {name: SMALL}\n")
    proj.write("t.yaml", "apiVersion: jsops/v1\nkind: Stream\nmetadata: {name: SMALLER}\n")
    for workers in ("auto", "not-a-number"):
        code, _, err = _run(proj, "-v", "validate", workers=workers)
        assert code == 0 and _details(err) == [], err


@pytest.mark.parametrize(
    ("sizes", "count"),
    [
        ([10] * 8, 2),
        ([10] * 8, 4),
        ([100, 1, 1, 1], 2),  # one large file first: the rest is the second share
        ([1, 1, 1, 100], 2),
        ([1, 1, 1, 100], 4),
        ([5, 7], 2),
        ([3] * 5, 4),
    ],
)
def test_shares_are_contiguous_non_empty_and_balanced(sizes: list[int], count: int) -> None:
    sources = [SourceFile(f"f{i}.yaml", "x" * n, "x" * n) for i, n in enumerate(sizes)]
    got = shares(sources, count)
    assert len(got) == count
    assert [i for share in got for i in share] == list(range(len(sizes)))  # in order, once
    assert all(len(share) > 0 for share in got)
    texts = [sum(sizes[i] for i in share) for share in got]
    assert max(texts) <= sum(sizes) / count + max(sizes)  # about equal: off by one file
