"""Which changes the server refuses in place: one table per kind.

Each row names a top-level field, the kind of change the server refuses, the
server check it follows, and the API levels / versions where the rule holds. A
planned change that matches a row becomes ``replace`` (delete then create).

Streams follow ``configUpdateCheckLocked`` (nats-server ``server/stream.go``),
consumers ``checkNewConsumerConfig`` (``server/consumer.go``); the reference notes
(``jetstream-api.md`` section 2) list the refusals with their err_codes, and
``tests/test_mutability.py`` shows each row against a real server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from reconciler.models import Kind
from reconciler.models.units import format_duration

Check = Callable[[Any, Any], bool]


def changed(before: Any, after: Any) -> bool:
    return bool(before != after)


def turned_off(before: Any, after: Any) -> bool:
    return bool(before) and not after


def to_or_from_workqueue(before: Any, after: Any) -> bool:
    return before != after and "workqueue" in (before, after)


def mirror_added_or_changed(before: Any, after: Any) -> bool:
    return after is not None and before != after


def mirror_removed(before: Any, after: Any) -> bool:
    return before is not None and after is None


def push_pull_switch(before: Any, after: Any) -> bool:
    return bool(before) != bool(after)


def _version(text: str) -> tuple[int, int, int]:
    parts = [*text.split("-")[0].split("."), "0", "0", "0"][:3]
    try:
        return int(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        return (0, 0, 0)


@dataclass(frozen=True)
class ReplaceRule:
    """A change the server refuses in place, so jsops plans a replace."""

    field: str
    check: Check
    reason: str
    min_level: int = 0  # the rule holds from this API level on
    max_level: int | None = None  # ... up to and including this API level
    min_version: str | None = None  # ... or from this server version on
    max_version: str | None = None  # ... up to and including this server version

    def applies(self, api_level: int, version: str) -> bool:
        if api_level < self.min_level:
            return False
        if self.max_level is not None and api_level > self.max_level:
            return False
        v = _version(version) if version else None
        if v and self.min_version and v < _version(self.min_version):
            return False
        return not (v and self.max_version and v > _version(self.max_version))


# Every row that holds on nats-server 2.15.1 was observed refused there (the err_code and
# message are asserted in tests/test_mutability.py); version-gated rows follow the same
# check at the nats-server release tags.
STREAM_REPLACE_RULES: tuple[ReplaceRule, ...] = (
    ReplaceRule("storage", changed, "storage type cannot change"),
    ReplaceRule("retention", to_or_from_workqueue, "retention cannot change to or from workqueue"),
    ReplaceRule("sealed", turned_off, "a sealed stream cannot be unsealed"),
    ReplaceRule("deny_delete", turned_off, "deny_delete cannot be turned off"),
    ReplaceRule("deny_purge", turned_off, "deny_purge cannot be turned off"),
    ReplaceRule("mirror", mirror_added_or_changed, "a mirror cannot be added or changed"),
    # Removing a mirror is an in-place promotion from 2.12 (API level 2) on.
    ReplaceRule("mirror", mirror_removed, "a mirror cannot be removed before 2.12", max_level=1),
    ReplaceRule("allow_msg_ttl", turned_off, "message TTLs cannot be disabled"),
    ReplaceRule(
        "allow_msg_ttl", changed, "allow_msg_ttl cannot change before 2.11.2", max_version="2.11.1"
    ),
    ReplaceRule("allow_msg_counter", changed, "allow_msg_counter cannot change"),
    ReplaceRule("allow_msg_schedules", turned_off, "message schedules cannot be disabled"),
    ReplaceRule("persist_mode", changed, "persist_mode cannot change"),
    # 2.12.5 is where the API level went from 2 to 3: a level, which the domain's own
    # JetStream reports, not the version of the server jsops happens to be connected to.
    ReplaceRule("max_consumers", changed, "max_consumers cannot change before 2.12.5", max_level=2),
)

CONSUMER_REPLACE_RULES: tuple[ReplaceRule, ...] = (
    ReplaceRule("deliver_policy", changed, "deliver policy cannot be updated"),
    ReplaceRule("opt_start_seq", changed, "start sequence cannot be updated"),
    ReplaceRule("opt_start_time", changed, "start time cannot be updated"),
    ReplaceRule("ack_policy", changed, "ack policy cannot be updated"),
    ReplaceRule("replay_policy", changed, "replay policy cannot be updated"),
    ReplaceRule("idle_heartbeat", changed, "heartbeats cannot be updated"),
    ReplaceRule("flow_control", changed, "flow control cannot be updated"),
    ReplaceRule("max_waiting", changed, "max waiting cannot be updated"),
    ReplaceRule("deliver_subject", push_pull_switch, "a consumer cannot switch push <-> pull"),
    # nats-server checks mem_storage from v2.14.4 on: commit 8fb265a48 "[FIXED] Reject
    # consumer storage type update" is in v2.14.4 (not in its RCs) and later, in no 2.12.x
    # or 2.11.x release; the reference notes said 2.14.5. Refused on 2.15.1 (err 10012).
    ReplaceRule("mem_storage", changed, "storage type cannot be updated", min_version="2.14.4"),
)

REPLACE_RULES = {Kind.STREAM: STREAM_REPLACE_RULES, Kind.CONSUMER: CONSUMER_REPLACE_RULES}


@dataclass(frozen=True)
class CombinationRule:
    """Settings a release refuses together (``checkStreamCfg``), where earlier releases of
    the same API level took them: a plan error on the releases that refuse them, never an
    offline one (offline, the release is not known)."""

    field: str  # where the error is located
    check: Callable[[dict[str, Any]], bool]  # on the config sent (API names)
    reason: str
    since: tuple[str, ...]  # the first release of each release line that refuses it

    def refused(self, version: str) -> bool:
        """Whether the release ``version`` refuses it ("": not known, the server says)."""
        return bool(version) and _from_release(version, self.since)


def _from_release(version: str, since: tuple[str, ...]) -> bool:
    """Whether ``version`` has a change that came with the releases ``since`` (the first
    release of each release line that has it; later lines have it too)."""
    v = _version(version)
    lines = [_version(s) for s in since if _version(s)[:2] <= v[:2]]
    if not lines:
        return False
    first = max(lines)
    return v >= first if first[:2] == v[:2] else True


STREAM_COMBINATION_RULES: tuple[CombinationRule, ...] = (
    CombinationRule(
        "allow_msg_schedules",
        lambda c: bool(c.get("allow_msg_schedules")) and c.get("discard") == "new",
        "allow_msg_schedules rules out discard: new",
        ("2.12.10", "2.14.2"),
    ),
    CombinationRule(
        "allow_msg_counter",
        lambda c: bool(c.get("allow_msg_counter") and c.get("allow_msg_schedules")),
        "allow_msg_counter rules out allow_msg_schedules",
        ("2.12.10", "2.14.2"),
    ),
)


def refused_combinations(config: dict[str, Any], version: str) -> list[tuple[str, str]]:
    """(field, reason) of each STREAM_COMBINATION_RULES row release ``version`` refuses."""
    return [
        (rule.field, f"{rule.reason} (nats-server {version} refuses it)")
        for rule in STREAM_COMBINATION_RULES
        if rule.check(config) and rule.refused(version)
    ]


# nats-server checks a stream update that changes ``consumer_limits`` against the
# stream's consumers as they are when the update arrives (``updateConfig`` in
# server/stream.go, the meta leader's in jetstream_cluster.go). Before 2.12.12 and
# 2.14.3 any change counts and an unset limit counts as 0, so setting only
# inactive_threshold, or removing the limits, is refused while any ack consumer holds
# its max_ack_pending (1000); since then only a limit that is set is checked.
CONSUMER_LIMITS_UNSET_IGNORED = ("2.12.12", "2.14.3")
_LIMITS = ("inactive_threshold", "max_ack_pending")


def unset_consumer_limit_is_zero(version: str) -> bool:
    """Whether release ``version`` checks every consumer_limits change, an unset limit as
    0 (False for an unknown version: see consumer_limits_violations)."""
    return bool(version) and not _from_release(version, CONSUMER_LIMITS_UNSET_IGNORED)


def consumer_limits_violations(
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    consumers: Iterable[tuple[str, dict[str, Any]]],
    version: str,
) -> list[str]:
    """The consumers (``name (field value)``) for which release ``version`` refuses the
    stream update of ``consumer_limits`` from ``before`` to ``after`` (API configs).
    An unknown version ("") is judged by the later rule, whose refusals every release
    shares: a plan error is never one the server would not give."""
    old, new = before or {}, after or {}
    every = unset_consumer_limit_is_zero(version)
    checked = [f for f in _LIMITS if (every or (new.get(f) or 0) > 0) and old.get(f) != new.get(f)]
    if not checked:
        return []
    limits = [f for f in _LIMITS if every or (new.get(f) or 0) > 0]
    out = []
    for name, config in consumers:
        over = [
            f"{f} {_shown(f, config.get(f))} > {_shown(f, new.get(f))}"
            for f in limits
            if (config.get(f) or 0) > (new.get(f) or 0)
        ]
        if over:
            out.append(f"{name} ({', '.join(over)})")
    return sorted(out)


def _shown(field: str, value: Any) -> str:
    if not value:
        return "unset"
    return format_duration(value) if field == "inactive_threshold" else str(value)


def replace_reasons(
    kind: Kind,
    before: dict[str, Any],
    after: dict[str, Any],
    *,
    api_level: int,
    version: str = "",
) -> list[tuple[str, str]]:
    """(field, reason) for every change between two canonical configs that forces a replace."""
    found: list[tuple[str, str]] = []
    for rule in REPLACE_RULES[kind]:
        if not rule.applies(api_level, version):
            continue
        hit = rule.check(before.get(rule.field), after.get(rule.field))
        if hit and all(f != rule.field for f, _ in found):
            found.append((rule.field, rule.reason))
    return found


# ---------------------------------------------------------------- fields by API level
# The API level ($JS.API.INFO api.level) a field needs: 1 = 2.11, 2 = 2.12, 4 = 2.14.
# From 2.12 the server refuses unknown fields (strict JSON), and 2.10/2.11 drop them
# silently, so sending a field an older server does not know is an apply-time error or
# a lost setting; jsops makes it a plan error naming the release that added the field.
# Keys are dotted API paths; "field=value" rows gate one enum value.
# The release that introduced each API level (2.10 has none: level 0).
LEVEL_RELEASES: dict[int, str] = {0: "2.10", 1: "2.11", 2: "2.12", 3: "2.12", 4: "2.14", 5: "2.15"}
LATEST_LEVEL = max(LEVEL_RELEASES)


def level_of_release(version: str) -> int:
    """The JetStream API level of a nats-server release ("2.12.8" -> 2): the lowest level
    its release line has (LEVEL_RELEASES), the latest known one for a newer release.
    For when no ``$JS.API.INFO`` can be read (an account that does not exist yet)."""
    major, minor, _ = _version(version)
    levels = [lvl for lvl, line in LEVEL_RELEASES.items() if _version(line)[:2] <= (major, minor)]
    exact = [lvl for lvl, line in LEVEL_RELEASES.items() if _version(line)[:2] == (major, minor)]
    return min(exact) if exact else max(levels, default=0)


def version_for_rules(version: str, api_level: int) -> str:
    """``version`` (the connected server's, from its INFO) if it can be the version of
    the JetStream server that answered with ``api_level``, else "" (unknown).

    Through a leaf node to a hub's domain, or to a cluster mid-upgrade, the server jsops
    is connected to is not the one that applies the change: a 2.15 leaf in front of a
    2.11 hub answers level 1. A version its release line cannot have at that level is
    not used, and a version-gated rule then holds (``ReplaceRule.applies``): the plan
    is a replace the server might have done in place, never an update it refuses."""
    if not version:
        return ""
    major, minor, _ = _version(version)
    line = [lvl for lvl, rel in LEVEL_RELEASES.items() if _version(rel)[:2] == (major, minor)]
    if line:
        return version if api_level in line else ""
    newer = all(_version(rel)[:2] < (major, minor) for rel in LEVEL_RELEASES.values())
    if newer:
        return version if api_level >= LATEST_LEVEL else ""
    return version if api_level == level_of_release(version) else ""


def release_of(level: int) -> str:
    """The first nats-server release line with JetStream API level ``level``."""
    known = [lvl for lvl in LEVEL_RELEASES if lvl <= level]
    return LEVEL_RELEASES[max(known)] if known else LEVEL_RELEASES[0]


FIELD_API_LEVELS: dict[Kind, dict[str, int]] = {
    Kind.STREAM: {
        "allow_msg_ttl": 1,
        "subject_delete_marker_ttl": 1,
        "allow_msg_counter": 2,
        "allow_atomic": 2,
        "allow_msg_schedules": 2,
        "persist_mode": 2,
        "allow_batched": 4,
        "mirror.consumer": 4,
        "sources.consumer": 4,
    },
    # Buckets are streams (reconciler.buckets): the bucket field that sets a gated one.
    Kind.KEY_VALUE: {"limit_marker_ttl": 1},
    Kind.OBJECT_STORE: {},
    Kind.CONSUMER: {
        "pause_until": 1,
        "priority_groups": 1,
        "priority_policy": 1,
        "priority_timeout": 1,
        "priority_policy=prioritized": 2,
        "ack_policy=flow_control": 4,
    },
}


def top_level_fields_above(kind: Kind, api_level: int) -> frozenset[str]:
    """Top-level fields a server of ``api_level`` does not know (never sent to it)."""
    cached = _FIELDS_ABOVE.get((kind, api_level))
    if cached is not None:
        return cached
    return frozenset(
        key
        for key, level in FIELD_API_LEVELS[kind].items()
        if level > api_level and "." not in key and "=" not in key
    )


_FIELDS_ABOVE: dict[tuple[Kind, int], frozenset[str]] = {}
for _kind in FIELD_API_LEVELS:
    for _level in LEVEL_RELEASES:
        _FIELDS_ABOVE[(_kind, _level)] = top_level_fields_above(_kind, _level)


def fields_needing_level(
    kind: Kind, config: dict[str, Any], api_level: int
) -> list[tuple[str, int]]:
    """(path, level) for every field of a config sent to the server that needs a higher level."""
    out = []
    for key, level in FIELD_API_LEVELS[kind].items():
        if level <= api_level:
            continue
        name, _, value = key.partition("=")
        head, _, sub = name.partition(".")
        current = config.get(head)
        if sub:
            items = current if isinstance(current, list) else [current]
            if any(isinstance(item, dict) and item.get(sub) for item in items):
                out.append((name, level))
        elif value:
            if current == value:
                out.append((key.replace("=", ": "), level))
        elif current not in (None, False, 0, "", [], {}):
            out.append((name, level))
    return out
