"""Normalization: desired (manifest) and live (server) configs into one comparable form.

Two functions per kind:

* ``*_api_config(resource, project)``: the config jsops *sends*: what the manifest
  sets, in API units, with the ``domain`` shorthand expanded, the owner tag added, and
  the flags the server would force anyway set explicitly (so ``pedantic`` never trips).
* ``canonical_*(config, ...)``: the form jsops *compares*: every modeled field, with
  the server's defaults filled in (``STREAM_DEFAULTS``/``CONSUMER_DEFAULTS``), absent,
  zero, ``""``, ``[]`` and ``{}`` folded together, derived defaults computed the way
  ``checkStreamCfgLocked`` and ``setConsumerConfigDefaults`` compute them (nats-server
  ``server/stream.go``, ``server/consumer.go``), and ``_nats.*`` metadata dropped.

Both sides go through the same ``canonical_*`` function, so a freshly applied
resource compares equal, and a field removed from a manifest goes back to its default.
Fields the server returns that jsops does not model are left out of the comparison.

Release-dependent: ``canonical_*`` take the target's JetStream API level
(``$JS.API.INFO`` ``api.level``; 0 for 2.10): the derived defaults that changed between
releases are the rows of ``VERSIONED_DEFAULTS``, each naming the release it changed in.
``*_wire_config(canonical, ...)`` is what apply sends: the canonical config with every
default filled in, without the fields the target's level does not know
(``reconciler.mutability.FIELD_API_LEVELS``). Set-like lists (``SET_FIELDS``) are
sorted in the canonical form, so their order never makes a difference.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from reconciler.models import ConsumerSpec, Kind, Resource, StreamSpec
from reconciler.mutability import LATEST_LEVEL, top_level_fields_above

OWNER_KEY = "jsops.owner"
# Written on resources declared with prevent_destroy, so that a prune after the
# manifest is gone still refuses to delete them.
PROTECT_KEY = "jsops.prevent_destroy"
# A digest of the config as jsops last wrote it (reconciler.drift): never compared.
DIGEST_KEY = "jsops.digest"
JSOPS_KEYS = (OWNER_KEY, PROTECT_KEY, DIGEST_KEY)
RESERVED_METADATA_PREFIX = "_nats."
TWO_MINUTES = 120 * 10**9

# Server defaults for a stream field left out of a config (what STREAM.INFO echoes).
STREAM_DEFAULTS: dict[str, Any] = {
    "description": None,
    "subjects": None,  # derived: [name] without mirror/sources
    "retention": "limits",
    "max_consumers": -1,
    "max_msgs": -1,
    "max_bytes": -1,
    "max_age": 0,
    "max_msgs_per_subject": -1,
    "max_msg_size": -1,
    "discard": "old",
    "storage": "file",
    "num_replicas": 1,
    "no_ack": False,
    "duplicate_window": None,  # derived: min(2m, max_age) without mirror/sources
    "placement": None,
    "mirror": None,
    "sources": None,
    "compression": "none",
    "first_seq": 0,
    "subject_transform": None,
    "republish": None,
    "allow_direct": False,
    "mirror_direct": False,
    "discard_new_per_subject": False,
    "sealed": False,
    "deny_delete": False,
    "deny_purge": False,
    "allow_rollup_hdrs": False,
    "consumer_limits": None,
    "allow_msg_ttl": False,
    "subject_delete_marker_ttl": 0,
    "allow_msg_counter": False,
    "allow_atomic": False,
    "allow_msg_schedules": False,
    "persist_mode": "default",
    "allow_batched": False,
    "metadata": None,
}


@dataclass(frozen=True, slots=True)
class VersionedDefault:
    """A derived default that changed in a release: from ``level`` on, ``rule`` holds."""

    kind: Kind
    field: str
    level: int  # JetStream API level the row holds from
    release: str  # the nats-server release it changed in
    rule: str  # what the server derives from that release on (and before it)


VERSIONED_DEFAULTS: tuple[VersionedDefault, ...] = (
    # checkStreamCfgLocked (server/stream.go): `cfg.Duplicates == 0 && cfg.Mirror == nil`
    # up to 2.12.x; `&& len(cfg.Sources) == 0` from v2.14.0 on.
    VersionedDefault(
        Kind.STREAM,
        "duplicate_window",
        4,
        "2.14.0",
        "a stream with sources (and no mirror) derives 0; before 2.14 it derives "
        "min(2m, max_age) like a stream without origins (a mirror derives 0 always)",
    ),
)
_SOURCED_DUPLICATES_ZERO_LEVEL = VERSIONED_DEFAULTS[0].level


def keep_earlier_duplicate_window(canon: dict[str, Any], live_canon: dict[str, Any]) -> None:
    """A sourced stream that leaves ``duplicate_window`` unset keeps the window an earlier
    release derived for it: a stream made on 2.12 holds min(2m, max_age), which 2.14
    keeps (the server derives a default only on create), where 2.14 derives 0 for a
    new one. Planning 2m -> 0 after an upgrade switched deduplication off, unasked, on
    every such stream; with the live value kept, the plan is a noop."""
    if canon["mirror"] or not canon["sources"] or canon["duplicate_window"] != 0:
        return
    max_age = canon["max_age"]
    earlier = min(TWO_MINUTES, max_age) if max_age and max_age > 0 else TWO_MINUTES
    if live_canon.get("duplicate_window") == earlier:
        canon["duplicate_window"] = earlier


# Lists the server treats as sets (it matches subjects, filters and placement tags, never
# their positions): compared as sets, sorted in the canonical form.
SET_FIELDS: dict[Kind, tuple[str, ...]] = {
    Kind.STREAM: ("subjects", "placement.tags"),
    Kind.CONSUMER: ("filter_subjects",),
}

# Limits where 0 (and anything below -1) means unlimited, stored as -1.
_UNLIMITED_WHEN_ZERO = (
    "max_consumers",
    "max_msgs",
    "max_bytes",
    "max_msgs_per_subject",
    "max_msg_size",
)

CONSUMER_DEFAULTS: dict[str, Any] = {
    "description": None,
    "deliver_policy": "all",
    "opt_start_seq": 0,
    "opt_start_time": None,
    "ack_policy": "none",
    "ack_wait": None,  # derived: 30s or backoff[0] when acks are on
    "max_deliver": -1,
    "backoff": None,
    "filter_subject": None,
    "filter_subjects": None,
    "replay_policy": "instant",
    "rate_limit_bps": 0,
    "sample_freq": None,
    "max_waiting": None,  # derived: 512 for pull consumers
    "max_ack_pending": None,  # derived: stream consumer_limits or 1000 when acks are on
    "flow_control": False,
    "headers_only": False,
    "max_batch": 0,
    "max_expires": 0,
    "max_bytes": 0,
    "deliver_subject": None,
    "deliver_group": None,
    "idle_heartbeat": 0,
    "inactive_threshold": None,  # derived: stream consumer_limits or 0
    "num_replicas": 0,  # 0 = the stream's replicas
    "mem_storage": False,
    "metadata": None,
    "priority_groups": None,
    "priority_policy": "none",
    "priority_timeout": None,  # derived: 2m for pinned_client
}
# pause_until is compared as "paused until when, from now on": a pause in the past is
# no pause. The server ignores it on update, so apply changes it through CONSUMER.PAUSE.
DEFAULT_MAX_ACK_PENDING = 1000
DEFAULT_MAX_WAITING = 512
DEFAULT_ACK_WAIT = 30 * 10**9


def _empty(value: Any) -> bool:
    """None, False, "", [] and {}: what the server leaves out of a config (0 is a value)."""
    return value is None or value is False or (not value and type(value) is not int)


def _with_defaults(config: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """Every modeled field: the config's value, or the default where it is empty."""
    out = defaults.copy()  # in the defaults' order; a walk of the (shorter) config fills it
    for key, value in config.items():
        if key in out and not (
            value is None or value is False or (not value and type(value) is not int)
        ):
            out[key] = value
    return out


def _clean(value: Any) -> Any:
    """Drop empty members of nested mappings (absent == zero == "" == [] == {})."""
    if isinstance(value, dict):
        out = {k: _clean(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if not _empty(v) and v != 0} or None
    if isinstance(value, list):
        return [_clean(v) for v in value] or None
    return value


def _instant(value: str | None) -> str | None:
    """RFC 3339 timestamps compared as instants: normalized to UTC with a Z."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    text = parsed.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


def paused_until(value: str | None) -> str | None:
    """A pause_until instant (UTC, Z), or None when absent or already past."""
    instant = _instant(value)
    if instant is None:
        return None
    try:
        when = datetime.fromisoformat(instant.replace("Z", "+00:00"))
    except ValueError:
        return instant
    return instant if when > datetime.now(UTC) else None


_RESERVED = RESERVED_METADATA_PREFIX


def user_metadata(metadata: dict[str, str] | None) -> dict[str, str]:
    """Metadata without the keys the server reserves (``_nats.*``) and without jsops'
    digest (it describes the config, it is not part of it); always a mapping, so a diff
    names the keys that changed (``metadata.jsops.owner``)."""
    if not metadata:
        return {}
    keys = sorted(k for k in metadata if k != DIGEST_KEY and not k.startswith(_RESERVED))
    return {k: metadata[k] for k in keys}


def domain_api(domain: str) -> str:
    return f"$JS.{domain}.API"


def _source(source: dict[str, Any] | None) -> dict[str, Any] | None:
    if not source:
        return None
    out = _expand_domain(source)
    out["external"] = _clean(out.get("external"))
    out["opt_start_time"] = _instant(out.get("opt_start_time"))
    transforms = out.get("subject_transforms") or None
    out["subject_transforms"] = [_clean(t) for t in transforms] if transforms else None
    out["consumer"] = _clean(out.get("consumer"))
    return {k: v for k, v in sorted(out.items()) if not _empty(v) and v != 0}


def _spec_dict(spec: StreamSpec | ConsumerSpec) -> dict[str, Any]:
    """The spec's API fields: its ``monitoring`` block is metadata (:func:`_spec_metadata`).

    What ``model_dump(exclude_none=True, mode="json")`` gives, read from the fields'
    values (:func:`plain`): the dump needs pydantic's serializer, whose schema building
    was a tenth of a plan of 1,000 streams whose validated models came from the cache."""
    return {k: plain(v) for k, v in spec.__dict__.items() if v is not None and k != "monitoring"}


def plain(value: Any) -> Any:
    """A validated model's value as JSON data: models as dicts of their set (not None)
    fields, enums as their values; dict values and list items as they are (tests check
    it against pydantic's ``model_dump(exclude_none=True, mode="json")``)."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    fields = getattr(value, "__pydantic_fields__", None)
    if fields is not None:
        return {k: plain(v) for k, v in value.__dict__.items() if v is not None and k in fields}
    return value


def _spec_metadata(spec: StreamSpec | ConsumerSpec) -> dict[str, str] | None:
    """``spec.metadata`` with the ``io.nats.monitor.*`` keys of ``spec.monitoring``
    (``reconciler.models.monitoring``): the thresholds ``nats server check`` reads."""
    if spec.monitoring is None:
        return spec.metadata
    return {**(spec.metadata or {}), **spec.monitoring.metadata()}


def _owned_metadata(
    meta: dict[str, str] | None, project: str, protect: bool = False
) -> dict[str, str]:
    out = dict(meta or {})
    out[OWNER_KEY] = project
    if protect:
        out[PROTECT_KEY] = "true"
    return out


# ---------------------------------------------------------------- streams


def stream_api_config(resource: Resource, project: str) -> dict[str, Any]:
    """The StreamConfig jsops sends for a declared stream."""
    spec = resource.spec
    assert isinstance(spec, StreamSpec)
    config: dict[str, Any] = {"name": resource.address.name, **_spec_dict(spec)}
    if "mirror" in config:
        config["mirror"] = _expand_domain(config["mirror"])
    if "sources" in config:
        config["sources"] = [_expand_domain(s) for s in config["sources"]]
    config["metadata"] = _owned_metadata(
        _spec_metadata(spec), project, resource.metadata.prevent_destroy
    )
    _force_stream_flags(config)
    return config


def _expand_domain(source: dict[str, Any]) -> dict[str, Any]:
    out = dict(source)
    domain = out.pop("domain", None)
    if domain:
        out["external"] = {"api": domain_api(domain)}
    return out


# Fields the server forces when another is set (``checkStreamCfgLocked``): applied to
# what jsops sends, so pedantic mode accepts it, and to both sides of a comparison.
STREAM_FORCED: tuple[tuple[str, dict[str, Any]], ...] = (
    (
        "subject_delete_marker_ttl",
        {"allow_msg_ttl": True, "allow_rollup_hdrs": True, "deny_purge": False},
    ),
    ("allow_msg_schedules", {"allow_rollup_hdrs": True, "deny_purge": False}),
    (
        "sealed",
        {
            "max_age": 0,
            "discard": "new",
            "deny_delete": True,
            "deny_purge": True,
            "allow_rollup_hdrs": False,
        },
    ),
)


def _apply_forced(config: dict[str, Any], *, omit_false: bool) -> None:
    """Set what STREAM_FORCED says; ``omit_false`` leaves false flags out (as sent)."""
    for trigger, forced in STREAM_FORCED:
        if not config.get(trigger):
            continue
        for key, value in forced.items():
            if omit_false and value is False:
                config.pop(key, None)
            else:
                config[key] = value


def _force_stream_flags(config: dict[str, Any]) -> None:
    """Set the flags the server would force, so the config is stored exactly as sent."""
    max_age = config.get("max_age") or 0
    has_origin = config.get("mirror") or config.get("sources")
    if not config.get("duplicate_window") and not has_origin and 0 < max_age < TWO_MINUTES:
        config["duplicate_window"] = max_age  # the 2m default would exceed max_age
    _apply_forced(config, omit_false=True)
    republish = config.get("republish")
    if republish and not republish.get("src"):
        config["republish"] = {**republish, "src": ">"}


def _sorted_set(values: list[Any] | None) -> list[Any] | None:
    return sorted(values) if values else None


def canonical_stream(config: dict[str, Any], level: int = LATEST_LEVEL) -> dict[str, Any]:
    """A StreamConfig (sent or live) in the comparable form: every modeled field, with
    the defaults a server of API level ``level`` derives."""
    out = _with_defaults(config, STREAM_DEFAULTS)
    for key in _UNLIMITED_WHEN_ZERO:
        if out[key] == 0 or out[key] < -1:
            out[key] = -1
    if not out["num_replicas"]:  # the server stores 0 replicas as 1
        out["num_replicas"] = 1
    out["description"] = config.get("description") or None
    out["mirror"] = _source(config.get("mirror"))
    sources = [_source(s) for s in config.get("sources") or []]
    out["sources"] = sources or None
    has_origin = bool(out["mirror"] or out["sources"])
    if not out["subjects"] and not has_origin:
        out["subjects"] = [config.get("name")]
    else:
        out["subjects"] = _sorted_set(out["subjects"])
    if not out["duplicate_window"]:
        if out["mirror"] or (out["sources"] and level >= _SOURCED_DUPLICATES_ZERO_LEVEL):
            out["duplicate_window"] = 0
        else:
            max_age = out["max_age"]
            out["duplicate_window"] = min(TWO_MINUTES, max_age) if max_age else TWO_MINUTES
    _apply_forced(out, omit_false=False)
    placement = _clean(config.get("placement"))
    if placement:
        placement.pop("preferred", None)
        if placement.get("tags"):
            placement["tags"] = sorted(placement["tags"])
    out["placement"] = placement or None
    republish = config.get("republish")
    if republish:
        republish = {**republish, "src": republish.get("src") or ">"}
        out["republish"] = _clean(republish)
    out["subject_transform"] = _clean(config.get("subject_transform"))
    out["consumer_limits"] = _clean(config.get("consumer_limits"))
    out["metadata"] = user_metadata(config.get("metadata"))
    return out


# ---------------------------------------------------------------- consumers


def consumer_api_config(
    resource: Resource, project: str, stream: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The ConsumerConfig jsops sends for a declared durable consumer.

    ``stream`` is the canonical config of its stream: defaults the server would
    inherit from it (``consumer_limits``) are sent explicitly, as pedantic mode wants.
    """
    spec = resource.spec
    assert isinstance(spec, ConsumerSpec)
    config: dict[str, Any] = {"durable_name": resource.address.name, **_spec_dict(spec)}
    config["metadata"] = _owned_metadata(
        _spec_metadata(spec), project, resource.metadata.prevent_destroy
    )
    limits = (stream or {}).get("consumer_limits") or {}
    for key in ("max_ack_pending", "inactive_threshold"):
        if limits.get(key) and not config.get(key):
            config[key] = limits[key]
    if config.get("backoff") and not config.get("ack_wait"):
        config["ack_wait"] = config["backoff"][0]
    if config.get("ack_policy") == "flow_control":
        config["flow_control"] = True
        config.setdefault("idle_heartbeat", 10**9)
    return config


def canonical_consumer(
    config: dict[str, Any], stream: dict[str, Any] | None = None, ack_pending_limit: int = 0
) -> dict[str, Any]:
    """A ConsumerConfig (sent or live) in the comparable form.

    ``stream`` is the canonical config of its stream, for inherited defaults
    (``consumer_limits``, replicas). No consumer default changed between the supported
    releases (``setConsumerConfigDefaults`` at v2.10.26 .. v2.15.1), so this takes no
    API level; which fields a release knows is ``consumer_wire_config``'s business.
    ``ack_pending_limit`` is the account's ``max_ack_pending`` (``LiveState.
    ack_pending_limit``): the server's default of 1000 is capped by it, and jsops sends
    the default it would pick (a larger value is refused).
    """
    out = _with_defaults(config, CONSUMER_DEFAULTS)
    limits = (stream or {}).get("consumer_limits") or {}
    acks = out["ack_policy"] != "none"
    if out["max_deliver"] == 0 or out["max_deliver"] < -1:
        out["max_deliver"] = -1
    if not out["ack_wait"]:  # the server stores 0 as its default, as it does absent
        if out["backoff"]:
            out["ack_wait"] = out["backoff"][0]
        elif out["ack_policy"] in ("explicit", "all"):
            out["ack_wait"] = DEFAULT_ACK_WAIT  # else the server leaves it unset (0)
    push = bool(out["deliver_subject"])
    if not out["max_waiting"]:  # 0 on a pull consumer is stored as the default
        out["max_waiting"] = 0 if push else DEFAULT_MAX_WAITING
    if out["max_ack_pending"] is None or out["max_ack_pending"] == 0:
        if limits.get("max_ack_pending"):
            out["max_ack_pending"] = limits["max_ack_pending"]
        else:
            default = DEFAULT_MAX_ACK_PENDING
            if 0 < ack_pending_limit < default:
                default = ack_pending_limit
            out["max_ack_pending"] = default if acks else None
    if out["inactive_threshold"] is None:
        out["inactive_threshold"] = limits.get("inactive_threshold") or 0
    if not out["priority_timeout"]:  # 0 is stored as the default, as absent is
        out["priority_timeout"] = TWO_MINUTES if out["priority_policy"] == "pinned_client" else None
    if out["ack_policy"] == "flow_control":
        out["flow_control"] = True
        out["idle_heartbeat"] = out["idle_heartbeat"] or 10**9
    if stream is not None and out["num_replicas"] == stream.get("num_replicas"):
        out["num_replicas"] = 0
    out["filter_subjects"] = _sorted_set(out["filter_subjects"])
    out["opt_start_time"] = _instant(out["opt_start_time"])
    out["pause_until"] = paused_until(config.get("pause_until"))
    out["description"] = config.get("description") or None
    out["metadata"] = user_metadata(config.get("metadata"))
    return out


# ---------------------------------------------------------------- on the wire


def _wire(kind: Kind, canonical: dict[str, Any], level: int) -> dict[str, Any]:
    """Every field a server of ``level`` knows, its value filled in; unset ones left out."""
    unknown = top_level_fields_above(kind, level)
    return {
        k: v
        for k, v in canonical.items()
        if v is not None and k not in unknown and k not in _NEVER_SENT
    }


# Compared, never sent: the comparison's view of a pause (apply uses CONSUMER.PAUSE).
_NEVER_SENT = frozenset({"pause_until"})


def stream_wire_config(
    name: str, canonical: dict[str, Any], level: int = LATEST_LEVEL
) -> dict[str, Any]:
    """The complete StreamConfig apply sends for a canonical desired config."""
    return {"name": name, **_wire(Kind.STREAM, canonical, level)}


def consumer_wire_config(
    durable: str,
    canonical: dict[str, Any],
    level: int = LATEST_LEVEL,
    pause_until: str | None = None,
) -> dict[str, Any]:
    """The complete ConsumerConfig apply sends (``pause_until`` as the manifest says)."""
    out = {"durable_name": durable, "name": durable, **_wire(Kind.CONSUMER, canonical, level)}
    if pause_until:
        out["pause_until"] = pause_until
    return out


# What json.dumps(config, sort_keys=True, separators=(",", ":"), default=str) writes, the
# encoder made once (json.dumps makes one per call with these options: a fifth of a digest).
_DIGEST_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode


def fingerprint(config: dict[str, Any] | None) -> str | None:
    """A stable digest of a canonical config (saved plans compare these)."""
    if config is None:
        return None
    return hashlib.sha256(_DIGEST_JSON(config).encode()).hexdigest()[:16]


def live_fingerprint(kind: Kind, config: dict[str, Any]) -> str:
    """The digest of a live config alone (no inherited values): did it change since?"""
    canonical = canonical_stream(config) if kind == Kind.STREAM else canonical_consumer(config)
    return fingerprint(canonical) or ""


def protected(config: dict[str, Any]) -> bool:
    return (config.get("metadata") or {}).get(PROTECT_KEY) == "true"


def owner_of(config: dict[str, Any]) -> str | None:
    return (config.get("metadata") or {}).get(OWNER_KEY)
