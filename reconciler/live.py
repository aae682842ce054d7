"""Live reading: the raw JetStream JSON API over one connection per account.

Every JetStream request goes through :meth:`JetStreamClient.request`, which builds
the subject from the environment's API prefix (``$JS.API`` or ``$JS.<domain>.API``),
sends raw JSON (nats-py's typed JetStream manager drops fields it does not know, so
it is never used for configs), and turns an error reply into :class:`ApiError`.
Connecting (settings, contexts, TLS, credentials) is ``reconciler.connection``.

Reads are bulk: ``STREAM.LIST`` pages (256 per page) and one ``CONSUMER.LIST`` paging
per stream, run concurrently under a bound; never one INFO request per resource.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from reconciler.connection import ConnectSettings, connect, redact, server_info, strip_userinfo
from reconciler.errors import ApiError, ConnectionFailed, ErrCode
from reconciler.models import LOCK_STREAM as LOCK_STREAM  # jsops' own: left out of reads
from reconciler.tasks import for_each

if TYPE_CHECKING:
    from reconciler.accounts import AuthStore

LIST_CONCURRENCY = 64
USER_INFO_WAIT = 2.0  # seconds: the account name is optional in an identity
MISSING_INFO_TIMEOUT = 3.0  # seconds: INFO of an asset a LIST left out (servers down?)
MISSING_INFO_TRIES = 2  # a busy cluster may miss a LIST's own wait once: ask twice
# seconds: a stream just created in a cluster takes a moment to be heard on its subjects
# from every server (its leader's interest propagates), so a publish that meets "no
# responders" is sent again for this long before it is an error
PUBLISH_SETTLE = 3.0
PUBLISH_RETRY_EVERY = 0.1


def _asset_name(info: dict[str, Any]) -> str:
    """The name of a StreamInfo or ConsumerInfo in a LIST page."""
    config = info.get("config") or {}
    return str(info.get("name") or config.get("name") or config.get("durable_name") or "")


class JetStreamClient:
    """The JetStream JSON API of one account through one connection."""

    def __init__(self, nc: NatsClient, settings: ConnectSettings) -> None:
        self.nc = nc
        self.settings = settings
        self.prefix = settings.prefix
        self.timeout = settings.timeout
        self.lock_config: dict[str, Any] | None = None  # set by list_streams

    async def request(
        self, subject: str, payload: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Send one API request (``subject`` without the prefix); the reply as a dict."""
        full = f"{self.prefix}.{subject}"
        body = json.dumps(payload, separators=(",", ":")).encode() if payload is not None else b""
        return await self._send(full, body, None, subject, timeout or self.timeout)

    async def publish(
        self, subject: str, data: bytes, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Publish one message to a stream (``subject`` in full); the PubAck as a dict.

        A stream created a moment ago (the lock bucket, by this very apply) may not be
        heard yet from the server this connection is on: "no responders" is retried for
        up to ``PUBLISH_SETTLE`` seconds, then named with the subject.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PUBLISH_SETTLE
        while True:
            try:
                return await self._send(
                    subject, data, headers, subject, self.timeout, no_responders=True
                )
            except NoRespondersError:
                if loop.time() >= deadline:
                    raise ConnectionFailed(
                        f"no stream answers on {subject} (waited {PUBLISH_SETTLE:g}s "
                        f"on {self.settings.describe()})"
                    ) from None
                await asyncio.sleep(PUBLISH_RETRY_EVERY)

    async def _send(
        self,
        full: str,
        body: bytes,
        headers: dict[str, str] | None,
        subject: str,
        timeout: float,
        *,
        no_responders: bool = False,
    ) -> dict[str, Any]:
        """Send one request; ``no_responders`` lets NoRespondersError through to the caller."""
        try:
            msg = await self.nc.request(full, body, timeout=timeout, headers=headers)
        except NoRespondersError:
            if no_responders:
                raise
            servers = ", ".join(strip_userinfo(u) for u in self.settings.servers)
            if self.settings.domain:
                raise ConnectionFailed(
                    f'JetStream domain "{self.settings.domain}" does not answer on {servers} '
                    "(wrong domain, or no JetStream there)"
                ) from None
            raise ConnectionFailed(
                f"JetStream is not available on {servers} (not enabled on the server, "
                f"or {self.prefix} is not reachable for this account)"
            ) from None
        except NatsTimeoutError:
            raise ConnectionFailed(
                f"JetStream request {_op(subject)} timed out after {timeout:g}s "
                f"on {self.settings.describe()}"
            ) from None
        except Exception as exc:
            reason = redact(str(exc) or type(exc).__name__, self.settings)
            raise ConnectionFailed(
                f"connection to {self.settings.describe()} failed: {reason}"
            ) from None
        try:
            reply: dict[str, Any] = json.loads(msg.data)
        except ValueError:
            raise ApiError(f"invalid reply to {full}", subject=full) from None
        error = reply.get("error")
        if error:
            raise ApiError(
                error.get("description", "unknown error"),
                code=int(error.get("code", 0)),
                err_code=int(error.get("err_code", 0)),
                subject=full,
            )
        return reply

    async def account_info(self) -> dict[str, Any]:
        try:
            return await self.request("INFO")
        except ApiError as exc:
            if exc.err_code in (ErrCode.NOT_ENABLED_FOR_ACCOUNT, ErrCode.NOT_ENABLED):
                raise ConnectionFailed(
                    f"JetStream is not enabled for this account on {self.settings.describe()}"
                ) from None
            raise

    async def _paged(
        self, subject: str, key: str
    ) -> tuple[list[dict[str, Any]], list[str], dict[str, str]]:
        """Every item of a paged LIST, the names the server listed as ``missing`` (in a
        cluster: an asset whose servers did not answer within the server's own wait, e.g.
        all of them are down, or it is scaling) and those it listed ``offline`` (name ->
        reason). An offline asset may also come with its config alone: it is left out."""
        items: list[dict[str, Any]] = []
        missing: list[str] = []
        offline: dict[str, str] = {}
        offset = 0
        while True:
            reply = await self.request(subject, {"offset": offset})
            page = reply.get(key) or []
            gone = [str(n) for n in reply.get("missing") or []]
            offline.update({str(k): str(v) for k, v in (reply.get("offline") or {}).items()})
            skip = set(gone) | set(offline)
            listed = {_asset_name(i) for i in page}
            items.extend(i for i in page if _asset_name(i) not in skip)
            missing.extend(n for n in gone if n not in offline)
            offset += len(listed | set(gone))
            if not (page or gone) or offset >= int(reply.get("total", 0)):
                return items, missing, offline

    async def list_streams(self) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """StreamInfo of every stream but jsops' own lock bucket, and the streams the
        server cannot report now (name -> why), after one short, concurrent INFO retry of
        the missing ones."""
        streams, missing, offline = await self._paged("STREAM.LIST", "streams")
        found, unavailable = await self._fetch_missing(
            [m for m in missing if m != LOCK_STREAM], self.stream_info
        )
        kept = [s for s in streams + found if _asset_name(s) != LOCK_STREAM]
        lock = [s for s in streams + found if _asset_name(s) == LOCK_STREAM]
        self.lock_config = lock[0].get("config") if lock else None
        return kept, {k: v for k, v in {**offline, **unavailable}.items() if k != LOCK_STREAM}

    async def list_consumers(self, stream: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
        consumers, missing, offline = await self._paged(f"CONSUMER.LIST.{stream}", "consumers")
        found, unavailable = await self._fetch_missing(
            missing, lambda name, timeout: self.consumer_info(stream, name, timeout=timeout)
        )
        return consumers + found, {**offline, **unavailable}

    async def _fetch_missing(
        self,
        names: list[str],
        fetch: Callable[[str, float], Awaitable[dict[str, Any] | None]],
        attempts: int = 3,
    ) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """INFO for the assets a LIST page left out: all at once (bounded), each with a
        short timeout; an error reply is retried briefly. What still does not answer is
        returned as unavailable (name -> why) instead of failing the whole read."""
        found: list[dict[str, Any]] = []
        unavailable: dict[str, str] = {}
        if not names:  # the usual case: every LIST page was complete
            return found, unavailable
        timeout = min(self.timeout, MISSING_INFO_TIMEOUT)

        async def one(name: str) -> None:
            for attempt in range(attempts):
                try:
                    info = await fetch(name, timeout)
                except ConnectionFailed:
                    if attempt + 1 < MISSING_INFO_TRIES:
                        continue
                    unavailable[name] = f"no reply within {timeout:g}s (its servers are down?)"
                    return
                except ApiError as exc:
                    if attempt == attempts - 1:
                        unavailable[name] = exc.description
                        return
                    await asyncio.sleep(0.2 * (attempt + 1))
                    continue
                if info is not None:
                    found.append(info)
                return

        await for_each(names, one, LIST_CONCURRENCY)
        return found, unavailable

    async def stream_info(self, stream: str, timeout: float | None = None) -> dict[str, Any] | None:
        try:
            return await self.request(f"STREAM.INFO.{stream}", timeout=timeout)
        except ApiError as exc:
            if exc.err_code == ErrCode.STREAM_NOT_FOUND:
                return None
            raise

    async def subject_counts(self, stream: str) -> dict[str, int]:
        """Messages per subject of one stream (``STREAM.INFO`` with ``subjects_filter``,
        paged): only for the few streams whose per-subject limit a plan lowers."""
        counts: dict[str, int] = {}
        offset = 0
        while True:
            reply = await self.request(
                f"STREAM.INFO.{stream}", {"subjects_filter": ">", "offset": offset}
            )
            page = (reply.get("state") or {}).get("subjects") or {}
            counts.update({str(k): int(v) for k, v in page.items()})
            offset += len(page)
            if not page or offset >= int(reply.get("total") or 0):
                return counts

    async def consumer_info(
        self, stream: str, name: str, timeout: float | None = None
    ) -> dict[str, Any] | None:
        try:
            return await self.request(f"CONSUMER.INFO.{stream}.{name}", timeout=timeout)
        except ApiError as exc:
            if exc.err_code in (ErrCode.CONSUMER_NOT_FOUND, ErrCode.STREAM_NOT_FOUND):
                return None
            raise

    async def create_stream(
        self, config: dict[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        return await self.request(
            f"STREAM.CREATE.{config['name']}", {**config, "pedantic": True}, timeout=timeout
        )

    async def update_stream(self, config: dict[str, Any]) -> dict[str, Any]:
        return await self.request(f"STREAM.UPDATE.{config['name']}", {**config, "pedantic": True})

    async def delete_stream(self, name: str) -> dict[str, Any]:
        return await self.request(f"STREAM.DELETE.{name}")

    async def write_consumer(
        self, stream: str, config: dict[str, Any], action: str
    ) -> dict[str, Any]:
        name = config["durable_name"]
        payload = {"stream_name": stream, "config": config, "action": action, "pedantic": True}
        return await self.request(f"CONSUMER.CREATE.{stream}.{name}", payload)

    async def pause_consumer(self, stream: str, name: str, until: str | None) -> dict[str, Any]:
        """Pause a consumer until an instant, or resume it (``until`` None)."""
        body = {"pause_until": until} if until else {}
        return await self.request(f"CONSUMER.PAUSE.{stream}.{name}", body)

    async def delete_consumer(self, stream: str, name: str) -> dict[str, Any]:
        return await self.request(f"CONSUMER.DELETE.{stream}.{name}")


def account_limits(info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Tier name ("" for flat limits) -> its limits, as ``$JS.API.INFO`` reports them."""
    tiers = info.get("tiers") or {}
    if tiers:
        return {name: dict(tier.get("limits") or {}) for name, tier in tiers.items()}
    return {"": dict(info.get("limits") or {})}


@dataclass
class LiveState:
    """What the server holds: StreamInfo and ConsumerInfo as the server sent them (the
    fields a plan uses: ``STREAM_INFO_KEPT``, ``CONSUMER_INFO_KEPT``; a consumer's
    ``delivered`` and ``ack_floor`` as :class:`Mark` tuples)."""

    api_level: int
    server_version: str
    cluster_name: str | None
    cluster_size: int | None  # servers in the target's cluster; None when not known
    streams: dict[str, dict[str, Any]] = field(default_factory=dict)
    consumers: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    account_info: dict[str, Any] = field(default_factory=dict)
    # Streams / consumers the server lists but cannot report now (in a cluster: their
    # servers are down), name -> why. They are in neither ``streams`` nor ``consumers``.
    unavailable: dict[str, str] = field(default_factory=dict)
    unavailable_consumers: dict[tuple[str, str], str] = field(default_factory=dict)
    # Messages per subject of the few streams whose per-subject limit a plan lowers.
    subject_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    # jsops's own lock bucket (LOCK_STREAM) when it is in this account: never planned,
    # but its storage counts against the account's limits (reconciler.capacity).
    lock_config: dict[str, Any] | None = None

    # Every consumer the server listed, when a plan compared some as they were read
    # (reconciler.plan.Planner.take) and ``consumers`` kept only the others' infos.
    listed_consumers: set[tuple[str, str]] = field(default_factory=set)
    _ack_pending_limits: dict[int, int] = field(default_factory=dict, repr=False, compare=False)

    def ack_pending_limit(self, replicas: int) -> int:
        """The account's ``max_ack_pending`` (0: none) for a consumer of ``replicas``: the
        limit of its tier (``R1``, ``R3``) when the account's limits are tiered, as the
        server selects it (``selectLimits``). The server defaults an ack consumer's
        ``max_ack_pending`` to 1000 capped by it, and refuses more (10121)."""
        known = self._ack_pending_limits.get(replicas)
        if known is None:
            limits = account_limits(self.account_info)
            tier = limits.get("") if "" in limits else limits.get(f"R{max(replicas, 1)}")
            known = max(int((tier or {}).get("max_ack_pending") or 0), 0)
            self._ack_pending_limits[replicas] = known  # (asked for each consumer)
        return known

    def consumers_of(self, stream: str) -> list[dict[str, Any]]:
        return [info for (s, _), info in self.consumers.items() if s == stream]

    def consumer_keys(self) -> set[tuple[str, str]]:
        """(stream, name) of every consumer the server listed."""
        return self.listed_consumers | self.consumers.keys()


@dataclass(frozen=True)
class ServerIdentity:
    """Which JetStream a connection reached: the cluster (or, unclustered, the server)
    name, the JetStream domain and the account, as the servers report them.

    A saved plan records it and is refused elsewhere; an environment's ``expect`` pins
    it (``check_expected``). Only the fields both sides know are compared.
    """

    server_name: str | None = None
    cluster: str | None = None
    domain: str | None = None
    account: str | None = None

    FIELDS = ("cluster", "server_name", "domain", "account")

    def describe(self) -> str:
        parts = [f"cluster {self.cluster}" if self.cluster else f"server {self.server_name}"]
        parts.append(f"domain {self.domain}" if self.domain else "no domain")
        if self.account:
            parts.append(f"account {self.account}")
        return ", ".join(parts)

    def to_json(self) -> dict[str, str | None]:
        return {k: getattr(self, k) for k in self.FIELDS}

    def mismatches(self, other: ServerIdentity) -> list[str]:
        """Fields where ``other`` differs from this one (a clustered identity is not
        compared by server name: any node of the cluster is the same target)."""
        names = [k for k in self.FIELDS if not (k == "server_name" and self.cluster)]
        if self.account is None or other.account is None:  # not told by every server/user
            names.remove("account")
        return [k for k in names if getattr(self, k) != getattr(other, k)]


async def connection_account(nc: NatsClient, timeout: float = 5.0) -> str | None:
    """The account of a connection, from ``$SYS.REQ.USER.INFO`` (None where the server
    does not answer it; a user not allowed to publish there gets no reply, so the wait
    is short; run it alongside the live reads)."""
    with contextlib.suppress(Exception):
        msg = await nc.request("$SYS.REQ.USER.INFO", b"", timeout=min(timeout, USER_INFO_WAIT))
        data = json.loads(msg.data).get("data") or {}
        return data.get("account_name") or data.get("account") or None
    return None


def identity_of(
    nc: NatsClient, account_info: dict[str, Any], account: str | None
) -> ServerIdentity:
    """The identity of a connection: names from the server's INFO, the domain from
    ``$JS.API.INFO`` (``account_info``), the account from :func:`connection_account`."""
    info = server_info(nc)
    return ServerIdentity(
        server_name=info.get("server_name") or None,
        cluster=info.get("cluster") or None,
        domain=account_info.get("domain") or None,
        account=account,
    )


# What the plan uses of StreamInfo / ConsumerInfo: the config, and the state a
# destructive change estimates its loss from (counts, sequences, the oldest message's
# time, consumers' delivered and ack floors). The rest (cluster, sources state,
# per-subject detail) is dropped as pages arrive: at 10k streams it is most of the live
# state's memory.
STREAM_INFO_KEPT = ("config", "state")
STREAM_STATE_KEPT = (
    "messages",
    "bytes",
    "consumer_count",
    "first_seq",
    "last_seq",
    "first_ts",
    "last_ts",
    "num_subjects",
)
CONSUMER_INFO_KEPT = (
    "name",
    "config",
    "num_pending",
    "num_ack_pending",
    "num_redelivered",
    "delivered",
    "ack_floor",
)


# Field names, and the values of enumerated fields, shared by every live config: each
# LIST reply is decoded on its own, so without this every consumer's config would hold
# its own copy of ~20 key strings (at 10k streams x 3 consumers, tens of MB).
_SHARED: dict[str, str] = {}
_ENUM_FIELDS = frozenset(
    (
        "retention",
        "storage",
        "discard",
        "compression",
        "deliver_policy",
        "ack_policy",
        "replay_policy",
        "priority_policy",
    )
)


def _shared(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with its keys (at every level) and enum values taken from _SHARED."""
    shared = _SHARED.setdefault
    out = {}
    for key, value in config.items():
        key = shared(key, key)
        if type(value) is dict:
            value = _shared(value)
        elif type(value) is list and value and type(value[0]) is dict:
            value = [_shared(v) if type(v) is dict else v for v in value]
        elif key in _ENUM_FIELDS and type(value) is str:
            value = shared(value, value)
        out[key] = value
    return out


class Mark(NamedTuple):
    """A consumer's ``delivered`` or ``ack_floor``: the two sequences a plan reads."""

    consumer_seq: int
    stream_seq: int


_UNSTARTED = Mark(0, 0)  # one tuple for every consumer that has delivered nothing


def _kept(info: dict[str, Any], keys: tuple[str, ...], share: bool = True) -> dict[str, Any]:
    """The ``keys`` of an info a plan uses; its config's keys shared (``_shared``) unless
    it is compared and dropped at once (``share`` False)."""
    out = {k: info[k] for k in keys if k in info}
    config = out.get("config")
    if share and isinstance(config, dict):
        out["config"] = _shared(config)
    state = out.get("state")
    if isinstance(state, dict):
        out["state"] = {k: state[k] for k in STREAM_STATE_KEPT if k in state}
    for key in ("delivered", "ack_floor"):  # 2 small tuples, not 2 dicts a consumer
        mark = out.get(key)
        if isinstance(mark, dict):
            kept = Mark(int(mark.get("consumer_seq") or 0), int(mark.get("stream_seq") or 0))
            out[key] = _UNSTARTED if kept == _UNSTARTED else kept
    return out


async def _cluster_size(client: JetStreamClient, target_info: dict[str, Any]) -> int | None:
    """How many servers the target's JetStream cluster has, from the connected server's
    INFO (its cluster name and ``connect_urls``); None when that server may not be in the
    target domain (a hub reaching a leaf's JetStream), or does not advertise its peers."""
    if client.prefix != "$JS.API":
        try:
            msg = await client.nc.request("$JS.API.INFO", b"", timeout=client.timeout)
            local_domain = json.loads(msg.data).get("domain")
        except Exception:  # no local JetStream: the size is unknown
            return None
        if local_domain != target_info.get("domain"):
            return None
    return cluster_size_of(client.nc)


def cluster_size_of(nc: NatsClient) -> int | None:
    """Servers in the connected server's cluster (from its INFO), None if not advertised."""
    info = server_info(nc)
    if not info.get("cluster"):
        return 1
    return len(info.get("connect_urls") or []) or None


async def read_live_state(
    client: JetStreamClient,
    *,
    only_streams: Iterable[str] | None = None,
    concurrency: int = LIST_CONCURRENCY,
) -> LiveState:
    """All streams (paged LIST) and their consumers (paged LIST per stream, concurrent)."""
    state = await read_streams(client)
    await read_consumers(client, state, only_streams=only_streams, concurrency=concurrency)
    return state


async def read_streams(client: JetStreamClient) -> LiveState:
    """The account, the server and every stream (paged LIST); no consumers yet."""
    info = await client.account_info()
    api_level = int((info.get("api") or {}).get("level") or 0)
    connected = server_info(client.nc)
    version = str(connected.get("version", ""))
    cluster_size = await _cluster_size(client, info)
    streams, unavailable = await client.list_streams()
    by_name = {s["config"]["name"]: _kept(s, STREAM_INFO_KEPT) for s in streams}
    cluster_name = connected.get("cluster") if cluster_size is not None else None
    if cluster_size is not None and cluster_size > 1:
        # A cluster's client URLs reach the client in INFO updates after it connects:
        # the count is a lower bound, so take the latest one, after the reads.
        later = cluster_size_of(client.nc)
        cluster_size = max(cluster_size, later or 0)
    state = LiveState(api_level, version, cluster_name, cluster_size, by_name, {}, info)
    state.unavailable = unavailable
    state.lock_config = client.lock_config
    return state


# Given one stream's consumer infos as read, returns those ``state.consumers`` keeps.
KeepConsumers = Callable[[str, list[dict[str, Any]]], list[dict[str, Any]]]


async def read_consumers(
    client: JetStreamClient,
    state: LiveState,
    *,
    only_streams: Iterable[str] | None = None,
    keep: KeepConsumers | None = None,
    concurrency: int = LIST_CONCURRENCY,
) -> None:
    """The consumers of every stream in ``state`` (paged LIST per stream, concurrent).

    With ``keep``, each stream's infos go through it as soon as they are read and only
    what it returns stays in ``state.consumers`` (a plan compares the declared ones
    there and then); ``state.listed_consumers`` still names every consumer listed."""
    wanted = set(only_streams) if only_streams is not None else None

    async def consumers_of(name: str) -> None:
        consumers, unavailable = await client.list_consumers(name)
        for consumer_name, why in unavailable.items():
            state.unavailable_consumers[(name, consumer_name)] = why
        infos = [_kept(consumer, CONSUMER_INFO_KEPT, keep is None) for consumer in consumers]
        if keep is not None:
            state.listed_consumers.update((name, str(i["name"])) for i in infos)
            infos = keep(name, infos)
            for info in infos:  # kept until the end: shared keys, as every kept config
                if isinstance(info.get("config"), dict):
                    info["config"] = _shared(info["config"])
        for consumer in infos:
            state.consumers[(name, consumer["name"])] = consumer

    names = [n for n in state.streams if wanted is None or n in wanted]
    await for_each(names, consumers_of, concurrency)


def _op(subject: str) -> str:
    """``STREAM.INFO.ORDERS`` -> ``STREAM.INFO`` (names are not part of the operation)."""
    words = subject.split(".")
    return ".".join(words[:2]) if words[0] in ("STREAM", "CONSUMER") else words[0]


class Connections:
    """The connections one run needs, opened on first use and closed together.

    ``client(None)`` is the environment's own connection; ``client("ACME")`` reaches
    account ACME as a short-lived admin user minted from the auth store (operator
    mode); ``system()`` is the system account's connection, for account JWTs.
    """

    def __init__(self, settings: ConnectSettings, auth_dir: str | None = None) -> None:
        self.settings = settings
        self.auth_dir = auth_dir
        self._clients: dict[str | None, JetStreamClient] = {}
        self._system: NatsClient | None = None
        self._store: AuthStore | None = None
        self._lock = asyncio.Lock()

    @property
    def store(self) -> AuthStore:
        """The auth store, opened on first use."""
        if self._store is None:
            from reconciler.accounts import AuthStore, resolve_auth_dir

            self._store = AuthStore.open(resolve_auth_dir(None, self.auth_dir))
        return self._store

    def _account_settings(self, account: str) -> ConnectSettings:
        from dataclasses import replace

        from reconciler.accounts import admin_creds

        return replace(
            self.settings,
            creds=None,
            nkey=None,
            token=None,
            user=None,
            password=None,
            creds_text=admin_creds(self.store, account),
        )

    async def client(self, account: str | None = None) -> JetStreamClient:
        async with self._lock:
            if account not in self._clients:
                settings = self.settings if account is None else self._account_settings(account)
                self._clients[account] = JetStreamClient(await connect(settings), settings)
            return self._clients[account]

    async def system(self) -> NatsClient:
        """A connection as the system account's admin user (from the auth store)."""
        from dataclasses import replace

        async with self._lock:
            if self._system is None:
                settings = replace(
                    self.settings,
                    creds=str(self.store.sys_creds_path),
                    creds_text=None,
                    nkey=None,
                    token=None,
                    user=None,
                    password=None,
                )
                self._system = await connect(settings)
            return self._system

    async def close(self) -> None:
        conns = [c.nc for c in self._clients.values()]
        if self._system is not None:
            conns.append(self._system)
        for nc in conns:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 2)
        self._clients.clear()
        self._system = None
