"""``jsops status``: the live health of the resources the manifests declare.

For each declared stream (a bucket as its ``KV_``/``OBJ_`` stream, reported by bucket
name), its state (messages, bytes, sequences, consumers), replicas and cluster health
(leader; each peer current, lagging or offline, with its lag and when it was last
seen), and its mirror's or sources' lag and last activity; for each declared consumer,
its pending, ack-pending, redelivered and waiting-pull counts and its last delivery and
ack. A declared resource the server does not have is ``missing``; one it lists but
cannot report now (its servers are down) is ``unavailable``.

Reads are bulk, through ``reconciler.live``: one paged ``STREAM.LIST`` per account
(each StreamInfo carries state, cluster, mirror and sources) and one paged
``CONSUMER.LIST`` per stream that has declared consumers, concurrent under
``LIST_CONCURRENCY``; never one INFO request per resource.

Checks (:data:`STREAM_CHECKS`, :data:`CONSUMER_CHECKS`) read the thresholds from the
live ``io.nats.monitor.*`` metadata (``reconciler.models.monitoring``) and evaluate them
as nats-io/jsm.go ``monitor/stream.go`` and ``monitor/consumer.go`` do (what ``nats
server check stream`` / ``consumer`` run), so both tools agree; where jsops differs it
says so in the row. A breach is ``critical`` or ``warning``; a missing or unavailable
resource, and a replicated stream without a leader, are critical breaches too.

:class:`StatusReport` is a value (no I/O): ``to_json()`` is the documented
``status --format json`` object, :func:`render_text` the table.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TextIO

import click

from reconciler import buckets
from reconciler.diagnostics import check_targets
from reconciler.errors import ApiError
from reconciler.live import LIST_CONCURRENCY, Connections, JetStreamClient
from reconciler.models import Address, Kind, Resource
from reconciler.models.monitoring import (
    CONSUMER_MONITOR_KEYS,
    MONITOR_PREFIX,
    STREAM_MONITOR_KEYS,
    MonitorKey,
)
from reconciler.models.units import format_duration
from reconciler.planfile import document_json, write_document
from reconciler.printable import one_line
from reconciler.tasks import for_each

FORMAT_VERSION = 1
STATUS_KINDS = (Kind.STREAM, Kind.CONSUMER, Kind.KEY_VALUE, Kind.OBJECT_STORE)
SECOND = 10**9


class Health(StrEnum):
    """Whether the server could report a declared resource."""

    OK = "ok"
    MISSING = "missing"  # declared, not on the server
    UNAVAILABLE = "unavailable"  # listed, but its servers do not answer


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class Breach:
    """One failed check: ``check`` is the metadata key of its threshold
    (``io.nats.monitor.msgs-critical``), or ``missing``, ``unavailable``, ``leader``."""

    severity: Severity
    check: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"severity": self.severity.value, "check": self.check, "message": self.message}


@dataclass(frozen=True, slots=True)
class ResourceStatus:
    """One declared resource. ``info`` holds the kind's fields of the JSON object (API
    units: bytes, ns, RFC 3339 times), all None when the resource is not ``ok``."""

    address: Address
    health: Health
    info: dict[str, Any]
    breaches: tuple[Breach, ...] = ()
    reason: str | None = None

    @property
    def stream_name(self) -> str:
        """The JetStream stream: the resource's own, or a bucket's ``KV_``/``OBJ_`` one."""
        if self.address.kind is Kind.CONSUMER:
            return str(self.address.stream)
        return buckets.stream_address(self.address).name

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.address.kind.value,
            "name": self.address.name,
            "stream": self.address.stream,
            "account": self.address.account,
            "status": self.health.value,
            "reason": self.reason,
        }
        if self.address.kind is not Kind.CONSUMER:
            out["stream_name"] = self.stream_name
        out.update(self.info)
        out["breaches"] = [b.to_json() for b in self.breaches]
        return out


@dataclass(frozen=True, slots=True)
class StatusReport:
    """The status of an environment's declared resources, streams (and buckets) first,
    then consumers, each in declaration order."""

    environment: str
    resources: tuple[ResourceStatus, ...]

    @property
    def breaches(self) -> list[tuple[ResourceStatus, Breach]]:
        return [(r, b) for r in self.resources for b in r.breaches]

    @property
    def healthy(self) -> bool:
        """No breach (so nothing missing or unavailable either)."""
        return not self.breaches

    def summary(self) -> dict[str, int]:
        breaches = [b for _, b in self.breaches]
        return {
            "resources": len(self.resources),
            **{h.value: sum(r.health is h for r in self.resources) for h in Health},
            "critical": sum(b.severity is Severity.CRITICAL for b in breaches),
            "warning": sum(b.severity is Severity.WARNING for b in breaches),
        }

    def to_json(self) -> dict[str, Any]:
        document = self._document()
        document["resources"] = list(document["resources"])
        return document

    def _document(self) -> dict[str, Any]:
        """The JSON document, its resources made one at a time as they are written."""
        return {
            "format_version": FORMAT_VERSION,
            "environment": self.environment,
            "healthy": self.healthy,
            "resources": (r.to_json() for r in self.resources),
            "summary": self.summary(),
        }


# ---------------------------------------------------------------- targets


def select_resources(desired: Sequence[Resource], targets: Sequence[str]) -> list[Resource]:
    """The declared streams, buckets and consumers, only those ``targets`` name
    (``Stream/NAME`` includes its consumers); a target that names nothing declared is a
    usage error with a did-you-mean."""
    kept = [r for r in desired if r.address.kind in STATUS_KINDS]
    if not targets:
        return kept
    known = {r.address.target for r in kept}
    check_targets(targets, known, "no such resource is declared for this environment")
    wanted = set(targets)
    return [
        r
        for r in kept
        if r.address.target in wanted
        or (r.address.kind is Kind.CONSUMER and f"Stream/{r.address.stream}" in wanted)
    ]


# ---------------------------------------------------------------- reading


async def read_status(
    conns: Connections,
    resources: Sequence[Address],
    environment: str,
    *,
    now: datetime | None = None,
) -> StatusReport:
    """Read the live state of the declared ``resources`` (their addresses: a status
    needs nothing else of a manifest, so a large one holds no model while it reads;
    per account, bulk) and evaluate the checks."""
    now = now or datetime.now(UTC)
    groups: dict[str | None, list[Address]] = {}
    for address in resources:
        groups.setdefault(address.account, []).append(address)
    found: dict[Address, ResourceStatus] = {}
    for account in sorted(groups, key=lambda a: (a is not None, a or "")):
        if account is not None and not conns.store.has_account(account):
            why = f"account {account} does not exist (apply its Account manifest first)"
            for address in groups[account]:
                found[address] = _absent(address, Health.MISSING, why)
            continue
        client = await conns.client(account)
        found.update(await _read_account(client, groups[account], now))
    streams = [found[a] for a in resources if a.kind is not Kind.CONSUMER]
    consumers = [found[a] for a in resources if a.kind is Kind.CONSUMER]
    return StatusReport(environment, tuple(streams + consumers))


async def _read_account(
    client: JetStreamClient, resources: Sequence[Address], now: datetime
) -> dict[Address, ResourceStatus]:
    await client.account_info()  # JetStream not enabled for the account: one clear line
    infos, unavailable = await client.list_streams()
    by_name = {str(i.get("config", {}).get("name")): i for i in infos}
    out: dict[Address, ResourceStatus] = {}
    wanted: dict[str, list[Address]] = {}
    for address in resources:
        if address.kind is Kind.CONSUMER:
            wanted.setdefault(str(address.stream), []).append(address)
            continue
        name = buckets.stream_address(address).name
        if name in by_name:
            out[address] = stream_status(address, by_name[name], now)
        elif name in unavailable:
            out[address] = _absent(address, Health.UNAVAILABLE, unavailable[name])
        else:
            out[address] = _absent(address, Health.MISSING, MISSING)

    async def consumers_of(item: tuple[str, list[Address]]) -> None:
        stream, declared = item
        if stream not in by_name:
            gone = unavailable.get(stream)
            for address in declared:
                health = Health.UNAVAILABLE if gone else Health.MISSING
                why = gone or f"its stream {stream} is not on the server"
                out[address] = _absent(address, health, why)
            return
        try:
            listed, down = await client.list_consumers(stream)
        except ApiError as exc:  # the stream went away meanwhile
            listed, down = [], {a.name: exc.description for a in declared}
        live = {str(c.get("name")): c for c in listed}
        for address in declared:
            name = address.name
            if name in live:
                out[address] = consumer_status(address, live[name], now)
            elif name in down:
                out[address] = _absent(address, Health.UNAVAILABLE, down[name])
            else:
                out[address] = _absent(address, Health.MISSING, MISSING)

    await for_each(list(wanted.items()), consumers_of, LIST_CONCURRENCY)
    return out


MISSING = "declared but not on the server (apply creates it)"


STREAM_FIELDS = (
    "messages",
    "bytes",
    "first_seq",
    "last_seq",
    "first_ts",
    "last_ts",
    "num_subjects",
    "consumer_count",
    "replicas",
    "cluster",
    "mirror",
    "sources",
    "monitoring",
)
CONSUMER_FIELDS = (
    "num_pending",
    "num_ack_pending",
    "num_redelivered",
    "num_waiting",
    "delivered",
    "ack_floor",
    "paused",
    "cluster",
    "monitoring",
)


def _absent(address: Address, health: Health, why: str) -> ResourceStatus:
    fields = CONSUMER_FIELDS if address.kind is Kind.CONSUMER else STREAM_FIELDS
    breach = Breach(Severity.CRITICAL, health.value, why)
    return ResourceStatus(address, health, dict.fromkeys(fields), (breach,), why)


def _monitoring(metadata: dict[str, str] | None) -> dict[str, str]:
    return {k: v for k, v in sorted((metadata or {}).items()) if k.startswith(MONITOR_PREFIX)}


def _cluster(info: dict[str, Any] | None) -> dict[str, Any] | None:
    if not info:
        return None
    peers = []
    for peer in info.get("replicas") or []:
        state = "current" if peer.get("current") else "lagging"
        if peer.get("offline"):
            state = "offline"
        peers.append(
            {
                "name": peer.get("name"),
                "state": state,
                "current": bool(peer.get("current")),
                "offline": bool(peer.get("offline")),
                "active": peer.get("active"),
                "lag": peer.get("lag") or 0,
            }
        )
    return {"name": info.get("name"), "leader": info.get("leader") or None, "replicas": peers}


def _origin(info: dict[str, Any] | None) -> dict[str, Any] | None:
    if not info:
        return None
    external = info.get("external") or {}
    return {
        "name": info.get("name"),
        "api": external.get("api") or None,
        "lag": info.get("lag") or 0,
        "active": info.get("active"),
        "error": (info.get("error") or {}).get("description"),
    }


def stream_status(address: Address, info: dict[str, Any], now: datetime) -> ResourceStatus:
    """A stream's (or bucket's) status from its StreamInfo (as STREAM.LIST sends it)."""
    config = info.get("config") or {}
    state = info.get("state") or {}
    fields: dict[str, Any] = {
        "messages": int(state.get("messages") or 0),
        "bytes": int(state.get("bytes") or 0),
        "first_seq": int(state.get("first_seq") or 0),
        "last_seq": int(state.get("last_seq") or 0),
        "first_ts": state.get("first_ts"),
        "last_ts": state.get("last_ts"),
        "num_subjects": int(state.get("num_subjects") or 0),
        "consumer_count": int(state.get("consumer_count") or 0),
        "replicas": int(config.get("num_replicas") or 1),
        "cluster": _cluster(info.get("cluster")),
        "mirror": _origin(info.get("mirror")),
        "sources": [_origin(s) for s in info.get("sources") or []],
        "monitoring": _monitoring(config.get("metadata")),
    }
    breaches = run_checks(STREAM_MONITOR_KEYS, STREAM_CHECKS, info, config, now)
    return ResourceStatus(address, Health.OK, fields, tuple(breaches))


def _sequence(info: dict[str, Any] | None) -> dict[str, Any]:
    info = info or {}
    return {
        "consumer_seq": int(info.get("consumer_seq") or 0),
        "stream_seq": int(info.get("stream_seq") or 0),
        "last_active": info.get("last_active"),
    }


def consumer_status(address: Address, info: dict[str, Any], now: datetime) -> ResourceStatus:
    """A consumer's status from its ConsumerInfo (as CONSUMER.LIST sends it)."""
    config = info.get("config") or {}
    fields: dict[str, Any] = {
        "num_pending": int(info.get("num_pending") or 0),
        "num_ack_pending": int(info.get("num_ack_pending") or 0),
        "num_redelivered": int(info.get("num_redelivered") or 0),
        "num_waiting": int(info.get("num_waiting") or 0),
        "delivered": _sequence(info.get("delivered")),
        "ack_floor": _sequence(info.get("ack_floor")),
        "paused": bool(info.get("paused")),
        "cluster": _cluster(info.get("cluster")),
        "monitoring": _monitoring(config.get("metadata")),
    }
    breaches = run_checks(CONSUMER_MONITOR_KEYS, CONSUMER_CHECKS, info, config, now)
    return ResourceStatus(address, Health.OK, fields, tuple(breaches))


# ---------------------------------------------------------------- thresholds


_GO_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": SECOND,
    "m": 60 * SECOND,
    "h": 3600 * SECOND,
    "d": 86400 * SECOND,
    "D": 86400 * SECOND,
    "w": 7 * 86400 * SECOND,
    "W": 7 * 86400 * SECOND,
    "M": 30 * 86400 * SECOND,
    "y": 365 * 86400 * SECOND,
    "Y": 365 * 86400 * SECOND,
}
_JSM_DURATION = re.compile(r"([-+]?)(([\d.]+)([a-zA-Zµ]+))")
_GO_BOOLS = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True}
_GO_BOOLS.update({"0": False, "f": False, "F": False, "FALSE": False, "false": False})
_GO_BOOLS["False"] = False


def parse_threshold(spec: MonitorKey, text: str) -> Any:
    """A live ``io.nats.monitor.*`` value as jsm.go reads it (``strconv.ParseUint``,
    ``strconv.Atoi``, ``strconv.ParseBool``, ``jsm.ParseDuration`` with w/d/M/y);
    durations in ns. ValueError when jsm.go would refuse it."""
    if spec.parse == "bool":
        if text not in _GO_BOOLS:
            raise ValueError(f"{text!r} is not a boolean")
        return _GO_BOOLS[text]
    if spec.parse == "uint":
        if not re.fullmatch(r"\d+", text) or int(text) >= 2**64:
            raise ValueError(f"{text!r} is not an unsigned integer")
        return int(text)
    if spec.parse == "int":
        if not re.fullmatch(r"[+-]?\d+", text) or abs(int(text)) >= 2**63:
            raise ValueError(f"{text!r} is not an integer")
        return int(text)
    text = text.strip()
    if text == "0":
        return 0
    parts = _JSM_DURATION.findall(text)
    if not parts:
        raise ValueError(f"{text!r} is not a duration")
    total = 0.0
    for _sign, _, number, unit in parts:
        if unit not in _GO_UNITS:
            raise ValueError(f"{text!r}: invalid unit {unit}")
        try:
            total += float(number) * _GO_UNITS[unit]
        except ValueError:
            raise ValueError(f"{text!r} is not a duration") from None
    return -int(total) if parts[0][0] == "-" else int(total)  # the first sign counts


def thresholds(
    keys: tuple[MonitorKey, ...], metadata: dict[str, str] | None
) -> tuple[dict[str, Any], list[Breach]]:
    """Field -> value of the thresholds in live metadata; a value jsm.go cannot parse is
    a critical breach (``nats server check`` fails the whole check then)."""
    values: dict[str, Any] = {}
    bad: list[Breach] = []
    for spec in keys:
        text = (metadata or {}).get(spec.key)
        if text is None:
            continue
        try:
            values[spec.field] = parse_threshold(spec, text)
        except ValueError as exc:
            bad.append(Breach(Severity.CRITICAL, spec.key, f"invalid threshold: {exc}"))
    return values, bad


Check = Callable[[dict[str, Any], dict[str, Any], dict[str, Any], datetime], list[Breach]]


def run_checks(
    keys: tuple[MonitorKey, ...],
    checks: Sequence[Check],
    info: dict[str, Any],
    config: dict[str, Any],
    now: datetime,
) -> list[Breach]:
    values, bad = thresholds(keys, config.get("metadata"))
    out = list(bad)
    for check in checks:
        out += check(info, config, values, now)
    return out


def _key(field: str) -> str:
    return MONITOR_PREFIX + field.replace("_", "-")


def _crit(field: str, message: str) -> Breach:
    return Breach(Severity.CRITICAL, _key(field), message)


def _since(now: datetime, stamp: str | None) -> int | None:
    """Nanoseconds from an RFC 3339 time to ``now`` (None: no time)."""
    if not stamp:
        return None
    try:
        when = datetime.fromisoformat(_trim_fraction(stamp).replace("Z", "+00:00"))
    except ValueError:
        return None
    return int((now - when).total_seconds() * SECOND)


def _trim_fraction(stamp: str) -> str:
    """Go writes up to 9 fraction digits; Python 3.11 reads at most 6."""
    return re.sub(r"(\.\d{6})\d+", r"\1", stamp)


def ago(ns: int | None) -> str:
    """A rough human duration (``3s``, ``2m5s``, ``1h2m``; ``never`` for None or < 0)."""
    if ns is None or ns < 0:
        return "never"
    if ns < SECOND:
        return f"{ns // 1_000_000}ms"
    step = 60 * SECOND if ns >= 3600 * SECOND else SECOND
    return format_duration(ns // step * step)


# --- streams: jsm.go monitor/stream.go CheckStreamInfoHealth, in its order.


def check_leader(
    info: dict[str, Any], config: dict[str, Any], t: dict[str, Any], now: datetime
) -> list[Breach]:
    """jsops' own: a replicated stream without a leader takes no writes."""
    replicas = int(config.get("num_replicas") or 1)
    if replicas > 1 and not (info.get("cluster") or {}).get("leader"):
        return [Breach(Severity.CRITICAL, "leader", f"no leader (R{replicas})")]
    return []


def check_cluster(
    info: dict[str, Any], config: dict[str, Any], t: dict[str, Any], now: datetime
) -> list[Breach]:
    """streamCheckCluster: peer-expect, peer-lag-critical (lag >), peer-seen-critical
    (active >), offline peers. Runs when one of them is set: unlike jsm.go, an unset
    peer-expect is not compared (there a replicated stream without it is critical)."""
    expect = t.get("peer_expect", 0)
    lag_crit = t.get("peer_lag_critical", 0)
    seen_crit = t.get("peer_seen_critical", 0)
    if expect <= 0 and lag_crit <= 0 and seen_crit <= 0:
        return []
    cluster = info.get("cluster")
    if not cluster or int(config.get("num_replicas") or 1) <= 1:
        if expect > 0:
            return [_crit("peer_expect", f"stream is not clustered (expected {expect} peers)")]
        return []
    if not cluster.get("leader"):
        return []  # check_leader says so
    peers = cluster.get("replicas") or []
    out = []
    if expect > 0 and len(peers) + 1 != expect:
        out.append(_crit("peer_expect", f"expected {expect} peers, got {len(peers) + 1}"))
        return out
    offline = [p.get("name") for p in peers if p.get("offline")]
    if offline:
        key = "peer_expect" if expect > 0 else "peer_lag_critical"
        if expect <= 0 and lag_crit <= 0:
            key = "peer_seen_critical"
        names = ", ".join(map(str, offline))
        out.append(_crit(key, f"{len(offline)} replica(s) offline: {names}"))
    if lag_crit > 0:
        lagged = [p for p in peers if (p.get("lag") or 0) > lag_crit]
        if lagged:
            shown = ", ".join(f"{p.get('name')} lag {p.get('lag')}" for p in lagged)
            out.append(_crit("peer_lag_critical", f"{len(lagged)} replica(s) lagged ({shown})"))
    if seen_crit > 0:
        inactive = [p for p in peers if (p.get("active") or 0) > seen_crit]
        if inactive:
            shown = ", ".join(f"{p.get('name')} {ago(p.get('active'))} ago" for p in inactive)
            out.append(
                _crit("peer_seen_critical", f"{len(inactive)} replica(s) inactive ({shown})")
            )
    return out


def check_messages(
    info: dict[str, Any], config: dict[str, Any], t: dict[str, Any], now: datetime
) -> list[Breach]:
    """streamCheckMessages: critical, else warning, at or below the threshold."""
    msgs = int((info.get("state") or {}).get("messages") or 0)
    crit, warn = t.get("msgs_critical", 0), t.get("msgs_warn", 0)
    if crit > 0 and msgs <= crit:
        return [_crit("msgs_critical", f"{msgs} messages (at or below {crit})")]
    if warn > 0 and msgs <= warn:
        message = f"{msgs} messages (at or below {warn})"
        return [Breach(Severity.WARNING, _key("msgs_warn"), message)]
    return []


def check_subjects(
    info: dict[str, Any], config: dict[str, Any], t: dict[str, Any], now: datetime
) -> list[Breach]:
    """streamCheckSubjects: warn < critical alerts at or above, else at or below."""
    warn, crit = t.get("subjects_warn", 0), t.get("subjects_critical", 0)
    if warn <= 0 and crit <= 0:
        return []
    n = int((info.get("state") or {}).get("num_subjects") or 0)
    many = warn < crit
    word = "at or above" if many else "at or below"
    if (many and n >= crit) or (not many and n <= crit):
        return [_crit("subjects_critical", f"{n} subjects ({word} {crit})")]
    if (many and n >= warn) or (not many and n <= warn):
        return [Breach(Severity.WARNING, _key("subjects_warn"), f"{n} subjects ({word} {warn})")]
    return []


def check_sources(
    info: dict[str, Any], config: dict[str, Any], t: dict[str, Any], now: datetime
) -> list[Breach]:
    """streamCheckSources: min/max-sources; lag >= lag-critical, active >= seen-critical."""
    sources = info.get("sources") or []
    count = len(sources)
    out = []
    low, high = t.get("min_sources", 0), t.get("max_sources", 0)
    if low > 0 and count < low:
        out.append(_crit("min_sources", f"{count} sources (fewer than {low})"))
    elif high > 0 and count > high:
        out.append(_crit("max_sources", f"{count} sources (more than {high})"))
    lag_crit, seen_crit = t.get("lag_critical", 0), t.get("seen_critical", 0)
    if lag_crit > 0:
        lagged = [s for s in sources if (s.get("lag") or 0) >= lag_crit]
        if lagged:
            shown = ", ".join(f"{s.get('name')} lag {s.get('lag')}" for s in lagged)
            out.append(_crit("lag_critical", f"{len(lagged)} source(s) lagged ({shown})"))
    if seen_crit > 0:
        inactive = [s for s in sources if (s.get("active") or 0) >= seen_crit]
        if inactive:
            shown = ", ".join(f"{s.get('name')} {ago(s.get('active'))} ago" for s in inactive)
            out.append(_crit("seen_critical", f"{len(inactive)} source(s) inactive ({shown})"))
    return out


def check_mirror(
    info: dict[str, Any], config: dict[str, Any], t: dict[str, Any], now: datetime
) -> list[Breach]:
    """streamCheckMirror: lag >= lag-critical, active >= seen-critical (not with sources)."""
    lag_crit, seen_crit = t.get("lag_critical", 0), t.get("seen_critical", 0)
    if (lag_crit <= 0 and seen_crit <= 0) or info.get("sources"):
        return []
    key = "lag_critical" if lag_crit > 0 else "seen_critical"
    if not config.get("mirror"):
        return [_crit(key, "not mirrored")]
    state = info.get("mirror")
    if not state:
        return [_crit(key, "the mirror reports no state")]
    out = []
    lag, active = int(state.get("lag") or 0), int(state.get("active") or 0)
    if lag_crit > 0 and lag >= lag_crit:
        out.append(_crit("lag_critical", f"mirror lag {lag} (at or above {lag_crit})"))
    if seen_crit > 0 and active >= seen_crit:
        out.append(
            _crit("seen_critical", f"mirror seen {ago(active)} ago (at or above {ago(seen_crit)})")
        )
    return out


STREAM_CHECKS: tuple[Check, ...] = (
    check_leader,
    check_cluster,
    check_messages,
    check_subjects,
    check_sources,
    check_mirror,
)


# --- consumers: jsm.go monitor/consumer.go CheckConsumerInfoHealth, in its order.

# threshold field -> ConsumerInfo count, all "critical at or above".
CONSUMER_COUNTS = (
    ("outstanding_ack_critical", "num_ack_pending", "messages pending an ack"),
    ("waiting_critical", "num_waiting", "waiting pull requests"),
    ("unprocessed_critical", "num_pending", "messages not yet delivered"),
    ("redelivery_critical", "num_redelivered", "redelivered messages"),
)


def check_consumer_counts(
    info: dict[str, Any], config: dict[str, Any], t: dict[str, Any], now: datetime
) -> list[Breach]:
    """consumerCheckOutstandingAck, ...Waiting, ...Unprocessed, ...Redelivery."""
    out = []
    for field_name, count, words in CONSUMER_COUNTS:
        limit = t.get(field_name, 0)
        value = int(info.get(count) or 0)
        if limit > 0 and value >= limit:
            out.append(_crit(field_name, f"{value} {words} (at or above {limit})"))
    return out


def check_last_activity(
    info: dict[str, Any], config: dict[str, Any], t: dict[str, Any], now: datetime
) -> list[Breach]:
    """consumerCheckLastDelivery, consumerCheckLastAck: none yet, or too long ago."""
    out = []
    for field_name, where, what in (
        ("last_delivery_critical", "delivered", "delivery"),
        ("last_ack_critical", "ack_floor", "ack"),
    ):
        limit = t.get(field_name, 0)
        if limit <= 0:
            continue
        since = _since(now, (info.get(where) or {}).get("last_active"))
        if since is None:
            out.append(_crit(field_name, f"no {what} yet"))
        elif since >= limit:
            message = f"last {what} {ago(since)} ago (at or above {ago(limit)})"
            out.append(_crit(field_name, message))
    return out


def check_pinned(
    info: dict[str, Any], config: dict[str, Any], t: dict[str, Any], now: datetime
) -> list[Breach]:
    """consumerCheckPinned: every priority group has a pinned client."""
    if not t.get("pinned"):
        return []
    groups = config.get("priority_groups") or []
    live = info.get("priority_groups") or []
    if not live or not groups or config.get("priority_policy") != "pinned_client":
        return [_crit("pinned", "not in pinned_client priority mode")]
    pinned = sum(1 for g in live if g.get("pinned_client_id"))
    if pinned != len(groups):
        return [_crit("pinned", f"{pinned} of {len(groups)} groups have a pinned client")]
    return []


CONSUMER_CHECKS: tuple[Check, ...] = (check_consumer_counts, check_last_activity, check_pinned)


# ---------------------------------------------------------------- text


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{n}B"  # pragma: no cover


def _label(res: ResourceStatus) -> str:
    address = res.address
    prefix = f"{address.account}:" if address.account else ""
    if address.kind is Kind.CONSUMER:
        return f"{prefix}{address.stream}/{address.name}"
    return f"{prefix}{address.target}"


def _cluster_text(res: ResourceStatus) -> str:
    cluster = res.info.get("cluster")
    if not cluster:
        return "-"
    parts = [f"leader {cluster['leader']}" if cluster.get("leader") else "NO LEADER"]
    for peer in cluster.get("replicas") or []:
        detail = peer["state"]
        if peer["state"] != "current" or peer.get("lag"):
            active = peer.get("active")
            # a new leader reports a peer it has not heard from yet with active 0
            seen = "not seen by this leader" if not active else f"seen {ago(active)} ago"
            detail += f" (lag {peer.get('lag') or 0}, {seen})"
        parts.append(f"{peer['name']} {detail}")
    return ", ".join(parts)


def _origins_text(res: ResourceStatus) -> str:
    origins = [("mirror", res.info["mirror"])] if res.info.get("mirror") else []
    origins += [("source", s) for s in res.info.get("sources") or []]
    if not origins:
        return "-"
    parts = []
    for word, origin in origins:
        active = origin.get("active")
        seen = "never active" if active is None or active < 0 else f"active {ago(active)} ago"
        text = f"{word} {origin['name']}: lag {origin['lag']}, {seen}"
        if origin.get("error"):
            text += f" ({origin['error']})"
        parts.append(text)
    return "; ".join(parts)


def _table(rows: list[list[str]], styles: list[dict[str, Any] | None], color: bool) -> list[str]:
    rows = [[one_line(cell) for cell in row] for row in rows]  # names and server errors
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row, style in zip(rows, styles, strict=True):
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        line = "  ".join(cells).rstrip()
        lines.append(click.style(line, **style) if color and style else line)
    return lines


def _row_style(res: ResourceStatus) -> dict[str, Any] | None:
    if any(b.severity is Severity.CRITICAL for b in res.breaches):
        return {"fg": "red"}
    if res.breaches:
        return {"fg": "yellow"}
    return None


def render_text(report: StatusReport, *, color: bool = False, now: datetime | None = None) -> str:
    """Two tables (streams and buckets; consumers) and the breaches, for people."""
    now = now or datetime.now(UTC)
    lines: list[str] = []
    streams = [r for r in report.resources if r.address.kind is not Kind.CONSUMER]
    consumers = [r for r in report.resources if r.address.kind is Kind.CONSUMER]
    if streams:
        head = ["STREAM", "MESSAGES", "BYTES", "FIRST", "LAST", "CONSUMERS", "REPLICAS"]
        rows = [[*head, "CLUSTER", "MIRROR / SOURCES"]]
        styles: list[dict[str, Any] | None] = [{"bold": True}]
        for res in streams:
            if res.health is not Health.OK:
                blank = [""] * 6
                rows.append([_label(res), res.health.value, *blank, res.reason or ""])
            else:
                i = res.info
                rows.append(
                    [
                        _label(res),
                        str(i["messages"]),
                        _size(i["bytes"]),
                        str(i["first_seq"]),
                        str(i["last_seq"]),
                        str(i["consumer_count"]),
                        str(i["replicas"]),
                        _cluster_text(res),
                        _origins_text(res),
                    ]
                )
            styles.append(_row_style(res))
        lines += _table(rows, styles, color)
    if consumers:
        if lines:
            lines.append("")
        head = ["CONSUMER", "PENDING", "ACK PENDING", "REDELIVERED", "WAITING"]
        rows = [[*head, "LAST DELIVERY", "LAST ACK", "CLUSTER"]]
        styles = [{"bold": True}]
        for res in consumers:
            if res.health is not Health.OK:
                blank = [""] * 5
                rows.append([_label(res), res.health.value, *blank, res.reason or ""])
            else:
                i = res.info
                last_delivery = _since(now, i["delivered"]["last_active"])
                last_ack = _since(now, i["ack_floor"]["last_active"])
                rows.append(
                    [
                        _label(res),
                        str(i["num_pending"]),
                        str(i["num_ack_pending"]),
                        str(i["num_redelivered"]),
                        str(i["num_waiting"]),
                        "never" if last_delivery is None else f"{ago(last_delivery)} ago",
                        "never" if last_ack is None else f"{ago(last_ack)} ago",
                        _cluster_text(res),
                    ]
                )
            styles.append(_row_style(res))
        lines += _table(rows, styles, color)
    breaches = report.breaches
    if breaches:
        lines.append("")
        lines.append(f"{len(breaches)} check(s) failed:")
        for res, breach in breaches:
            word = breach.severity.value.upper().ljust(8)
            if color:
                fg = "red" if breach.severity is Severity.CRITICAL else "yellow"
                word = click.style(word, fg=fg, bold=True)
            said = one_line(f"{_label(res)}: {breach.message}")
            lines.append(f"  {word} {said} [{breach.check}]")
    return "\n".join(lines) + "\n" if lines else ""


def summary_line(report: StatusReport) -> str:
    counts = report.summary()
    parts = [f"{counts['ok']} ok"]
    for health in (Health.MISSING, Health.UNAVAILABLE):
        if counts[health.value]:
            parts.append(f"{counts[health.value]} {health.value}")
    checks = "all checks pass"
    if counts["critical"] or counts["warning"]:
        checks = f"{counts['critical']} critical, {counts['warning']} warning"
    return (
        f"Status of {counts['resources']} resource(s) in {report.environment}: "
        f"{', '.join(parts)}; {checks}."
    )


def render_json(report: StatusReport) -> str:
    return document_json(report.to_json())


def write_json(report: StatusReport, out: TextIO) -> None:
    """:func:`render_json` written a resource a line, each made as it is written (the
    status of 40,000 resources is never held whole as JSON)."""
    write_document(report._document(), out)


__all__ = [
    "FORMAT_VERSION",
    "Breach",
    "Health",
    "ResourceStatus",
    "Severity",
    "StatusReport",
    "read_status",
    "render_json",
    "render_text",
    "select_resources",
    "summary_line",
    "write_json",
]
