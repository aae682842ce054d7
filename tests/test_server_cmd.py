"""``jsops server``: run_embedded_server boots, stops cleanly on a signal, and refuses early."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness.servers import SingleServer, js_request_sync

from reconciler.server import free_port, port_open

REPO = Path(__file__).resolve().parents[1]

# What the CLI does around the library call: a JsopsError is one line and exit 1.
RUNNER = """\
import sys
from pathlib import Path
from reconciler.errors import JsopsError
from reconciler.server import run_embedded_server
port, data, http = sys.argv[1:4]
try:
    code = run_embedded_server(
        port=int(port), data_dir=Path(data) if data else None, http_port=int(http)
    )
except JsopsError as exc:
    print(f"jsops: error: {exc}", file=sys.stderr)
    code = 1
sys.exit(code)
"""


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    port: int
    http_port: int
    stderr_file: Path

    @property
    def stderr(self) -> str:
        return self.stderr_file.read_text(errors="replace")

    def child_pid(self) -> int:
        found = re.search(r"nats-server pid (\d+)", self.stderr)
        assert found, self.stderr
        return int(found.group(1))


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["NATS_HOST"] = "127.0.0.1"
    env.pop("APP_ROOT", None)
    env.update(extra)
    return env


def _launch(tmp_path: Path, data_dir: Path | None, port: int | None = None, **env: str) -> Running:
    port = port or free_port()
    http_port = free_port()
    err = tmp_path / "stderr.txt"
    with open(err, "wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-c", RUNNER, str(port), str(data_dir or ""), str(http_port)],
            cwd=tmp_path,
            env=_env(**env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    return Running(proc, port, http_port, err)


def _wait_serving(run: Running, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert run.proc.poll() is None, run.stderr
        if port_open("127.0.0.1", run.port) and "Server is ready" in run.stderr:
            info = js_request_sync(f"nats://127.0.0.1:{run.port}", "$JS.API.INFO")
            assert "error" not in info
            return
        time.sleep(0.05)
    raise AssertionError(f"jsops server did not become ready:\n{run.stderr}")


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def cleanup() -> Iterator[list[Running]]:
    """Stop what a failed test left running, by our own pids only."""
    runs: list[Running] = []
    yield runs
    for run in runs:
        if run.proc.poll() is None:
            run.proc.send_signal(signal.SIGTERM)
            try:
                run.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                run.proc.kill()
                run.proc.wait()
        found = re.search(r"nats-server pid (\d+)", run.stderr)
        if found and not _pid_gone(int(found.group(1))):
            os.kill(int(found.group(1)), signal.SIGKILL)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_server_cleanly(
    tmp_path: Path, cleanup: list[Running], sig: signal.Signals
) -> None:
    run = _launch(tmp_path, tmp_path / "store")
    cleanup.append(run)
    _wait_serving(run)
    child = run.child_pid()
    assert port_open("127.0.0.1", run.http_port)  # monitoring is on

    run.proc.send_signal(sig)
    assert run.proc.wait(timeout=15) == 0, run.stderr
    assert _pid_gone(child)
    assert not port_open("127.0.0.1", run.port)
    assert "Server Exiting" in run.stderr  # the server's own log reached our stderr
    assert (tmp_path / "store" / "jetstream").is_dir()


def test_store_defaults_under_app_root(tmp_path: Path, cleanup: list[Running]) -> None:
    root = tmp_path / "approot"
    run = _launch(tmp_path, None, APP_ROOT=str(root))
    cleanup.append(run)
    _wait_serving(run)
    assert (root / "nats-js" / "jetstream").is_dir()
    run.proc.send_signal(signal.SIGTERM)
    assert run.proc.wait(timeout=15) == 0, run.stderr


def test_server_dying_on_its_own_exits_1(tmp_path: Path, cleanup: list[Running]) -> None:
    run = _launch(tmp_path, tmp_path / "store")
    cleanup.append(run)
    _wait_serving(run)
    os.kill(run.child_pid(), signal.SIGKILL)
    assert run.proc.wait(timeout=15) == 1
    assert "exited unexpectedly" in run.stderr


def test_unwritable_store_dir_is_one_line_and_exit_1(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    run = _launch(tmp_path, blocker / "store")
    assert run.proc.wait(timeout=15) == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("jsops: error: cannot create the JetStream store dir")
    assert str(blocker / "store") in lines[0]


def test_port_in_use_is_refused_before_boot(tmp_path: Path, nats_server: SingleServer) -> None:
    run = _launch(tmp_path, tmp_path / "store", port=nats_server.server.port)
    assert run.proc.wait(timeout=15) == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert f"cannot listen for clients on 127.0.0.1:{nats_server.server.port}" in lines[0]
