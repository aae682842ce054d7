"""The apply lock: one apply per project and environment at a time.

A lease in the target account: one key per project and environment
(``<project>.<environment>``) in the KV bucket ``jsops_lock`` (stream ``KV_jsops_lock``),
which jsops creates on first use and owns. It is built as a KeyValue manifest's bucket
is (:func:`lock_stream_config`: history 1, no ttl), so ``nats kv get jsops_lock
payments.prod`` shows who holds a lock. Manifests cannot declare it (``validate``).

- **Acquire**: read the key's last message (``STREAM.MSG.GET``, ``last_by_subj``) and
  the server's clock (``STREAM.INFO`` carries ``ts``). A live lease (a value younger, on
  the server's clock, than its own ``ttl``) is held: fail naming the holder, or poll
  until ``timeout``. Otherwise write the holder with
  ``Nats-Expected-Last-Subject-Sequence`` set to the sequence just read (0: none), so
  of two racing applies exactly one gets the key; the other reads again.
- **Refresh**: while the lock is held, the value is written again every ``ttl / 3``,
  with the sequence of the last write expected: if it no longer matches (the lease
  expired and was taken over, or ``jsops unlock`` forced it), the lock is lost and the
  run holding it is stopped (:class:`LockLost`).
- **Release**: a KV delete marker, again with the last sequence expected.
- **Expiry**: a holder that dies stops refreshing; its lease ends ``ttl`` after its last
  write (judged on the server's clock, so client clocks do not matter) and the next
  acquire takes it over. ``ttl`` travels in the value: holders may use different ones.

The bucket is jsops' own: reads leave it out (``reconciler.live``), so plans never show
or prune it, export never writes it, and quotas and policy never count it. Lock writes
are KV messages (``$KV.jsops_lock.*``), not JetStream API requests; apply takes the lock
only when its plan has changes, so an unchanged apply writes nothing at all.

In operator mode the lock lives in the account of the environment's own credentials;
an environment without credentials of its own (jsops reaches each account with admin
users it mints) keeps its lock in jsops' own account ``JSOPS``, which jsops creates in
the auth store (and pushes, with a small JetStream allowance) on first use.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import getpass
import json
import os
import re
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from reconciler.buckets import lower as lower_bucket
from reconciler.connection import server_info
from reconciler.errors import (
    ApiError,
    ConnectionFailed,
    ErrCode,
    JsopsError,
    Location,
    UsageError,
)
from reconciler.live import Connections, JetStreamClient
from reconciler.models import (
    API_VERSION,
    Address,
    KeyValueManifest,
    Kind,
    Resource,
)
from reconciler.models import LOCK_ACCOUNT as LOCK_ACCOUNT
from reconciler.models import LOCK_BUCKET as LOCK_BUCKET
from reconciler.models import LOCK_STREAM as LOCK_STREAM
from reconciler.normalize import canonical_stream, stream_api_config, stream_wire_config
from reconciler.printable import one_line
from reconciler.tasks import cancel_and_wait

DEFAULT_TTL = 30.0  # seconds; JSOPS_LOCK_TTL overrides (tests use a few seconds)
TTL_ENV = "JSOPS_LOCK_TTL"
POLL_INTERVAL = 0.5  # seconds between looks at a held lock while waiting
EXPECTED_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
KV_OPERATION = "KV-Operation"
_KEY_CHARS = re.compile(r"[^-_a-zA-Z0-9]")

# The bucket's KeyValue spec, built into its stream as any KeyValue manifest is
# (reconciler.buckets: nats.go's prepareKeyValueConfig) and sent as the complete config
# the server's API level knows (reconciler.normalize), as apply sends every stream; so
# `nats kv` reads it and it passes the checks every other write passes. History 1 (a key
# is its last write), no ttl: a lease's expiry is judged from the ttl in its own value
# (holders choose it), so the server must not remove a write before it is judged. No
# jsops.owner: no project's, never pruned.
LOCK_SPEC: dict[str, Any] = {
    "description": "jsops apply locks: one key per project and environment",
    "history": 1,
    "max_bytes": 1024 * 1024,
    "max_value_size": 4096,
    "storage": "file",
}
LOCK_METADATA = {"jsops.lock": "true"}
# A bucket's default duplicate window is 2m, and a server whose ``jetstream.limits``
# caps it lower refuses that (10052): then the lock could never be made and every apply
# failed. Lock writes are compare-and-set on the key's last sequence, never deduplicated
# by message id, so the window only has to be valid: 1s is, under any sensible cap.
LOCK_DUPLICATE_WINDOW = 10**9
R3_ATTEMPTS = 3  # creates of the lock bucket as R3 on a cluster before R1 (a 2-node one)
R3_RETRY_DELAY = 1.0  # seconds between them
_NOT_PLACED_NOW = (ErrCode.NO_SUITABLE_PEERS, ErrCode.INSUFFICIENT_RESOURCES)
# Seconds the lock bucket's create may take (at least the connection's timeout): the
# server answers an R3 create once the stream's group has a leader, which on a cluster
# just formed and busy took more than the default 5 s (the create went on server-side).
LOCK_CREATE_TIMEOUT = 20.0


def lock_stream_config(api_level: int, replicas: int = 1) -> dict[str, Any]:
    """The StreamConfig that creates the lock bucket on a server of ``api_level``."""
    manifest = KeyValueManifest.model_validate(
        {
            "apiVersion": API_VERSION,
            "kind": Kind.KEY_VALUE.value,
            "metadata": {"name": LOCK_BUCKET},
            "spec": {**LOCK_SPEC, "replicas": replicas},
        }
    )
    bucket = Resource(Address(Kind.KEY_VALUE, LOCK_BUCKET), manifest, Location("<jsops>"))
    config = stream_api_config(lower_bucket(bucket), "")
    config["metadata"] = dict(LOCK_METADATA)
    config["duplicate_window"] = LOCK_DUPLICATE_WINDOW
    return stream_wire_config(LOCK_STREAM, canonical_stream(config, api_level), api_level)


class LockHeld(JsopsError):
    """Another apply holds the lock (and it did not end within the timeout)."""

    def __init__(self, message: str, holder: Holder) -> None:
        super().__init__(message)
        self.holder = holder


class LockLost(JsopsError):
    """The lease was taken over (it expired, or was forced) while this run held it."""


@dataclass(frozen=True)
class Holder:
    """Who holds a lock: shown to anyone who waits for it or forces it."""

    user: str
    host: str
    pid: int
    started: str  # the holder's clock, RFC 3339, for people
    ttl: float  # seconds a write of the value stays valid
    project: str = ""
    environment: str = ""
    command: str = "apply"

    def describe(self) -> str:
        # Anyone who may publish to $KV.jsops_lock wrote these: one line, no escapes.
        return one_line(
            f"{self.user}@{self.host} (pid {self.pid}, {self.command} since {self.started})"
        )

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Holder:
        try:
            raw = json.loads(data)
            return cls(
                user=str(raw.get("user", "?")),
                host=str(raw.get("host", "?")),
                pid=int(raw.get("pid", 0)),
                started=str(raw.get("started", "?")),
                ttl=float(raw.get("ttl", DEFAULT_TTL)),
                project=str(raw.get("project", "")),
                environment=str(raw.get("environment", "")),
                command=str(raw.get("command", "apply")),
            )
        except (ValueError, TypeError, AttributeError):
            return cls("?", "?", 0, "?", DEFAULT_TTL)


def lock_ttl(value: float | None = None) -> float:
    """The lease duration: ``value``, else ``$JSOPS_LOCK_TTL`` (seconds), else 30s."""
    if value is not None:
        return value
    text = os.environ.get(TTL_ENV)
    if not text:
        return DEFAULT_TTL
    try:
        ttl = float(text)
    except ValueError:
        raise UsageError(f"{TTL_ENV}={text!r}: a number of seconds is needed") from None
    if ttl <= 0:
        raise UsageError(f"{TTL_ENV}={text!r}: a number of seconds is needed")
    return ttl


def this_holder(project: str, environment: str, ttl: float, command: str = "apply") -> Holder:
    try:
        user = getpass.getuser()
    except Exception:  # no login name (some containers): the uid will do
        user = str(os.getuid())
    started = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return Holder(
        user, socket.gethostname(), os.getpid(), started, ttl, project, environment, command
    )


def lock_key(project: str, environment: str) -> str:
    """The KV key of one project's environment (characters KV keys cannot hold escaped)."""

    def escape(text: str) -> str:
        return _KEY_CHARS.sub(lambda m: f"={ord(m.group()):02x}", text) or "_"

    return f"{escape(project)}.{escape(environment)}"


@dataclass
class _Entry:
    seq: int
    holder: Holder | None  # None: a delete marker
    age: float  # seconds since the write, on the server's clock


@dataclass
class Lease:
    """A lock this run holds: ``seq`` is its last write, ``confirmed`` (monotonic
    seconds) when that write was sent."""

    client: JetStreamClient
    key: str
    holder: Holder
    seq: int
    confirmed: float = field(default_factory=time.monotonic)
    lost: bool = False
    on_lost: Callable[[LockLost], None] | None = None
    _writing: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def ensure(self) -> None:
        """Before a write: make sure the lease is still this run's. Free while it was
        refreshed recently; after a pause (a stopped or starved process) as long as its
        ``ttl``, it is written again first, and LockLost if it was taken over since."""
        if self.lost:
            raise _lost()
        if time.monotonic() - self.confirmed < self.holder.ttl * 0.8:
            return
        await refresh(self)


def _put_subject(client: JetStreamClient, key: str) -> str:
    """As nats.go writes a KV key: through the API prefix when it is not ``$JS.API`` (a
    domain: ``$JS.<d>.API.$KV...``, which that domain maps back to ``$KV...``)."""
    subject = f"$KV.{LOCK_BUCKET}.{key}"
    return subject if client.prefix == "$JS.API" else f"{client.prefix}.{subject}"


def _instant(text: str) -> datetime:
    """An RFC 3339 instant with up to nanoseconds (Python reads microseconds)."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("Z", "+00:00"))
    return datetime.fromisoformat(text)


async def _ensure_bucket(client: JetStreamClient) -> dict[str, Any]:
    """The lock bucket's STREAM.INFO, creating the bucket first if needed: R3 on a
    cluster that can place it (so the lock outlives one server), else R1."""
    info = await client.stream_info(LOCK_STREAM)
    if info is not None:
        return info
    level = int(((await client.account_info()).get("api") or {}).get("level") or 0)
    clustered = bool(server_info(client.nc).get("cluster"))
    # On a cluster, R3 is tried a few times before settling for R1: a cluster of three
    # whose peers are not all current yet (just formed, a node restarting) answers "no
    # suitable peers" for a moment, and an R1 lock made then would stay R1 for good.
    for replicas in (3, 1) if clustered else (1,):
        for attempt in range(R3_ATTEMPTS if replicas == 3 else 1):
            try:
                return await _create_bucket(client, lock_stream_config(level, replicas))
            except ApiError as exc:
                if exc.err_code == ErrCode.STREAM_NAME_IN_USE:  # another apply made it now
                    return await client.request(f"STREAM.INFO.{LOCK_STREAM}")
                if replicas == 1:
                    raise
                if exc.err_code not in _NOT_PLACED_NOW or attempt == R3_ATTEMPTS - 1:
                    break
                await asyncio.sleep(R3_RETRY_DELAY)
    raise AssertionError("unreachable: the R1 create returned or raised")


async def _create_bucket(client: JetStreamClient, config: dict[str, Any]) -> dict[str, Any]:
    """STREAM.CREATE of the lock bucket, given time (LOCK_CREATE_TIMEOUT). A create that
    timed out may still have been made: the bucket's INFO then, else the timeout."""
    try:
        return await client.create_stream(config, timeout=max(client.timeout, LOCK_CREATE_TIMEOUT))
    except ConnectionFailed:
        info = await client.stream_info(LOCK_STREAM)
        if info is None:
            raise
        return info


async def _read(client: JetStreamClient, key: str, now: datetime) -> _Entry | None:
    try:
        reply = await client.request(
            f"STREAM.MSG.GET.{LOCK_STREAM}", {"last_by_subj": f"$KV.{LOCK_BUCKET}.{key}"}
        )
    except ApiError as exc:
        if exc.err_code in (ErrCode.NO_MESSAGE_FOUND, ErrCode.STREAM_NOT_FOUND):
            return None
        raise
    message = reply.get("message") or {}
    headers = base64.b64decode(message.get("hdrs") or "").decode(errors="replace")
    deleted = re.search(rf"(?im)^{KV_OPERATION}:\s*(DEL|PURGE)\s*$", headers) is not None
    holder = None if deleted else Holder.from_bytes(base64.b64decode(message.get("data") or ""))
    age = (now - _instant(message["time"])).total_seconds() if message.get("time") else 0.0
    return _Entry(int(message.get("seq", 0)), holder, age)


async def _current(client: JetStreamClient, key: str) -> _Entry | None:
    info = await _ensure_bucket(client)
    now = _instant(info["ts"]) if info.get("ts") else datetime.now(UTC)
    return await _read(client, key, now)


def _live(entry: _Entry | None) -> bool:
    return entry is not None and entry.holder is not None and entry.age < entry.holder.ttl


async def _write(
    client: JetStreamClient, key: str, expected: int, data: bytes, headers: dict[str, str]
) -> int | None:
    """Write the key if its last sequence is ``expected``: the new sequence, or None."""
    try:
        ack = await client.publish(
            _put_subject(client, key), data, {**headers, EXPECTED_SUBJECT_SEQ: str(expected)}
        )
    except ApiError as exc:
        if exc.err_code == ErrCode.WRONG_LAST_SEQUENCE:
            return None
        raise
    return int(ack.get("seq", 0))


async def acquire(
    client: JetStreamClient,
    key: str,
    holder: Holder,
    *,
    timeout: float = 0.0,
    on_wait: Callable[[Holder], None] | None = None,
) -> Lease:
    """Take the lock, waiting up to ``timeout`` seconds for a holder to finish."""
    deadline = time.monotonic() + timeout
    told: Holder | None = None
    while True:
        entry = await _current(client, key)
        if _live(entry):
            assert entry is not None and entry.holder is not None
            other = entry.holder
            if time.monotonic() >= deadline:
                waited = f" (waited {timeout:g}s)" if timeout else ""
                raise LockHeld(
                    f'environment "{holder.environment}" is locked by another apply: '
                    f"{other.describe()}{waited}; wait for it, or run `jsops unlock` "
                    "if it is gone",
                    other,
                )
            if on_wait is not None and other != told:
                on_wait(other)
                told = other
            await asyncio.sleep(min(POLL_INTERVAL, max(0.0, deadline - time.monotonic())))
            continue
        seq = await _write(client, key, entry.seq if entry else 0, holder.to_bytes(), {})
        if seq is not None:
            return Lease(client, key, holder, seq)


def _lost(detail: str = "") -> LockLost:
    return LockLost(
        "the apply lock was lost (the lease expired and was taken over, or "
        f"`jsops unlock` forced it): apply stopped{detail}; plan again to see the state"
    )


def lost_during(made: int, total: int) -> LockLost:
    """The lost lock of an apply that had made ``made`` of its ``total`` changes."""
    if not made:
        return _lost(" before any change was made")
    return _lost(
        f" with {made} of {total} change(s) made and {total - made} not (a write in "
        "flight when it stopped may have been made)"
    )


async def refresh(lease: Lease) -> None:
    """Write the lease again (it stays valid ``ttl`` from now); LockLost if taken over."""
    async with lease._writing:
        if lease.lost:
            raise _lost()
        sent = time.monotonic()
        seq = await _write(lease.client, lease.key, lease.seq, lease.holder.to_bytes(), {})
        if seq is None:
            lease.lost = True
            error = _lost()
            if lease.on_lost is not None:
                lease.on_lost(error)
            raise error
        lease.seq, lease.confirmed = seq, sent


async def release(lease: Lease) -> None:
    """Give the lock back (a delete marker), unless it was lost already."""
    async with lease._writing:
        if lease.lost:
            return
        await _write(lease.client, lease.key, lease.seq, b"", {KV_OPERATION: "DEL"})
        lease.lost = True  # released: no longer this run's either way


async def read_holder(client: JetStreamClient, key: str) -> Holder | None:
    """Who holds the lock now (None when free or expired); creates nothing."""
    info = await client.stream_info(LOCK_STREAM)
    if info is None:
        return None
    entry = await _read(client, key, _instant(info["ts"]) if info.get("ts") else datetime.now(UTC))
    return entry.holder if _live(entry) and entry is not None else None


async def force_unlock(client: JetStreamClient, key: str) -> Holder | None:
    """Release the lock whoever holds it; the holder it had (None: it was free)."""
    while True:
        info = await client.stream_info(LOCK_STREAM)
        if info is None:
            return None
        now = _instant(info["ts"]) if info.get("ts") else datetime.now(UTC)
        entry = await _read(client, key, now)
        if not _live(entry):
            return None
        assert entry is not None
        seq = await _write(client, key, entry.seq, b"", {KV_OPERATION: "DEL"})
        if seq is not None:
            return entry.holder


@contextlib.asynccontextmanager
async def held(
    client: JetStreamClient,
    key: str,
    holder: Holder,
    *,
    timeout: float = 0.0,
    on_wait: Callable[[Holder], None] | None = None,
) -> AsyncIterator[Lease]:
    """Hold the lock for the body: acquired first, refreshed every ``ttl / 3`` while
    the body runs, released after it. If the lease is lost, the body is cancelled and
    :class:`LockLost` raised. Writers call ``lease.ensure()`` before each write."""
    sent = time.monotonic()
    lease = await acquire(client, key, holder, timeout=timeout, on_wait=on_wait)
    lease.confirmed = sent
    owner = asyncio.current_task()
    failure: list[BaseException] = []

    def stop(error: LockLost) -> None:
        if not failure and owner is not None:
            failure.append(error)
            owner.cancel()

    lease.on_lost = stop

    async def keep() -> None:
        while not lease.lost:
            await asyncio.sleep(holder.ttl / 3)
            with contextlib.suppress(JsopsError):  # a missed refresh: the next may get through
                await refresh(lease)

    keeper = asyncio.create_task(keep())
    try:
        try:
            yield lease
        finally:  # (a keeper whose cancellation was lost would refresh the lease forever)
            await cancel_and_wait([keeper])
    except (Exception, asyncio.CancelledError):
        if failure and owner is not None:
            # The lost lease is why the body stopped, whatever it raised: also when the
            # cancellation was lost on the way (Python 3.11, see reconciler.tasks) and the
            # body went on to fail its writes in lease.ensure(), or came while the keeper
            # was being stopped.
            if owner.cancelling():
                owner.uncancel()
            raise failure[0] from None
        raise
    finally:
        with contextlib.suppress(JsopsError):
            await release(lease)


# ---------------------------------------------------------------- where the lock lives

# jsops' own account in operator mode: enough JetStream for the lock bucket alone.
LOCK_ACCOUNT_LIMITS = {"max_memory": 0, "max_storage": 8 * 1024 * 1024, "max_streams": 1}


def has_own_credentials(settings: Any) -> bool:
    """Whether the environment connects as a user of its own (not only through the
    admin users jsops mints per account in operator mode)."""
    return any((settings.creds, settings.creds_text, settings.nkey, settings.token, settings.user))


def in_lock_account(conns: Connections, operator_mode: bool) -> bool:
    """Whether the lock lives in jsops' own account (operator mode, no credentials of
    the environment's own), rather than in the environment's account."""
    return operator_mode and not has_own_credentials(conns.settings)


async def lock_client(
    conns: Connections, operator_mode: bool, *, create: bool
) -> JetStreamClient | None:
    """The account connection the lock lives in; None when it is jsops' own account
    and that does not exist yet (unless ``create``: then it is made and pushed)."""
    if not in_lock_account(conns, operator_mode):
        return await conns.client(None)
    store = conns.store
    if store.account_jwt(LOCK_ACCOUNT) is None:
        if not create:
            return None
        from reconciler.accounts import build_account_jwt, push_account_jwt
        from reconciler.live import cluster_size_of

        system = await conns.system()
        token = build_account_jwt(store, LOCK_ACCOUNT, jetstream=LOCK_ACCOUNT_LIMITS)
        await push_account_jwt(
            system,
            token,
            expect_servers=cluster_size_of(system) or 1,
            issuers=store.operator_signing_keys,
        )
        store.save_account_jwt(LOCK_ACCOUNT, token)
    return await conns.client(LOCK_ACCOUNT)


async def last_sequence(client: JetStreamClient | None) -> int:
    """The lock bucket's last sequence (0: no bucket; -1: unknown): any apply writes it."""
    if client is None:
        return 0
    try:
        info = await client.stream_info(LOCK_STREAM)
    except ApiError:  # (no JetStream here: the plan says so) unknown, so plan again
        return -1
    return int(((info or {}).get("state") or {}).get("last_seq", 0))


def lock_account_exists(conns: Connections) -> bool:
    """Whether jsops made its own lock account in the environment's auth store."""
    try:
        return conns.store.account_jwt(LOCK_ACCOUNT) is not None
    except JsopsError:  # no auth store: not operator mode
        return False
