"""The pre-commit config runs ruff, mypy and `jsops validate` on manifests/."""

from __future__ import annotations

from pathlib import Path

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent


def test_precommit_runs_jsops_validate_on_manifests() -> None:
    config = YAML(typ="safe").load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = {h["id"]: h for repo in config["repos"] for h in repo["hooks"]}
    assert {"ruff", "ruff-format", "mypy", "jsops-validate"} <= set(hooks)
    assert hooks["jsops-validate"]["entry"] == "jsops validate"
    assert "manifests/" in hooks["jsops-validate"]["files"]
