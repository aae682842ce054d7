"""pre-commit: this repository's own config (ruff, mypy and `jsops validate` on
manifests/), and the hooks it exports to others (``.pre-commit-hooks.yaml``), run with
``pre-commit try-repo`` from another repository."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent


def test_precommit_runs_jsops_validate_on_manifests() -> None:
    config = YAML(typ="safe").load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = {h["id"]: h for repo in config["repos"] for h in repo["hooks"]}
    assert {"ruff", "ruff-format", "mypy", "jsops-validate"} <= set(hooks)
    assert hooks["jsops-validate"]["entry"] == "jsops validate"
    assert "manifests/" in hooks["jsops-validate"]["files"]


# -------------------------------------------- hooks exported to other repositories

HOOKS = ROOT / ".pre-commit-hooks.yaml"
NOT_COPIED = (".git", ".venv", ".data", "*.egg-info", "__pycache__", ".*_cache", "build")
NO_NETWORK = (
    "NewConnectionError",
    "Temporary failure in name resolution",
    "No matching distribution",
)


def test_hooks_file_exports_validate_and_fmt() -> None:
    hooks = {h["id"]: h for h in YAML(typ="safe").load(HOOKS.read_text())}
    assert set(hooks) == {"jsops-validate", "jsops-fmt"}
    assert hooks["jsops-validate"]["entry"] == "jsops validate"
    assert hooks["jsops-validate"]["pass_filenames"] is False
    assert hooks["jsops-fmt"]["entry"] == "jsops fmt"
    assert all(h["language"] == "python" for h in hooks.values())


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=ci@example.invalid", "-c", "user.name=ci", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_try_repo_runs_both_hooks_in_another_repository(tmp_path: Path) -> None:
    """``pre-commit try-repo`` on this clone, from a repository that uses jsops: the
    hook environment is built by pip from the local clone (its dependencies from the
    package index), then fmt fixes a manifest, and validate reports a located error."""
    repo = tmp_path / "infra"
    (repo / "manifests").mkdir(parents=True)
    (repo / "jsops.yaml").write_text("project: infra\nmanifests: [manifests/]\n")
    messy = repo / "manifests" / "orders.yaml"
    messy.write_text(
        "kind: Stream\napiVersion: jsops/v1\nmetadata:\n    name: ORDERS\n"
        "spec: {subjects: [orders.>]}   # kept\n"
    )
    (repo / "ci.yaml").write_text("on: [push]\njobs: {}\n")  # not a manifest: untouched
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "init")
    # try-repo on a repository that is this working tree as one commit: what is tested is
    # what is here, and the hook environment is built once for the three runs
    clone = tmp_path / "jsops"
    shutil.copytree(ROOT, clone, ignore=shutil.ignore_patterns(*NOT_COPIED))
    _git(clone, "init", "-q")
    _git(clone, "add", "-A")
    _git(clone, "commit", "-qm", "jsops")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")}
    pre_commit = [sys.executable, "-m", "pre_commit", "try-repo", str(clone), "--all-files"]

    def run() -> subprocess.CompletedProcess[str]:
        done = subprocess.run(pre_commit, cwd=repo, env=env, capture_output=True, text=True)
        if done.returncode and any(marker in done.stdout + done.stderr for marker in NO_NETWORK):
            pytest.skip("pip could not reach the package index to build the hook environment")
        return done

    first = run()
    assert first.returncode == 1, first.stdout + first.stderr
    assert re.search(r"jsops fmt\.+Failed", first.stdout)
    assert "files were modified by this hook" in first.stdout
    assert re.search(r"jsops validate\.+Passed", first.stdout)
    assert messy.read_text() == (
        "apiVersion: jsops/v1\nkind: Stream\nmetadata:\n  name: ORDERS\n"
        "spec: {subjects: [orders.>]}   # kept\n"
    )
    assert (repo / "ci.yaml").read_text() == "on: [push]\njobs: {}\n"

    second = run()
    assert second.returncode == 0, second.stdout + second.stderr

    (repo / "manifests" / "bad.yaml").write_text(
        "apiVersion: jsops/v1\nkind: Stream\nmetadata: {name: BAD}\nspec: {max_age: soon}\n"
    )
    third = run()
    assert third.returncode == 1
    assert re.search(r"jsops validate\.+Failed", third.stdout)
    assert "manifests/bad.yaml:4:17: spec.max_age: invalid duration" in third.stdout
