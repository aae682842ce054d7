"""The command line around validation: validate, schema, usage errors, --help."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.cli import cli, main
from reconciler.schemas import generate_schemas

REPO = Path(__file__).resolve().parent.parent
GOOD = REPO / "tests" / "data" / "good"
SCHEMA_FILES = {
    "stream.schema.json",
    "consumer.schema.json",
    "account.schema.json",
    "keyvalue.schema.json",
    "objectstore.schema.json",
    "manifest.schema.json",
    "jsops.schema.json",
}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = tmp_path / "jsops.yaml"
    config.write_text(
        "project: good\nenvironments:\n  dev: {values: {replicas: 1}}\n"
        "  prod: {values: {replicas: 3, regions: [eu]}}\n"
    )
    monkeypatch.chdir(REPO)
    return config


def test_good_manifests_are_valid(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--config", str(project), "validate", "tests/data/good"])
    out, err = capsys.readouterr()
    assert (code, out, err) == (0, "", "manifests are valid\n")


@pytest.mark.parametrize("path", sorted(GOOD.glob("*.yaml")), ids=lambda p: p.name)
def test_each_good_file_is_valid_alone_or_with_its_streams(
    path: Path, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    streams = [str(p) for p in GOOD.glob("*.yaml") if "Stream" in p.read_text()]
    assert main(["--config", str(project), "validate", str(path), *streams]) == 0, (
        capsys.readouterr().err
    )


def test_validate_without_a_project_file_uses_the_default_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "s.yaml").write_text(
        "apiVersion: jsops/v1\nkind: Stream\nmetadata: {name: S_{{ env }}}\n"
    )
    assert main(["validate"]) == 0
    assert capsys.readouterr().err == "manifests are valid\n"


@pytest.mark.parametrize("key", ["password", "token", "creds"])
def test_a_secret_of_the_wrong_type_is_located_but_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], key: str
) -> None:
    """An unquoted numeric password is a number to YAML: the error says where and what
    is wrong, not the value (it goes to CI logs and pull request comments)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "manifests").mkdir()
    (tmp_path / "jsops.yaml").write_text(
        f"environments:\n  d:\n    servers: [nats://127.0.0.1:4222]\n    {key}: 98765432101\n"
    )
    assert main(["validate"]) == 1
    err = capsys.readouterr().err
    assert "jsops.yaml:4:" in err and f"environments.d.{key}: expected a string" in err, err
    assert "98765432101" not in err


def test_missing_path_is_an_error(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(project), "validate", "no/such/dir"]) == 1
    assert capsys.readouterr().err == "no/such/dir: no such file or directory\n"


# -- schema ---------------------------------------------------------------------------------


def test_schema_writes_every_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["schema", "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == SCHEMA_FILES
    printed = capsys.readouterr().out.split()
    assert sorted(Path(p).name for p in printed) == sorted(SCHEMA_FILES)
    for path in out.iterdir():
        schema = json.loads(path.read_text())
        assert schema["$id"].endswith(path.name)
    stream = json.loads((out / "stream.schema.json").read_text())
    assert stream["additionalProperties"] is False
    assert {"apiVersion", "kind", "metadata"} <= set(stream["required"])


def test_checked_in_schemas_are_up_to_date(tmp_path: Path) -> None:
    assert main(["schema", "--out", str(tmp_path)]) == 0
    checked_in = REPO / "schemas"
    stale = [
        name
        for name in sorted(generate_schemas())
        if not (checked_in / name).exists()
        or (checked_in / name).read_text() != (tmp_path / name).read_text()
    ]
    assert not stale, f"schemas/ is stale ({', '.join(stale)}): run `jsops schema --out schemas`"


# -- usage errors and help ---------------------------------------------------------------------

COMMANDS = sorted(cli.commands)


@pytest.mark.parametrize(
    "argv",
    [["no-such-command"], ["validate", "--no-such-option"], ["schema", "--out"], ["--bogus"]],
    ids=lambda argv: " ".join(argv),
)
def test_usage_errors_exit_1_without_traceback(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.strip()
    assert "Traceback" not in err


def test_usage_error_through_a_real_process() -> None:
    script = Path(sys.executable).parent / "jsops"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "reconciler"]
    result = subprocess.run(
        [*command, "validate", "--no-such-option"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "--no-such-option" in result.stderr


# The console script ends without the interpreter's teardown (cli._exit): what it
# must still do is run the exit handlers, flush what it printed, and keep the code.
_EXITING = """
import atexit, sys
from reconciler import cli
atexit.register(lambda: print("exit handler ran", flush=False))
sys.argv = ["jsops", *sys.argv[1:]]
cli.run()
"""


def test_the_console_script_runs_exit_handlers_and_flushes_its_output(tmp_path: Path) -> None:
    many = tmp_path / "many.yaml"  # a JSON report larger than any pipe's buffer
    many.write_text(
        "".join(
            f"---\napiVersion: jsops/v1\nkind: Stream\nmetadata: {{name: S{i}}}\n"
            f"spec: {{subjects: [s{i}.>], max_age: {i}x}}\n"
            for i in range(400)
        )
    )
    result = subprocess.run(
        [sys.executable, "-c", _EXITING, "validate", "--format", "json", str(many)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 1, result.stderr
    report, handler = result.stdout.rstrip("\n").rsplit("\n", 1)
    assert len(json.loads(report)["diagnostics"]) == 400
    assert handler == "exit handler ran"
    ok = subprocess.run(
        [sys.executable, "-c", _EXITING, "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert ok.returncode == 0
    assert ok.stdout.splitlines()[-1] == "exit handler ran"
    assert ok.stdout.startswith("jsops")


@pytest.mark.parametrize(
    "command", [[], *([c] for c in COMMANDS)], ids=lambda c: c[0] if c else "jsops"
)
def test_help_of_every_command(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage: jsops")


def test_validate_is_a_command() -> None:
    assert {"validate", "schema"} <= set(COMMANDS)
