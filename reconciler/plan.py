"""The plan: what apply will do, as a value (no I/O in this module).

``build_plan(desired, live, ...)`` is a pure function of the validated manifests and
the live state, so most plan behaviour is testable without a server.

A :class:`Change` is an address, an action, the field diffs, and what apply needs
(the exact config to send and a fingerprint of the live config it was planned
against). ``reason`` is for people only; apply decides from ``action`` alone.
``drift`` says whether the live config moved since jsops last wrote it
(``reconciler.drift``); every config a change sends carries its own digest.

==========  ===============================  =================================
action      before (live)                    after (desired)
==========  ===============================  =================================
create      none                             the config to create
update      live config                      the config to send (in place)
replace     live config (deleted first)      the config to create afterwards
delete      live config                      none
noop        equal to after                   equal to before
==========  ===============================  =================================
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from reconciler.diff import FieldDiff, diff_config
from reconciler.drift import drifted, stamp
from reconciler.errors import Diagnostic, ManifestError, UsageError
from reconciler.live import LiveState
from reconciler.models import Address, Resource, StreamSource, StreamSpec
from reconciler.mutability import fields_needing_level, replace_reasons
from reconciler.normalize import (
    CONSUMER_DEFAULTS,
    STREAM_DEFAULTS,
    canonical_consumer,
    canonical_stream,
    consumer_api_config,
    live_fingerprint,
    owner_of,
    protected,
    stream_api_config,
)

FORMAT_VERSION = 1


class Action(StrEnum):
    NOOP = "noop"
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"

    @property
    def symbol(self) -> str:
        return {"noop": " ", "create": "+", "update": "~", "replace": "-/+", "delete": "-"}[
            self.value
        ]


class Reason(StrEnum):
    """Why a change is planned. For display only; apply never looks at it."""

    NEW = "new"
    CHANGED = "changed"
    CANNOT_UPDATE = "cannot_update"
    STREAM_REPLACED = "stream_replaced"
    ADOPT = "adopt_owner_tag"
    NOT_IN_MANIFESTS = "not_in_manifests"
    STREAM_DELETED = "stream_deleted"


@dataclass(slots=True)
class Change:
    """One planned change to one resource (see the module docstring for before/after)."""

    address: Address
    action: Action
    diff: list[FieldDiff] = field(default_factory=list)
    reason: Reason | None = None
    replace_paths: list[str] = field(default_factory=list)
    replace_reasons: list[str] = field(default_factory=list)
    destructive: bool = False
    loss: dict[str, int] | None = None
    location: str | None = None
    live_digest: str | None = None
    drift: bool = False
    send: dict[str, Any] | None = None
    prevent_destroy: bool = False
    depends_on: list[str] = field(default_factory=list)
    external_refs: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return str(self.address)


@dataclass
class Plan:
    """A versioned plan for one environment. ``changes`` are in apply order."""

    environment: str
    project: str
    changes: list[Change]
    api_level: int = 0
    server_version: str = ""
    created_at: str = field(
        default_factory=lambda: datetime.now(UTC).replace(microsecond=0).isoformat()
    )
    unmanaged: list[str] = field(default_factory=list)
    format_version: int = FORMAT_VERSION

    @property
    def summary(self) -> dict[str, int]:
        counts = {
            a.value: 0
            for a in (Action.CREATE, Action.UPDATE, Action.REPLACE, Action.DELETE, Action.NOOP)
        }
        for change in self.changes:
            counts[change.action.value] += 1
        return counts

    @property
    def has_changes(self) -> bool:
        return any(c.action is not Action.NOOP for c in self.changes)

    def pending(self) -> list[Change]:
        return [c for c in self.changes if c.action is not Action.NOOP]


# ---------------------------------------------------------------- building


def _stream_loss(info: dict[str, Any] | None) -> dict[str, int] | None:
    if not info:
        return None
    state = info.get("state") or {}
    return {
        "messages": int(state.get("messages", 0)),
        "bytes": int(state.get("bytes", 0)),
        "consumers": int(state.get("consumer_count", 0)),
    }


def _consumer_loss(info: dict[str, Any] | None) -> dict[str, int] | None:
    if not info:
        return None
    return {
        "num_pending": int(info.get("num_pending", 0)),
        "num_ack_pending": int(info.get("num_ack_pending", 0)),
        "num_redelivered": int(info.get("num_redelivered", 0)),
    }


def _unmodeled(live_config: dict[str, Any], modeled: Iterable[str]) -> dict[str, Any]:
    """Live fields jsops does not model: sent back unchanged on update."""
    skip = {*modeled, "name", "durable_name", "pause_until", "pedantic"}
    return {k: v for k, v in live_config.items() if k not in skip}


def _sources_of(spec: StreamSpec) -> list[StreamSource]:
    return [source for _, source in spec.origins()]


def stream_origins(spec: StreamSpec) -> list[tuple[str, str | None]]:
    """(stream name, domain or external api) of every mirror/source origin."""
    return [(source.name, source.remote) for _, source in spec.origins()]


def _where(where: str) -> str:
    """``leaf`` or ``$JS.leaf.API`` -> ``domain leaf``; another API prefix as it is."""
    parts = where.split(".")
    if not where.startswith("$"):
        return f"domain {where}"
    if len(parts) == 3 and parts[0] == "$JS" and parts[2] == "API":
        return f"domain {parts[1]}"
    return f"api {where}"


def _order_streams(streams: list[Resource]) -> list[Resource]:
    """Origins before the streams that read them (same domain); stable otherwise."""
    by_name = {s.address.name: s for s in streams}
    ordered: list[Resource] = []
    state: dict[str, int] = {}

    def visit(res: Resource) -> None:
        name = res.address.name
        if state.get(name) == 2:
            return
        if state.get(name) == 1:  # a cycle: validation reports it; keep going
            return
        state[name] = 1
        assert isinstance(res.spec, StreamSpec)
        for origin, where in stream_origins(res.spec):
            if where is None and origin in by_name:
                visit(by_name[origin])
        state[name] = 2
        ordered.append(res)

    for res in streams:
        visit(res)
    return ordered


def _level_errors(
    res: Resource, kind: str, config: dict[str, Any], api_level: int
) -> list[Diagnostic]:
    out = []
    for path, level in fields_needing_level(kind, config, api_level):
        doc = res.document
        head = path.split(":")[0].split(".")
        loc = doc.locate(("spec", *head)) if doc else res.location
        out.append(
            Diagnostic(
                loc,
                f"{path} needs JetStream API level {level}, the server has level {api_level}",
                code="api_level",
            )
        )
    return out


def _matches_target(address: Address, targets: Sequence[str]) -> bool:
    for target in targets:
        if target == address.target:
            return True
        if address.kind == "Consumer" and target == f"Stream/{address.stream}":
            return True
    return False


def parse_targets(targets: Sequence[str]) -> list[str]:
    out = []
    for target in targets:
        kind, _, rest = target.partition("/")
        if (
            kind not in ("Stream", "Consumer", "Account")
            or not rest
            or (kind == "Consumer" and rest.count("/") != 1)
        ):
            raise UsageError(
                f'invalid target "{target}": use Stream/NAME, Consumer/STREAM/NAME or Account/NAME'
            )
        out.append(target)
    return out


def build_plan(
    desired: Sequence[Resource],
    live: LiveState,
    *,
    project: str,
    environment: str,
    prune: bool = False,
    targets: Sequence[str] = (),
    account: str | None = None,
) -> Plan:
    """Compare desired resources with the live state of one account (``account`` is
    None for the environment's own); raise ManifestError on plan errors."""
    errors: list[Diagnostic] = []
    changes: list[Change] = []
    streams = _order_streams([r for r in desired if r.address.kind == "Stream"])
    consumers = [r for r in desired if r.address.kind == "Consumer"]
    stream_changes: dict[str, Change] = {}
    declared_streams = {r.address.name for r in streams}
    declared_consumers = {(r.address.stream, r.address.name) for r in consumers}
    desired_canon: dict[str, dict[str, Any]] = {}

    for res in streams:
        name = res.address.name
        send = stream_api_config(res, project)
        _inherit_mirror_direct(send, res, desired_canon, live)
        errors += _level_errors(res, "Stream", send, live.api_level)
        errors += _replica_errors(res, send, live)
        canon = canonical_stream(send)
        desired_canon[name] = canon
        info = live.streams.get(name)
        change = Change(
            res.address,
            Action.NOOP,
            location=str(res.location),
            prevent_destroy=res.metadata.prevent_destroy,
        )
        for origin, where in stream_origins(res.spec):  # type: ignore[arg-type]
            if where is None and origin in declared_streams:
                change.depends_on.append(str(Address("Stream", origin, account=account)))
            elif where is None:
                change.external_refs.append(f"Stream {origin} (not declared here)")
            else:
                change.external_refs.append(f"Stream {origin} ({_where(where)})")
        for src in _sources_of(res.spec):  # type: ignore[arg-type]
            # a durable sourcing consumer (ADR-60) must exist before the stream reads it
            if src.consumer and (src.name, src.consumer.name) in declared_consumers:
                consumer = Address("Consumer", src.consumer.name, stream=src.name, account=account)
                change.depends_on.append(str(consumer))
        if info is None:
            change.action, change.reason = Action.CREATE, Reason.NEW
            change.diff = diff_config({}, _shown(send))
            stamp("Stream", send)
            change.send = send
        else:
            live_canon = canonical_stream(info["config"])
            _compare(change, info, live_canon, canon, send, live, project)
        stream_changes[name] = change
        changes.append(change)

    for res in consumers:
        stream_name = res.address.stream or ""
        send = consumer_api_config(res, project, desired_canon.get(stream_name))
        errors += _level_errors(res, "Consumer", send, live.api_level)
        canon = canonical_consumer(send, desired_canon.get(stream_name))
        info = live.consumers.get((stream_name, res.address.name))
        parent = stream_changes.get(stream_name)
        change = Change(
            res.address,
            Action.NOOP,
            location=str(res.location),
            prevent_destroy=res.metadata.prevent_destroy,
        )
        if parent is not None and parent.action in (Action.CREATE, Action.REPLACE):
            change.depends_on = [parent.key]
        if info is None or (parent is not None and parent.action is Action.REPLACE):
            if info is None:
                change.action, change.reason = Action.CREATE, Reason.NEW
                change.diff = diff_config({}, _shown(send))
            else:
                change.action, change.reason = Action.REPLACE, Reason.STREAM_REPLACED
                change.destructive = True
                change.loss = _consumer_loss(info)
                live_canon = canonical_consumer(info["config"], desired_canon.get(stream_name))
                change.live_digest = live_fingerprint("Consumer", info["config"])
                change.drift = drifted("Consumer", info["config"])
                change.diff = diff_config(live_canon, canon)
            stamp("Consumer", send)
            change.send = send
        else:
            live_canon = canonical_consumer(info["config"], desired_canon.get(stream_name))
            _compare(change, info, live_canon, canon, send, live, project)
            updating = parent is not None and parent.action is Action.UPDATE
            if change.action is Action.UPDATE and parent is not None and updating:
                if _tightens_consumer_limits(parent):
                    # The server refuses limits below a consumer's (10069): the
                    # consumers come down first, then the stream.
                    parent.depends_on.append(change.key)
                else:
                    change.depends_on = [parent.key]
        changes.append(change)

    if errors:
        raise ManifestError(errors)

    declared = {c.address for c in changes}
    deletes, unmanaged = _orphans(live, declared, project, prune, account)
    changes = changes + deletes
    if targets:
        changes = [c for c in changes if _matches_target(c.address, targets)]
        unmanaged = [u for u in unmanaged if any(_unmanaged_matches(u, t) for t in targets)]
    return Plan(
        environment, project, changes, live.api_level, live.server_version, unmanaged=unmanaged
    )


def _replica_errors(res: Resource, send: dict[str, Any], live: LiveState) -> list[Diagnostic]:
    """More replicas than the target cluster has servers is a plan error (when known)."""
    replicas = send.get("num_replicas") or 1
    size = live.cluster_size
    placement = send.get("placement") or {}
    elsewhere = (
        size != 1 and placement.get("cluster") and placement.get("cluster") != live.cluster_name
    )
    if replicas <= 1 or size is None or elsewhere or replicas <= size:
        return []
    where = "the server is not clustered" if size == 1 else f"the cluster has {size} servers"
    doc = res.document
    return [
        Diagnostic(
            doc.locate(("spec", "num_replicas")) if doc else res.location,
            f"num_replicas {replicas}: {where}",
            code="replicas",
        )
    ]


def _inherit_mirror_direct(
    send: dict[str, Any], res: Resource, desired: dict[str, dict[str, Any]], live: LiveState
) -> None:
    """A mirror of a stream in the same account gets the origin's allow_direct as its
    mirror_direct (the server copies it, and refuses a mismatch in pedantic mode)."""
    spec = res.spec
    assert isinstance(spec, StreamSpec)
    mirror = spec.mirror
    if mirror is None or mirror.domain or mirror.external or spec.mirror_direct is not None:
        return
    origin = desired.get(mirror.name)
    if origin is None and mirror.name in live.streams:
        origin = live.streams[mirror.name]["config"]
    if origin is not None and origin.get("allow_direct"):
        send["mirror_direct"] = True


_DEFAULTS = {"Stream": STREAM_DEFAULTS, "Consumer": CONSUMER_DEFAULTS}
_LOSS = {"Stream": _stream_loss, "Consumer": _consumer_loss}


def _compare(
    change: Change,
    info: dict[str, Any],
    live_canon: dict[str, Any],
    canon: dict[str, Any],
    send: dict[str, Any],
    live: LiveState,
    project: str,
) -> None:
    """Fill ``change`` for a resource that exists: noop, update (with the live fields
    jsops does not model sent back unchanged) or replace (per the mutability table)."""
    kind = change.address.kind
    live_config = info["config"]
    if live_canon == canon:
        return  # a noop needs no fingerprint: saved plans check only what they change
    change.live_digest = live_fingerprint(kind, live_config)
    change.drift = drifted(kind, live_config)
    change.diff = diff_config(live_canon, canon)
    reasons = replace_reasons(
        kind, live_canon, canon, api_level=live.api_level, version=live.server_version
    )
    if reasons:
        change.action, change.reason = Action.REPLACE, Reason.CANNOT_UPDATE
        change.replace_paths = [f for f, _ in reasons]
        change.replace_reasons = [r for _, r in reasons]
        change.destructive = True
        change.loss = _LOSS[kind](info)
        stamp(kind, send)
        change.send = send
        return
    change.action = Action.UPDATE
    only_owner = all(d.path.startswith("metadata") for d in change.diff)
    change.reason = (
        Reason.ADOPT if only_owner and owner_of(live_config) != project else Reason.CHANGED
    )
    change.send = {**_unmodeled(live_config, _DEFAULTS[kind]), **send}
    stamp(kind, change.send)


def _tightens_consumer_limits(change: Change) -> bool:
    """Whether a stream update sets or lowers a ``consumer_limits`` value."""
    for d in change.diff:
        if not d.path.startswith("consumer_limits"):
            continue
        before, after = d.before, d.after
        if isinstance(before, dict) or isinstance(after, dict):
            before_d, after_d = before or {}, after or {}
            pairs = [(before_d.get(k), after_d.get(k)) for k in after_d]
        else:
            pairs = [(before, after)]
        for old, new in pairs:
            if new and (not old or new < old):
                return True
    return False


def _unmanaged_matches(text: str, target: str) -> bool:
    kind, _, rest = text.partition(" ")
    return _matches_target(
        Address(kind, rest.rsplit("/", 1)[-1], rest.split("/", 1)[0] if "/" in rest else None),
        [target],
    )


def _shown(send: dict[str, Any]) -> dict[str, Any]:
    """What a create shows: the config as sent, without the name it is addressed by."""
    return {k: v for k, v in send.items() if k not in ("name", "durable_name")}


def _orphans(
    live: LiveState, declared: set[Address], project: str, prune: bool, account: str | None
) -> tuple[list[Change], list[str]]:
    """Owned live resources no manifest declares: deletes (with prune) or a note."""
    deletes: list[Change] = []
    unmanaged: list[str] = []
    deleted_streams: set[str] = set()
    for name in sorted(live.streams):
        info = live.streams[name]
        address = Address("Stream", name, account=account)
        if address in declared:
            continue
        if owner_of(info["config"]) != project:
            continue
        if not prune:
            unmanaged.append(str(address))
            continue
        deleted_streams.add(name)
        deletes.append(
            Change(
                address,
                Action.DELETE,
                reason=Reason.NOT_IN_MANIFESTS,
                destructive=True,
                loss=_stream_loss(info),
                live_digest=live_fingerprint("Stream", info["config"]),
                drift=drifted("Stream", info["config"]),
                prevent_destroy=protected(info["config"]),
            )
        )
    consumer_deletes: list[Change] = []
    for stream, name in sorted(live.consumers):
        info = live.consumers[(stream, name)]
        address = Address("Consumer", name, stream=stream, account=account)
        if address in declared or owner_of(info["config"]) != project:
            continue
        if not prune:
            unmanaged.append(str(address))
            continue
        change = Change(
            address,
            Action.DELETE,
            reason=Reason.STREAM_DELETED if stream in deleted_streams else Reason.NOT_IN_MANIFESTS,
            destructive=True,
            loss=_consumer_loss(info),
            live_digest=live_fingerprint("Consumer", info["config"]),
            drift=drifted("Consumer", info["config"]),
            prevent_destroy=protected(info["config"]),
        )
        consumer_deletes.append(change)
    # Deletes run in reverse dependency order: consumers, then their streams.
    for change in deletes:
        change.depends_on = [
            c.key for c in consumer_deletes if c.address.stream == change.address.name
        ]
    return consumer_deletes + deletes, unmanaged
