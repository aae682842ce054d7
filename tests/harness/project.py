"""Build throwaway jsops projects against the test servers, and run the CLI in-process.

Each project gets a unique name (the owner tag), so tests sharing one server never
prune or adopt each other's resources.
"""

from __future__ import annotations

import contextlib
import io
import os
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.servers import unique_name
from reconciler import api
from reconciler.api import Target
from reconciler.cli import main as cli_main
from reconciler.environments import load_project
from reconciler.plan import Plan


@dataclass
class TestProject:
    """A project directory with jsops.yaml and manifests/, bound to one server."""

    __test__ = False  # not a pytest test class

    root: Path
    name: str
    url: str

    def write(self, name: str, text: str) -> Path:
        """Write (or overwrite) ``manifests/<name>``; text is dedented."""
        path = self.root / "manifests" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    def remove(self, name: str) -> None:
        (self.root / "manifests" / name).unlink()

    def target(self, env: str | None = None) -> Target:
        with chdir(self.root):
            return api.resolve_target(project=load_project(self.root / "jsops.yaml"), env=env)

    def plan(self, **kwargs: Any) -> Plan:
        with chdir(self.root):
            return api.plan(self.target(kwargs.pop("env", None)), **kwargs)

    def apply(self, **kwargs: Any) -> Any:
        kwargs.setdefault("confirm", lambda _plan: True)
        with chdir(self.root):
            return api.apply(self.target(kwargs.pop("env", None)), **kwargs)

    def cli(self, *args: str, env: Mapping[str, str] | None = None) -> tuple[int, str, str]:
        """Run ``jsops ARGS`` in-process from the project dir: (exit code, stdout, stderr)."""
        return run_cli(list(args), cwd=self.root, env=env)


@contextlib.contextmanager
def chdir(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def run_cli(
    args: list[str], cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        with (
            chdir(cwd or Path.cwd()),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            code = cli_main(args)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return code, out.getvalue(), err.getvalue()


def make_project(
    tmp_path: Path,
    url: str,
    *,
    name: str | None = None,
    envs: Mapping[str, Mapping[str, Any]] | None = None,
    extra: str = "",
) -> TestProject:
    """A project with one environment ``test`` on ``url`` (or the given environments)."""
    name = name or unique_name("proj").lower()
    root = tmp_path / name
    (root / "manifests").mkdir(parents=True)
    lines = [f"project: {name}", "manifests: [manifests/]", "environments:"]
    for env_name, cfg in (envs or {"test": {"servers": [url]}}).items():
        lines.append(f"  {env_name}:" if cfg else f"  {env_name}: {{}}")
        for key, value in cfg.items():
            lines.append(f"    {key}: {_yaml(value)}")
    text = "\n".join(lines) + "\n" + textwrap.dedent(extra)
    (root / "jsops.yaml").write_text(text)
    return TestProject(root, name, url)


def _yaml(value: Any) -> str:
    import json

    return json.dumps(value)
