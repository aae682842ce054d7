"""The bad-manifest corpus: one case per rule under tests/data/bad/.

A case is a file ``NN-what.yaml`` or a folder ``NN-what/`` (validated as a whole).
Its files start with ``# expect: <stderr line>`` comments: every line ``jsops
validate`` must print, in order, and nothing else. Adding a case means adding a
file. Cases run from the repository root (messages name ``tests/data/bad/...``)
with a project file of one environment, ``default``, and no values.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.cli import main

REPO = Path(__file__).resolve().parent.parent
BAD = REPO / "tests" / "data" / "bad"
EXPECT = "# expect: "
CASES = sorted(p for p in BAD.iterdir() if p.name[:2].isdigit())


def expected_lines(case: Path) -> list[str]:
    files = sorted(case.rglob("*.y*ml")) if case.is_dir() else [case]
    lines = []
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.startswith(EXPECT):
                break
            lines.append(line[len(EXPECT) :])
    return lines


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project file with one environment and no values; cwd is the repo root."""
    config = tmp_path / "jsops.yaml"
    config.write_text("project: corpus\nenvironments:\n  default: {}\n")
    monkeypatch.chdir(REPO)
    return config


def test_corpus_is_complete() -> None:
    assert len(CASES) >= 30
    numbers = [case.name[:2] for case in CASES]
    assert len(numbers) == len(set(numbers)), "two cases share a number"
    several = [case.name for case in CASES if len(expected_lines(case)) > 1]
    assert len(several) >= 3, "some cases must prove that every error of a file is printed"


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_manifest(case: Path, project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expected = expected_lines(case)
    assert expected, f"{case.name}: no '# expect:' line at the top"
    code = main(["--config", str(project), "validate", str(case.relative_to(REPO))])
    out, err = capsys.readouterr()
    assert code == 1
    assert "Traceback" not in err
    assert out == ""
    assert err.splitlines() == expected


def _sort_key(line: str) -> tuple[str, int, int]:
    file, line_no, col, _rest = line.split(":", 3)
    return file, int(line_no), int(col)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_expectations_are_sorted_and_located(case: Path) -> None:
    expected = expected_lines(case)
    keys = [_sort_key(line) for line in expected]
    assert keys == sorted(keys)
    assert all(line >= 1 and col >= 1 for _file, line, col in keys)
    rel = str(case.relative_to(REPO))
    assert all(file.startswith(rel) for file, _line, _col in keys)


def test_several_files_report_every_error_in_file_order(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    picked = [BAD / "12-bad-stream-names.yaml", BAD / "03-unknown-field.yaml"]
    code = main(["--config", str(project), "validate", *(str(p.relative_to(REPO)) for p in picked)])
    _out, err = capsys.readouterr()
    assert code == 1
    assert err.splitlines() == expected_lines(picked[1]) + expected_lines(picked[0])


def _jsops() -> list[str]:
    script = Path(sys.executable).parent / "jsops"
    return [str(script)] if script.exists() else [sys.executable, "-m", "reconciler"]


@pytest.mark.parametrize(
    "name", ["01-yaml-syntax.yaml", "16-duplicate-across-files", "29-bad-timestamp.yaml"]
)
def test_bad_manifest_through_a_real_process(name: str, tmp_path: Path) -> None:
    config = tmp_path / "jsops.yaml"
    config.write_text("environments: {default: {}}\n")
    case = BAD / name
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "JSOPS_"))}
    result = subprocess.run(
        [*_jsops(), "--config", str(config), "validate", str(case.relative_to(REPO))],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == expected_lines(case)
