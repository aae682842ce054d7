"""The ``monitoring:`` block of a spec: health thresholds, kept on the server as the
``io.nats.monitor.*`` metadata that ``nats server check stream`` / ``consumer`` read.

The keys, and how each value is parsed, are those of nats-io/jsm.go ``monitor/stream.go``
and ``monitor/consumer.go`` (``populateStreamHealthCheckOptions``,
``populateConsumerHealthCheckOptions``), which natscli's ``server check`` calls: a
manifest field ``msgs_warn`` is the key ``io.nats.monitor.msgs-warn``. Values are
written the way those parsers read them: counts in decimal, durations as
``format_duration`` writes them (``5m``, ``1h30m``: Go units plus ``d``, which
``jsm.ParseDuration`` reads), flags as ``true``/``false``. ``jsops status --check``
evaluates the same metadata (``reconciler.status``).

A Stream, KeyValue or ObjectStore block has the stream keys, a Consumer block the
consumer keys; ``enabled`` (both) marks the resource for ``nats audit``'s metadata
checks. The block is part of the desired config: planned and applied as metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from reconciler.models.types import STRICT, Duration, Int
from reconciler.models.units import UnitError, format_duration, parse_duration

MONITOR_PREFIX = "io.nats.monitor."
# how jsm.go reads a value: strconv.ParseUint, strconv.Atoi, jsm.ParseDuration, ParseBool
Parse = Literal["uint", "int", "duration", "bool"]

Problem = tuple[tuple[str | int, ...], str]


@dataclass(frozen=True, slots=True)
class MonitorKey:
    """One threshold: its manifest field, its metadata key, how jsm.go parses it."""

    field: str
    parse: Parse

    @property
    def key(self) -> str:
        return MONITOR_PREFIX + self.field.replace("_", "-")


# jsm.go monitor/stream.go: MonitorMetaEnabled and StreamMonitorMeta*.
STREAM_MONITOR_KEYS: tuple[MonitorKey, ...] = (
    MonitorKey("enabled", "bool"),
    MonitorKey("lag_critical", "uint"),
    MonitorKey("seen_critical", "duration"),
    MonitorKey("min_sources", "int"),
    MonitorKey("max_sources", "int"),
    MonitorKey("peer_expect", "int"),
    MonitorKey("peer_lag_critical", "uint"),
    MonitorKey("peer_seen_critical", "duration"),
    MonitorKey("msgs_warn", "uint"),
    MonitorKey("msgs_critical", "uint"),
    MonitorKey("subjects_warn", "int"),
    MonitorKey("subjects_critical", "int"),
)
# jsm.go monitor/consumer.go: MonitorMetaEnabled and ConsumerMonitorMeta*.
CONSUMER_MONITOR_KEYS: tuple[MonitorKey, ...] = (
    MonitorKey("enabled", "bool"),
    MonitorKey("outstanding_ack_critical", "int"),
    MonitorKey("waiting_critical", "int"),
    MonitorKey("unprocessed_critical", "int"),
    MonitorKey("last_delivery_critical", "duration"),
    MonitorKey("last_ack_critical", "duration"),
    MonitorKey("redelivery_critical", "int"),
    MonitorKey("pinned", "bool"),
)


class _Monitoring(BaseModel):
    model_config = STRICT
    enabled: bool | None = Field(
        default=None, description="io.nats.monitor.enabled: nats audit checks this resource"
    )

    KEYS: ClassVar[tuple[MonitorKey, ...]] = ()

    def metadata(self) -> dict[str, str]:
        """The ``io.nats.monitor.*`` metadata this block writes (set fields only)."""
        out: dict[str, str] = {}
        for spec in self.KEYS:
            value = getattr(self, spec.field)
            if value is not None:
                out[spec.key] = format_value(spec, value)
        return out

    def problems(self, metadata: dict[str, str] | None) -> list[Problem]:
        """A key both in this block and in ``metadata``: set in two places."""
        out: list[Problem] = []
        for spec in self.KEYS:
            if getattr(self, spec.field) is not None and spec.key in (metadata or {}):
                out.append(
                    (
                        (spec.field,),
                        f"{spec.field} is {spec.key}, which metadata sets too: set it in one place",
                    )
                )
        return out


class StreamMonitoring(_Monitoring):
    """``monitoring`` of a Stream, KeyValue or ObjectStore spec (``nats server check
    stream``). Messages alert at or below a threshold; subjects alert at or above it
    when warn < critical, at or below it otherwise."""

    KEYS: ClassVar[tuple[MonitorKey, ...]] = STREAM_MONITOR_KEYS
    lag_critical: Int | None = Field(
        default=None, ge=0, description="critical when a mirror or source lags this many messages"
    )
    seen_critical: Duration | None = Field(
        default=None, description="critical when a mirror or source was last seen this long ago"
    )
    min_sources: Int | None = Field(default=None, ge=0, description="critical below this many")
    max_sources: Int | None = Field(default=None, ge=0, description="critical above this many")
    peer_expect: Int | None = Field(
        default=None, ge=0, description="critical unless the stream has this many peers"
    )
    peer_lag_critical: Int | None = Field(
        default=None, ge=0, description="critical when a replica lags more operations"
    )
    peer_seen_critical: Duration | None = Field(
        default=None, description="critical when a replica was last seen longer ago"
    )
    msgs_warn: Int | None = Field(
        default=None, ge=0, description="warning at or below this many messages"
    )
    msgs_critical: Int | None = Field(
        default=None, ge=0, description="critical at or below this many messages"
    )
    subjects_warn: Int | None = Field(default=None, ge=0)
    subjects_critical: Int | None = Field(default=None, ge=0)

    def problems(self, metadata: dict[str, str] | None) -> list[Problem]:
        out = super().problems(metadata)
        if (self.subjects_warn is None) != (self.subjects_critical is None):
            field = "subjects_warn" if self.subjects_warn is not None else "subjects_critical"
            out.append(
                (
                    (field,),
                    "subjects_warn and subjects_critical go together (their order sets the "
                    "direction: warn < critical alerts on many subjects, else on few)",
                )
            )
        if (
            self.min_sources is not None
            and self.max_sources is not None
            and self.min_sources > self.max_sources
        ):
            out.append((("min_sources",), "min_sources must not exceed max_sources"))
        return out


class ConsumerMonitoring(_Monitoring):
    """``monitoring`` of a Consumer spec (``nats server check consumer``): each count
    is critical at or above its threshold, each duration when that long has passed."""

    KEYS: ClassVar[tuple[MonitorKey, ...]] = CONSUMER_MONITOR_KEYS
    outstanding_ack_critical: Int | None = Field(
        default=None, ge=0, description="critical at this many messages pending an ack"
    )
    waiting_critical: Int | None = Field(
        default=None, ge=0, description="critical at this many waiting pull requests"
    )
    unprocessed_critical: Int | None = Field(
        default=None, ge=0, description="critical at this many messages not yet delivered"
    )
    last_delivery_critical: Duration | None = Field(
        default=None, description="critical when the last delivery is this long ago (or none)"
    )
    last_ack_critical: Duration | None = Field(
        default=None, description="critical when the last ack is this long ago (or none)"
    )
    redelivery_critical: Int | None = Field(
        default=None, ge=0, description="critical at this many redelivered messages"
    )
    pinned: bool | None = Field(
        default=None, description="critical unless every priority group has a pinned client"
    )


def format_value(spec: MonitorKey, value: Any) -> str:
    """A threshold as its metadata string (what jsm.go parses back to the same value)."""
    if spec.parse == "bool":
        return "true" if value else "false"
    if spec.parse == "duration":
        return format_duration(int(value))
    return str(int(value))


def parse_value(spec: MonitorKey, text: str) -> Any:
    """A metadata string as jsops would have written it, else ValueError (export keeps
    other spellings, such as ``300s`` or ``1w``, as plain metadata)."""
    if spec.parse == "bool":
        if text not in ("true", "false"):
            raise ValueError(text)
        return text == "true"
    if spec.parse == "duration":
        try:
            value: int = parse_duration(text)
        except UnitError:
            raise ValueError(text) from None
    elif text.isascii() and text.isdigit():
        value = int(text)
    else:
        raise ValueError(text)
    if format_value(spec, value) != text:
        raise ValueError(text)
    return value


def split_monitoring(
    keys: tuple[MonitorKey, ...], metadata: dict[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Live metadata -> (the monitoring block it holds, in API units; the rest). A key
    whose value is not spelled the way the block writes it stays in the rest, so that
    the block and the rest write back exactly the live metadata."""
    block: dict[str, Any] = {}
    rest = dict(metadata)
    for spec in keys:
        text = rest.get(spec.key)
        if text is None:
            continue
        try:
            block[spec.field] = parse_value(spec, text)
        except ValueError:
            continue
        del rest[spec.key]
    return block, rest
