"""Real nats-server topologies for tests, plus small JetStream request helpers.

Builders (plain functions, so a test can make its own private topology):

    start_single(tmpdir)        one JetStream server                 -> SingleServer
    start_cluster(tmpdir)       3 nodes n1..n3, cluster c1, routes   -> Cluster
    start_hub_and_leaf(tmpdir)  hub (domain hub) + leaf (domain leaf) -> HubAndLeaf

Every handle has ``.url``, ``.urls``, ``.servers`` and ``.stop()``; servers are
stopped by their own pid. Ports are free loopback ports; stores live under ``tmpdir``.

Helpers: ``js_request`` (async) / ``js_request_sync`` send one raw JSON request;
``JsWriteCounter`` records every ``$JS.API`` request a server sees; ``unique_name``
makes names that do not collide on a shared server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import string
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from reconciler.server import (
    LeafRemote,
    ServerProcess,
    cluster_block,
    free_port,
    leafnodes_block,
    monitor_get,
    retry_port_clash,
    server_config,
    start_server,
    stop_all,
    wait_cluster_ready,
    wait_until,
)

HOST = "127.0.0.1"

# JetStream API operations that change state (matched on the subject after ``API.``).
WRITE_OPS: tuple[str, ...] = (
    "STREAM.CREATE",
    "STREAM.UPDATE",
    "STREAM.DELETE",
    "STREAM.PURGE",
    "STREAM.MSG.DELETE",
    "STREAM.RESTORE",
    "STREAM.LEADER.STEPDOWN",
    "STREAM.PEER.REMOVE",
    "CONSUMER.CREATE",
    "CONSUMER.DURABLE.CREATE",
    "CONSUMER.DELETE",
    "CONSUMER.PAUSE",
    "CONSUMER.UNPIN",
    "CONSUMER.RESET",
    "CONSUMER.LEADER.STEPDOWN",
    "META.LEADER.STEPDOWN",
    "SERVER.REMOVE",
    "ACCOUNT.PURGE",
    "ACCOUNT.STREAM.MOVE",
    "ACCOUNT.STREAM.CANCEL_MOVE",
)


# --- names ------------------------------------------------------------------------------


def unique_name(prefix: str = "T", length: int = 8) -> str:
    """``prefix`` plus a random uppercase suffix, e.g. ``ORDERS_QZKXMWTA``.

    Uses ``secrets`` so that Hypothesis (which seeds ``random``) cannot make two tests
    pick the same name.
    """
    suffix = "".join(secrets.choice(string.ascii_uppercase) for _ in range(length))
    if prefix and not prefix.endswith(("_", "-")):
        prefix += "_"
    return prefix + suffix


# --- raw requests -----------------------------------------------------------------------


async def _connect(url: str | Sequence[str], timeout: float = 5.0) -> Client:
    async def _quiet(exc: Exception) -> None:  # nats-py logs every error otherwise
        return None

    servers = [url] if isinstance(url, str) else list(url)
    return await nats.connect(
        servers=servers,
        connect_timeout=max(1, int(timeout)),
        allow_reconnect=False,
        # the initial connect retries each server max_reconnect_attempts times, waiting
        # reconnect_time_wait between tries, even with allow_reconnect=False
        max_reconnect_attempts=1,
        reconnect_time_wait=0.1,  # type: ignore[arg-type]
        error_cb=_quiet,
    )


def _encode(payload: dict[str, Any] | bytes | None) -> bytes:
    if payload is None:
        return b""
    if isinstance(payload, bytes):
        return payload
    return json.dumps(payload).encode()


async def js_request(
    url: str,
    subject: str,
    payload: dict[str, Any] | None = None,
    timeout: float = 5.0,
) -> dict[str, Any]:
    """Send one raw JSON request (``nc.request``) and return the decoded JSON reply.

    API errors come back as the ``error`` key of the reply; no responder raises
    ``nats.errors.NoRespondersError``.
    """
    nc = await _connect(url, timeout)
    try:
        msg = await nc.request(subject, _encode(payload), timeout=timeout)
    finally:
        await nc.close()
    result: dict[str, Any] = json.loads(msg.data or b"{}")
    return result


def js_request_sync(
    url: str,
    subject: str,
    payload: dict[str, Any] | None = None,
    timeout: float = 5.0,
) -> dict[str, Any]:
    """:func:`js_request` for sync tests (runs its own event loop)."""
    return asyncio.run(js_request(url, subject, payload, timeout))


def api_op(subject: str) -> str | None:
    """``$JS.API.STREAM.CREATE.X`` / ``$JS.d.API.STREAM.CREATE.X`` -> ``STREAM.CREATE.X``."""
    tokens = subject.split(".")
    if len(tokens) < 3 or tokens[0] != "$JS":
        return None
    if tokens[1] == "API":
        return ".".join(tokens[2:])
    if len(tokens) > 3 and tokens[2] == "API":
        return ".".join(tokens[3:])
    return None


def is_write_request(subject: str) -> bool:
    """True for a JetStream API request that changes state (see ``WRITE_OPS``)."""
    op = api_op(subject)
    if op is None:
        return False
    op += "."
    return any(op.startswith(w + ".") for w in WRITE_OPS)


class JsWriteCounter:
    """Record every JetStream API request subject that reaches a server.

    Use it as ``with JsWriteCounter(url) as counter: ...`` from sync tests (it runs a
    NATS connection in its own thread and event loop) or ``async with`` from async code.
    It subscribes to ``$JS.API.>`` (plus ``$JS.<domain>.API.>`` when ``domain`` is
    given) and flushes before the body runs; on exit it waits ``settle`` seconds,
    flushes and drains, so every request answered inside the body is counted.

    Connect it to the server the client under test talks to. Requests addressed to a
    server's own domain (``$JS.<its domain>.API.X``) are rewritten by that server to
    ``$JS.API.X`` and are counted once. On a hub, ``domain="leaf"`` also records
    requests that clients of the hub send to the leaf.
    """

    def __init__(
        self,
        url: str,
        *,
        domain: str | None = None,
        settle: float = 0.05,
        timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.domain = domain
        self.settle = settle
        self.timeout = timeout
        self.patterns = ["$JS.API.>"] + ([f"$JS.{domain}.API.>"] if domain else [])
        self._subjects: list[str] = []
        self._payloads: list[bytes] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    # results
    @property
    def requests(self) -> list[str]:
        """Every request subject seen, in arrival order."""
        with self._lock:
            return list(self._subjects)

    @property
    def writes(self) -> list[str]:
        return [s for s in self.requests if is_write_request(s)]

    @property
    def write_bodies(self) -> list[tuple[str, dict[str, Any]]]:
        """(subject, decoded JSON body) of every write request with a body."""
        with self._lock:
            pairs = list(zip(self._subjects, self._payloads, strict=True))
        return [(s, json.loads(p)) for s, p in pairs if is_write_request(s) and p.strip()]

    @property
    def reads(self) -> list[str]:
        return [s for s in self.requests if not is_write_request(s)]

    def clear(self) -> None:
        with self._lock:
            self._subjects.clear()
            self._payloads.clear()

    # sync context manager
    def __enter__(self) -> JsWriteCounter:
        self._thread = threading.Thread(target=self._run, name="JsWriteCounter", daemon=True)
        self._thread.start()
        if not self._ready.wait(self.timeout + 5):
            self._signal_stop()
            raise TimeoutError(f"JsWriteCounter could not subscribe on {self.url}")
        if self._error is not None:
            self._thread.join(timeout=self.timeout)
            raise self._error
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._signal_stop()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 5)
        if self._error is not None and exc is None:
            raise self._error

    # async context manager (the counter still runs in its own thread)
    async def __aenter__(self) -> JsWriteCounter:
        return await asyncio.to_thread(self.__enter__)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.__exit__, exc_type, exc, tb)

    def _signal_stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop has already finished
                loop.call_soon_threadsafe(stop.set)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the test thread
            self._error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        nc = await _connect(self.url, self.timeout)

        async def record(msg: Msg) -> None:
            with self._lock:
                self._subjects.append(msg.subject)
                self._payloads.append(msg.data)

        try:
            for pattern in self.patterns:
                await nc.subscribe(pattern, cb=record)
            await nc.flush(timeout=self.timeout)
            if self.settle:
                await asyncio.sleep(self.settle)  # let interest reach routes/leafnodes
            self._ready.set()
            await self._stop.wait()
            if self.settle:
                await asyncio.sleep(self.settle)
            await nc.flush(timeout=self.timeout)
        finally:
            await nc.drain()


# --- waiting ----------------------------------------------------------------------------


def _checked(check: Callable[[], Awaitable[str | None]]) -> Callable[[], str | None]:
    """An async readiness check as :func:`reconciler.server.wait_until` polls one: a
    request that fails (no responders yet, a timeout, a refused connection) is a reason."""

    def run() -> str | None:
        try:
            return asyncio.run(check())
        except (TimeoutError, NoRespondersError, NatsTimeoutError, NatsError, OSError) as exc:
            return repr(exc)

    return run


async def _info_ok(url: str, subject: str) -> str | None:
    reply = await js_request(url, subject, timeout=1.0)
    if "error" in reply:
        return f"{subject}: {reply['error']}"
    return None


# GET a monitoring endpoint (``/jsz``, ``/varz``, ``/leafz``...) as JSON.
monitor_json = monitor_get


# --- topologies -------------------------------------------------------------------------


@dataclass
class SingleServer:
    """One JetStream server (no domain unless asked)."""

    server: ServerProcess

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def urls(self) -> list[str]:
        return [self.server.url]

    @property
    def domain(self) -> str | None:
        return self.server.domain

    @property
    def store_dir(self) -> Path:
        return self.server.store_dir

    @property
    def servers(self) -> list[ServerProcess]:
        return [self.server]

    def stop(self) -> None:
        self.server.stop()


@dataclass
class Cluster:
    """A JetStream cluster whose meta group has a leader and all peers current."""

    servers: list[ServerProcess]
    name: str = "c1"
    route_ports: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.servers[0].url

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    @property
    def domain(self) -> str | None:
        return self.servers[0].domain

    def stop(self) -> None:
        stop_all(self.servers)


@dataclass
class HubAndLeaf:
    """A hub (JetStream domain ``hub``) and a leaf node (domain ``leaf``), account $G."""

    hub: ServerProcess
    leaf: ServerProcess
    leafnode_port: int

    @property
    def servers(self) -> list[ServerProcess]:
        return [self.hub, self.leaf]

    @property
    def urls(self) -> list[str]:
        return [self.hub.url, self.leaf.url]

    def stop(self) -> None:
        stop_all([self.leaf, self.hub])


def start_single(
    tmpdir: Path,
    *,
    name: str = "s1",
    domain: str | None = None,
    config_extra: str = "",
    monitoring: bool = True,
) -> SingleServer:
    """One JetStream server on a free port; store and log under ``tmpdir/name``."""
    base = Path(tmpdir) / name
    config = server_config(name, domain=domain, extra=config_extra)
    srv = retry_port_clash(
        lambda: start_server(
            store_dir=base / "store",
            host=HOST,
            http_port=free_port() if monitoring else None,
            config_text=config,
            name=name,
            domain=domain,
        )
    )
    return SingleServer(srv)


def start_cluster(
    tmpdir: Path,
    *,
    size: int = 3,
    cluster_name: str = "c1",
    domain: str | None = None,
    timeout: float = 60.0,
) -> Cluster:
    """``size`` nodes ``n1..nN`` with full-mesh routes; returns when the cluster is ready
    as :func:`reconciler.server.cluster_status` (and so ``jsops server``) means it: one
    meta leader known to every node, all peers current, a new client of every node
    answered by JetStream and shown every node's client URL, an R``size`` stream
    placeable; a node that 2.10 leaves out of the meta group is restarted
    (:func:`reconciler.server.wait_cluster_ready`). ``timeout`` is generous: a loaded
    2-core CI machine has needed tens of seconds for a meta leader election."""
    return retry_port_clash(lambda: _boot_cluster(tmpdir, size, cluster_name, domain, timeout))


def _boot_cluster(
    tmpdir: Path, size: int, cluster_name: str, domain: str | None, timeout: float
) -> Cluster:
    names = [f"n{i}" for i in range(1, size + 1)]
    route_ports = [free_port() for _ in names]
    routes = [f"nats-route://{HOST}:{p}" for p in route_ports]
    servers: list[ServerProcess] = []
    try:
        for name, route_port in zip(names, route_ports, strict=True):
            config = server_config(
                name,
                domain=domain,
                cluster=cluster_block(cluster_name, f"{HOST}:{route_port}", routes),
            )
            servers.append(
                start_server(
                    store_dir=Path(tmpdir) / name / "store",
                    host=HOST,
                    http_port=free_port(),
                    config_text=config,
                    name=name,
                    domain=domain,
                    wait=False,
                )
            )
        for srv in servers:
            srv.wait_ready()
        wait_cluster_ready(servers, timeout, f"the cluster {cluster_name}")
    except BaseException:
        stop_all(servers)
        raise
    return Cluster(servers=servers, name=cluster_name, route_ports=route_ports)


def start_hub_and_leaf(
    tmpdir: Path,
    *,
    hub_domain: str = "hub",
    leaf_domain: str = "leaf",
    timeout: float = 30.0,
) -> HubAndLeaf:
    """A hub with a leafnode listener and a leaf that connects to it, both with JetStream.

    No accounts are configured, so both sides use the global account ``$G`` and the
    leaf connection binds ``$G`` to ``$G``. Distinct domains make each server answer
    ``$JS.<its domain>.API.>`` across the leaf connection (plain ``$JS.API.>`` stays
    local). Returns once each side can reach the other's JetStream API.
    """
    return retry_port_clash(lambda: _boot_hub_and_leaf(tmpdir, hub_domain, leaf_domain, timeout))


def _boot_hub_and_leaf(
    tmpdir: Path, hub_domain: str, leaf_domain: str, timeout: float
) -> HubAndLeaf:
    leaf_port = free_port()
    base = Path(tmpdir)
    servers: list[ServerProcess] = []
    try:
        hub = start_server(
            store_dir=base / "hub" / "store",
            host=HOST,
            http_port=free_port(),
            config_text=server_config(
                "hub", domain=hub_domain, leafnodes=leafnodes_block(f"{HOST}:{leaf_port}")
            ),
            name="hub",
            domain=hub_domain,
        )
        servers.append(hub)
        leaf = start_server(
            store_dir=base / "leaf" / "store",
            host=HOST,
            http_port=free_port(),
            config_text=server_config(
                "leaf",
                domain=leaf_domain,
                leafnodes=leafnodes_block(
                    remotes=[LeafRemote((f"nats-leaf://{HOST}:{leaf_port}",))]
                ),
            ),
            name="leaf",
            domain=leaf_domain,
        )
        servers.append(leaf)

        async def check() -> str | None:
            return await _info_ok(hub.url, f"$JS.{leaf_domain}.API.INFO") or await _info_ok(
                leaf.url, f"$JS.{hub_domain}.API.INFO"
            )

        wait_until(_checked(check), servers, timeout, "the leafnode connection")
    except BaseException:
        stop_all(servers)
        raise
    return HubAndLeaf(hub=hub, leaf=leaf, leafnode_port=leaf_port)
