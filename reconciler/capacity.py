"""Capacity: does a plan fit the account's JetStream limits? Checked at plan time,
before any write, from what the plan already read (``$JS.API.INFO`` and the streams
and consumers of ``STREAM.LIST`` / ``CONSUMER.LIST``); no request of its own.

It follows the server's own create/update checks (nats-server ``checkBytesLimits``,
``tieredStreamAndReservationCount``, ``jsClusteredStreamLimitsCheck``, the consumer
count in ``jsClusteredConsumerRequest`` / ``addConsumerWithAssignment``):

==========================  ===========================================================
limit (``$JS.API.INFO``)    what the plan may not exceed once applied
==========================  ===========================================================
``max_storage``             file streams' reservations: ``max_bytes`` x ``num_replicas``
``max_memory``              (flat limits; a tier ``R<n>`` counts ``max_bytes`` once and
                            only its own streams); a limit of 0 means no such storage
``max_streams``             streams (per tier with tiered limits)
``max_consumers``           consumers **of each stream** (the server counts per stream)
``max_bytes_required``      every created or updated stream sets ``max_bytes``
``*_max_stream_bytes``      no stream's ``max_bytes`` above it
tier ``R<n>`` present       tiered limits without a tier for a stream's replicas (10120)
==========================  ===========================================================

Only what the plan makes worse is reported (an account already over a limit, with a
plan that adds nothing there, plans). Streams the server cannot report now count
toward ``max_streams`` (flat limits) but their reservations are unknown. An account
whose own limits this plan changes is not checked against its old ones.

Server-wide limits (``jetstream { max_file, max_mem }``) are visible to a system-account
connection only (``$SYS.REQ.SERVER.PING.JSZ``, in operator mode through the auth
store): :func:`server_problems` checks that the servers' free reservable space
(``max_storage - reserved_storage``, summed over the servers that answer) covers what
the plan adds (``max_bytes`` x ``num_replicas``, one replica per server). For one
server that is the server's own check; in a cluster it is a necessary condition
(placement needs it on the chosen peers).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.live import LOCK_STREAM, LiveState, account_limits
from reconciler.models import Kind
from reconciler.models.units import format_size
from reconciler.plan import Action, Change

_SERVER_LIMIT = {"file": "max_storage", "memory": "max_memory"}
_SERVER_RESERVED = {"file": "reserved_storage", "memory": "reserved_memory"}

_STORAGE_LIMIT = {"file": "max_storage", "memory": "max_memory"}
_PER_STREAM = {"file": "storage_max_stream_bytes", "memory": "memory_max_stream_bytes"}


@dataclass(frozen=True, slots=True)
class _Stream:
    storage: str
    replicas: int
    max_bytes: int
    max_consumers: int

    @classmethod
    def of(cls, config: dict[str, Any]) -> _Stream:
        return cls(
            str(config.get("storage") or "file"),
            max(1, int(config.get("num_replicas") or 1)),
            int(config.get("max_bytes") or -1),
            int(config.get("max_consumers") or -1),
        )

    @property
    def tier(self) -> str:
        return f"R{self.replicas}"


def _reservation(tier: str, stream: _Stream) -> int:
    """What a stream reserves against its account limit (``accountReservation``)."""
    if stream.max_bytes <= 0:
        return 0
    return stream.max_bytes * (stream.replicas if tier == "" else 1)


def _limited(limits: dict[str, dict[str, Any]]) -> bool:
    keys = ("max_storage", "max_memory", "max_streams", "max_consumers")
    return (
        len(limits) > 1
        or any(int(lim.get(k, -1)) >= 0 for lim in limits.values() for k in keys)
        or any(
            lim.get("max_bytes_required") or int(lim.get(k) or 0) > 0
            for lim in limits.values()
            for k in _PER_STREAM.values()
        )
    )


def _where(change: Change) -> str:
    return f"{change.location}: {change.address}" if change.location else str(change.address)


def capacity_problems(changes: Sequence[Change], live: LiveState) -> list[str]:
    """Every way ``changes`` (one account's, as apply will run them) would exceed the
    account's JetStream limits in ``live.account_info``; one line each."""
    limits = account_limits(live.account_info)
    if not _limited(limits):
        return []
    before = {name: _Stream.of(info["config"]) for name, info in live.streams.items()}
    if live.lock_config is not None:  # the apply lock's bucket reserves storage too
        before[LOCK_STREAM] = _Stream.of(live.lock_config)
    after = dict(before)
    written: list[tuple[Change, _Stream]] = []
    for change in changes:
        if change.address.kind in (Kind.CONSUMER, Kind.ACCOUNT):
            continue
        if change.action is Action.DELETE:
            after.pop(change.address.name, None)
        elif change.action in (Action.CREATE, Action.UPDATE, Action.REPLACE) and change.send:
            stream = _Stream.of(change.send)
            after[str(change.send.get("name", change.address.name))] = stream
            written.append((change, stream))
    problems = _stream_problems(limits, before, after, written, len(live.unavailable))
    problems += _consumer_problems(limits, changes, live, after)
    if problems and live.lock_config is not None:
        lock = before[LOCK_STREAM]
        problems.append(
            f"(counted: jsops's apply lock, the bucket {LOCK_STREAM}, reserves "
            f"{format_size(lock.max_bytes * lock.replicas)} of {lock.storage} storage and "
            "one stream in this account)"
        )
    return problems


def _stream_problems(
    limits: dict[str, dict[str, Any]],
    before: dict[str, _Stream],
    after: dict[str, _Stream],
    written: list[tuple[Change, _Stream]],
    unavailable: int,
) -> list[str]:
    problems: list[str] = []
    flat = "" in limits
    for change, stream in written:
        tier = "" if flat else stream.tier
        lim = limits.get(tier)
        if lim is None:
            problems.append(
                f"{_where(change)}: the account has no JetStream limits for tier {tier} "
                f"({stream.replicas} replicas); its tiers: {', '.join(sorted(limits))}"
            )
            continue
        if lim.get("max_bytes_required") and stream.max_bytes <= 0:
            problems.append(f"{_where(change)}: the account requires max_bytes on every stream")
        cap = int(lim.get(_PER_STREAM.get(stream.storage, "")) or 0)
        if cap > 0 and stream.max_bytes > cap:
            problems.append(
                f"{_where(change)}: max_bytes {format_size(stream.max_bytes)} is over the "
                f"account's {_PER_STREAM[stream.storage]} of {format_size(cap)}"
            )
    for tier, lim in sorted(limits.items()):

        def members(streams: Iterable[_Stream], tier: str = tier) -> list[_Stream]:
            return [s for s in streams if tier == "" or s.tier == tier]

        label = f" (tier {tier})" if tier else ""
        new, old = members(after.values()), members(before.values())
        ours = [(c, s) for c, s in written if tier == "" or s.tier == tier]
        if not ours:
            continue
        max_streams = int(lim.get("max_streams", -1))
        extra = unavailable if tier == "" else 0
        if 0 < max_streams < len(new) + extra and len(new) > len(old):
            problems.append(
                f"{_where(ours[-1][0])}: the account would have {len(new) + extra} streams"
                f"{label} after this plan, over its max_streams of {max_streams} "
                f"({len(old) + extra} now; short by {len(new) + extra - max_streams})"
            )
        for storage, key in _STORAGE_LIMIT.items():
            limit = int(lim.get(key, -1))
            if limit < 0:
                continue
            reserve_new = sum(_reservation(tier, s) for s in new if s.storage == storage)
            reserve_old = sum(_reservation(tier, s) for s in old if s.storage == storage)
            adds = [c for c, s in ours if s.storage == storage]
            if not adds:
                continue
            if limit == 0:
                problems.append(
                    f"{_where(adds[0])}: the account has no {storage} storage{label} ({key} is 0)"
                )
            elif reserve_new > limit and reserve_new > reserve_old:
                how = "max_bytes x num_replicas" if tier == "" else "max_bytes"
                problems.append(
                    f"{_where(adds[-1])}: {storage} streams{label} would reserve "
                    f"{format_size(reserve_new)} ({how}) after this plan, over the "
                    f"account's {key} of {format_size(limit)}: short by "
                    f"{format_size(reserve_new - limit)} ({format_size(reserve_old)} "
                    f"reserved now, {len(adds)} stream(s) of this plan add to it)"
                )
    return problems


def _consumer_problems(
    limits: dict[str, dict[str, Any]],
    changes: Sequence[Change],
    live: LiveState,
    streams: dict[str, _Stream],
) -> list[str]:
    """Consumers per stream: the account's max_consumers (per tier) and the stream's."""
    counts = Counter(stream for stream, _ in live.consumer_keys())
    before = Counter(counts)
    created: dict[str, list[Change]] = {}
    for change in changes:
        if change.address.kind != Kind.CONSUMER:
            continue
        stream = change.address.stream or ""
        if change.action is Action.CREATE:
            counts[stream] += 1
            created.setdefault(stream, []).append(change)
        elif change.action is Action.DELETE:
            counts[stream] -= 1
    problems: list[str] = []
    flat = "" in limits
    for stream, added in sorted(created.items()):
        info = streams.get(stream)
        tier_limits = limits.get("" if flat or info is None else info.tier) or {}
        account_max = int(tier_limits.get("max_consumers", -1))
        stream_max = info.max_consumers if info is not None else -1
        for limit, whose in ((account_max, "the account's"), (stream_max, "the stream's")):
            if 0 < limit < counts[stream] and counts[stream] > before[stream]:
                problems.append(
                    f"{_where(added[-1])}: stream {stream} would have {counts[stream]} "
                    f"consumers after this plan, over {whose} max_consumers of {limit} "
                    f"(per stream; {before[stream]} now)"
                )
    return problems


def _added(changes: Sequence[Change], live: LiveState) -> dict[str, int]:
    """Bytes the plan adds to the servers' reservations, per storage (may be < 0)."""
    added: dict[str, int] = {"file": 0, "memory": 0}

    def server_bytes(stream: _Stream) -> int:
        return max(0, stream.max_bytes) * stream.replicas

    for change in changes:
        if change.address.kind in (Kind.CONSUMER, Kind.ACCOUNT):
            continue
        info = live.streams.get(str((change.send or {}).get("name", change.address.name)))
        old = _Stream.of(info["config"]) if info else None
        if old is not None and change.action in (Action.DELETE, Action.REPLACE, Action.UPDATE):
            added[old.storage] = added.get(old.storage, 0) - server_bytes(old)
        if change.action in (Action.CREATE, Action.UPDATE, Action.REPLACE) and change.send:
            new = _Stream.of(change.send)
            added[new.storage] = added.get(new.storage, 0) + server_bytes(new)
    return added


def server_problems(
    changes: Sequence[Change], live: LiveState, servers: Sequence[dict[str, Any]]
) -> list[str]:
    """The plan against the servers' own JetStream limits, from their ``JSZ`` replies
    (``{"server": {...}, "data": {"config": {...}, "reserved_storage": ...}}``)."""
    if not servers:
        return []
    added = _added(changes, live)
    problems = []
    for storage, need in added.items():
        if need <= 0:
            continue
        free = 0
        for reply in servers:
            data = reply.get("data") or {}
            limit = int((data.get("config") or {}).get(_SERVER_LIMIT[storage]) or 0)
            free += max(0, limit - int(data.get(_SERVER_RESERVED[storage]) or 0))
        if need > free:
            names = sorted(str((r.get("server") or {}).get("name", "?")) for r in servers)
            problems.append(
                f"the plan reserves {format_size(need)} more {storage} storage (max_bytes x "
                f"num_replicas) than the servers have free: {format_size(free)} on "
                f"{', '.join(names)} (jetstream {_SERVER_LIMIT[storage]} less what is "
                f"reserved); short by {format_size(need - free)}"
            )
    return problems
