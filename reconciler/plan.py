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
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from reconciler import buckets
from reconciler.diagnostics import check_targets, dotted
from reconciler.diff import FieldDiff, diff_config
from reconciler.drift import drifted, stamp
from reconciler.errors import Diagnostic, LiveUnavailable, Location, ManifestError, UsageError
from reconciler.live import LiveState, ServerIdentity
from reconciler.models import Address, Kind, Resource, StreamSpec
from reconciler.models.stream import dest_problems
from reconciler.mutability import (
    consumer_limits_violations,
    fields_needing_level,
    refused_combinations,
    release_of,
    replace_reasons,
    unset_consumer_limit_is_zero,
    version_for_rules,
)
from reconciler.normalize import (
    CONSUMER_DEFAULTS,
    STREAM_DEFAULTS,
    canonical_consumer,
    canonical_stream,
    consumer_api_config,
    consumer_wire_config,
    fingerprint,
    keep_earlier_duplicate_window,
    live_fingerprint,
    owner_of,
    protected,
    stream_api_config,
    stream_wire_config,
)
from reconciler.subjects import REPUBLISH


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
    ADOPT = "adopt_owner_tag"  # no jsops.owner yet: the first apply adds this project's
    TAKEOVER = "owned_by_another_project"  # refused unless --allow-takeover
    NOT_IN_MANIFESTS = "not_in_manifests"
    STREAM_DELETED = "stream_deleted"


@dataclass(frozen=True, slots=True)
class Change:
    """One planned change to one resource (see the module docstring for before/after).

    Built once, never changed afterwards. ``owner`` is the live ``jsops.owner`` when it
    names another project (the change is a takeover, refused by default);
    ``prevent_destroy`` is true when the manifest or the live metadata protects it.
    ``loss`` is what a destructive change is estimated to lose (see "Loss estimates");
    an *update* that is destructive drops stored messages through the limits named in
    ``loss_paths`` (refused unless ``--allow-data-loss``).
    """

    address: Address
    action: Action
    diff: tuple[FieldDiff, ...] = ()
    reason: Reason | None = None
    replace_paths: tuple[str, ...] = ()
    replace_reasons: tuple[str, ...] = ()
    destructive: bool = False
    loss: dict[str, int] | None = None
    loss_paths: tuple[str, ...] = ()
    location: str | None = None
    live_digest: str | None = None
    drift: bool = False
    send: dict[str, Any] | None = None
    prevent_destroy: bool = False
    depends_on: tuple[str, ...] = ()
    external_refs: tuple[str, ...] = ()
    owner: str | None = None

    def __post_init__(self) -> None:
        for name in _SEQUENCES:  # lists given by a caller become tuples: never mutated
            value = getattr(self, name)
            if type(value) is not tuple:
                object.__setattr__(self, name, tuple(value))

    @property
    def key(self) -> str:
        return str(self.address)


_SEQUENCES = (
    "diff",
    "replace_paths",
    "replace_reasons",
    "loss_paths",
    "depends_on",
    "external_refs",
)


@dataclass(frozen=True)
class Plan:
    """A plan for one environment, built once. ``changes`` are in apply order.

    ``identity`` is the server or cluster the live state was read from; ``prune``,
    ``targets`` and ``declared`` (how many resources the manifests declare here) are
    what it was made with, so that a saved plan can be made again and compared.
    """

    environment: str
    project: str
    changes: tuple[Change, ...]
    api_level: int = 0
    server_version: str = ""
    created_at: str = field(
        default_factory=lambda: datetime.now(UTC).replace(microsecond=0).isoformat()
    )
    unmanaged: tuple[str, ...] = ()
    identity: ServerIdentity | None = None
    prune: bool = False
    targets: tuple[str, ...] = ()
    declared: int = 0
    # What the server listed but could not report (address, why): left out of
    # ``changes``; only a per-account plan carries it, assemble_plan refuses on it.
    unavailable: tuple[tuple[Address, str], ...] = ()

    def __post_init__(self) -> None:
        for name in ("changes", "unmanaged", "targets", "unavailable"):
            value = getattr(self, name)
            if type(value) is not tuple:
                object.__setattr__(self, name, tuple(value))

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


# ---------------------------------------------------------------- loss estimates
#
# Pure functions of the live state (StreamInfo/ConsumerInfo as read in bulk), so no
# request is made for them; the per-subject counts of a stream whose
# max_msgs_per_subject comes down are the one exception, read only for those streams
# (``subject_count_streams``). The numbers are estimates: messages are assumed evenly
# spread in time and size, sequences without gaps.


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


def _positive(config: dict[str, Any], key: str) -> int:
    """A limit as a positive int, 0 when unlimited (-1, 0 or absent)."""
    value = config.get(key)
    return value if isinstance(value, int) and value > 0 else 0


def parse_time(text: Any) -> datetime | None:
    """An RFC 3339 time from the server (nanoseconds allowed); None for the zero time."""
    if not isinstance(text, str) or text.startswith("0001-"):
        return None
    head, dot, rest = text.partition(".")
    if dot:  # keep microseconds: Python's parser takes at most six digits
        digits = len(rest) - len(rest.lstrip("0123456789"))
        rest = rest[:digits][:6] + rest[digits:]
        text = f"{head}.{rest}"
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def update_loss(
    info: dict[str, Any],
    new_config: dict[str, Any],
    *,
    now: datetime,
    subject_counts: dict[str, int] | None = None,
) -> tuple[dict[str, int], tuple[str, ...]] | None:
    """What a stream update drops of what the stream holds now: ``({"messages": n,
    "bytes": b}, limits)`` or None when it drops nothing.

    The server enforces lowered limits when the update lands: ``max_msgs`` and
    ``max_bytes`` remove the oldest messages under ``discard: old`` (``discard: new``
    keeps them, filestore ``enforceMsgLimit``), ``max_age`` expires what is older,
    ``max_msgs_per_subject`` trims every subject (counts from ``subject_counts`` when
    read, else the lower bound the subject count gives). Limits overlap (each takes the
    oldest first), so the estimate is the largest of them.
    """
    state = info.get("state") or {}
    msgs, size = int(state.get("messages") or 0), int(state.get("bytes") or 0)
    if msgs <= 0:
        return None
    per_msg = size / msgs
    found: list[tuple[int, str]] = []
    discard_old = new_config.get("discard", "old") != "new"
    max_msgs = _positive(new_config, "max_msgs")
    if discard_old and max_msgs and msgs > max_msgs:
        found.append((msgs - max_msgs, "max_msgs"))
    max_bytes = _positive(new_config, "max_bytes")
    if discard_old and max_bytes and size > max_bytes:
        found.append((min(msgs, -(-(size - max_bytes) // max(1, round(per_msg)))), "max_bytes"))
    max_age = _positive(new_config, "max_age")
    first, last = parse_time(state.get("first_ts")), parse_time(state.get("last_ts"))
    if max_age and first is not None:
        cutoff = now - timedelta(microseconds=max_age // 1000)
        if first < cutoff:
            if last is None or last <= cutoff or last <= first:
                found.append((msgs, "max_age"))
            else:
                share = (cutoff - first) / (last - first)
                found.append((max(1, min(msgs, round(msgs * share))), "max_age"))
    per_subject = _positive(new_config, "max_msgs_per_subject")
    if per_subject and msgs > per_subject:
        if subject_counts is not None:
            over = sum(max(0, n - per_subject) for n in subject_counts.values())
        else:
            over = max(0, msgs - per_subject * int(state.get("num_subjects") or msgs))
        if over:
            found.append((over, "max_msgs_per_subject"))
    if not found:
        return None
    lost = max(n for n, _ in found)
    return {"messages": lost, "bytes": min(size, round(lost * per_msg))}, tuple(
        path for _, path in found
    )


def lowers_per_subject_limit(res: Resource, info: dict[str, Any] | None) -> bool:
    """Whether a declared stream's ``max_msgs_per_subject`` may trim what it holds (its
    per-subject counts are then worth one request)."""
    spec = res.spec
    if info is None or not isinstance(spec, StreamSpec):
        return False
    new = spec.max_msgs_per_subject
    if not isinstance(new, int) or new <= 0:
        return False
    old = _positive(info.get("config") or {}, "max_msgs_per_subject")
    state = info.get("state") or {}
    return (not old or new < old) and int(state.get("messages") or 0) > new


def subject_count_streams(desired: Sequence[Resource], live: LiveState) -> list[str]:
    """The declared streams (buckets too: ``history`` is their per-subject limit) whose
    lowered per-subject limit needs per-subject counts."""
    streams, _ = buckets.lower_all(desired)
    return [
        r.address.name
        for r in streams
        if lowers_per_subject_limit(r, live.streams.get(r.address.name))
    ]


def restart_loss(
    info: dict[str, Any], stream_info: dict[str, Any] | None, new_config: dict[str, Any]
) -> dict[str, int]:
    """A consumer replaced in place of its stream: what it loses, plus what delivery
    restarting per the new ``deliver_policy`` does to the messages the old consumer
    already processed (acknowledged, or delivered when it does not ack).

    ``redelivered``: processed messages still in the stream that will be delivered
    again; ``skipped``: pending messages the new consumer will never deliver (policies
    that start later). Policies whose start cannot be told from the state
    (``by_start_time``, ``last_per_subject``) add neither.
    """
    loss = _consumer_loss(info) or {}
    state = (stream_info or {}).get("state") or {}
    stream_config = (stream_info or {}).get("config") or {}
    config = info.get("config") or {}
    msgs = int(state.get("messages") or 0)
    first = int(state.get("first_seq") or 0)
    mark = info.get("delivered" if config.get("ack_policy", "none") == "none" else "ack_floor")
    done_seq, done_count = (mark.stream_seq, mark.consumer_seq) if mark else (0, 0)
    pending = int(info.get("num_pending") or 0)
    processed = 0
    if first and done_seq >= first and stream_config.get("retention") != "workqueue":
        processed = min(done_seq - first + 1, done_count, msgs)
        if not (config.get("filter_subject") or config.get("filter_subjects")):
            processed = min(
                processed, max(0, msgs - pending - int(info.get("num_ack_pending") or 0))
            )
    policy = new_config.get("deliver_policy") or "all"
    if policy == "all":
        loss["redelivered"] = processed
    elif policy == "by_start_sequence":
        start = max(int(new_config.get("opt_start_seq") or 0), first)
        loss["redelivered"] = min(processed, max(0, done_seq - start + 1))
    elif policy == "new":
        loss["redelivered"], loss["skipped"] = 0, pending
    elif policy == "last":
        loss["redelivered"], loss["skipped"] = min(1, processed), max(0, pending - 1)
    return loss


def unavailable_addresses(live: LiveState, account: str | None) -> dict[Address, str]:
    """The streams and consumers the server listed but cannot report now (-> why)."""
    out = {Address(Kind.STREAM, n, account=account): why for n, why in live.unavailable.items()}
    for (stream, name), why in live.unavailable_consumers.items():
        out[Address(Kind.CONSUMER, name, stream=stream, account=account)] = why
    return out


# ---------------------------------------------------------------- building


def _unmodeled(live_config: dict[str, Any], modeled: Iterable[str]) -> dict[str, Any]:
    """Live fields jsops does not model: sent back unchanged on update."""
    skip = {*modeled, "name", "durable_name", "pause_until", "pedantic"}
    return {k: v for k, v in live_config.items() if k not in skip}


def _refused_by_release(
    res: Resource, problems: list[tuple[tuple[str | int, ...], str]], version: str
) -> list[Diagnostic]:
    """Transform destinations the target release refuses (validation passed them: some
    other supported release takes them), located as validation locates its own."""
    doc = res.document
    out = []
    for path, message in problems:
        where = f"{dotted(('spec', *path[:-1]))}: " if len(path) > 1 else ""
        out.append(
            Diagnostic(
                doc.locate(("spec", *path)) if doc else res.location,
                f"{where}{message} (nats-server {version} refuses it)",
                code="refused",
            )
        )
    return out


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
        for _, origin in res.spec.origins():
            if origin.remote is None and origin.name in by_name:
                visit(by_name[origin.name])
        state[name] = 2
        ordered.append(res)

    for res in streams:
        visit(res)
    return ordered


def level_errors(
    res: Resource, kind: Kind, config: dict[str, Any], api_level: int, version: str = ""
) -> list[Diagnostic]:
    """A located error for every field of ``config`` newer than the target's API level,
    naming the release that introduced it (``jsops promote`` checks destinations so too)."""
    out = []
    for path, level in fields_needing_level(kind, config, api_level):
        server = f"nats-server {version}" if version else "the server"
        doc = res.document
        head = path.split(":")[0].split(".")
        loc = doc.locate(("spec", *head)) if doc else res.location
        out.append(
            Diagnostic(
                loc,
                f"{path} needs nats-server {release_of(level)} or newer (JetStream API "
                f"level {level}); {server} has API level {api_level}",
                code="api_level",
            )
        )
    return out


def _matches_target(address: Address, targets: Sequence[str]) -> bool:
    for target in targets:
        if target == address.target:
            return True
        if address.kind == Kind.CONSUMER and target == f"Stream/{address.stream}":
            return True
    return False


def parse_targets(targets: Sequence[str]) -> list[str]:
    out = []
    for target in targets:
        kind, _, rest = target.partition("/")
        if (
            kind not in (Kind.STREAM, Kind.CONSUMER, Kind.ACCOUNT, *buckets.BUCKETS)
            or not rest
            or (kind == Kind.CONSUMER and rest.count("/") != 1)
        ):
            raise UsageError(
                f'invalid target "{target}": use Stream/NAME, Consumer/STREAM/NAME, '
                "KeyValue/BUCKET, ObjectStore/BUCKET or Account/NAME"
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
    account: str | None = None,
    requires: str | None = None,
    now: datetime | None = None,
) -> Plan:
    """Compare desired resources with the live state of one account (``account`` is
    None for the environment's own); raise ManifestError on plan errors.

    ``requires`` is the key of a change every change here waits for (the account's
    own change, in operator mode). Target filtering is :func:`assemble_plan`'s.
    Resources the server cannot report now (``live.unavailable``) are left out, never
    planned as creates; :func:`assemble_plan` refuses a plan they matter to. ``now``
    is the time loss estimates measure ages from.
    """
    planner = Planner(
        desired,
        live,
        project=project,
        environment=environment,
        prune=prune,
        account=account,
        requires=requires,
        now=now,
    )
    return planner.finish()


class Planner:
    """:func:`build_plan` in steps, so a plan can compare consumers as they are read.

    Made once the account's streams are read (``live.streams``, ``live.unavailable``,
    ``live.subject_counts``): it plans every declared stream at once. Then
    :meth:`take` plans the declared consumers of one stream against the consumer infos
    just read for it and hands back the others (what ``live.consumers`` keeps, for
    :func:`_orphans`): the plan of 10,000 streams keeps no declared consumer's info
    once it is compared. :meth:`finish` plans the consumers no ``take`` had, against
    ``live.consumers``, and returns the Plan. The result is the same in any order.
    """

    def __init__(
        self,
        desired: Sequence[Resource],
        live: LiveState,
        *,
        project: str,
        environment: str,
        prune: bool = False,
        account: str | None = None,
        requires: str | None = None,
        now: datetime | None = None,
    ) -> None:
        self.declared = len(desired)  # (the resources are not kept: see plan_async)
        self.live = live
        # The version the version-gated rules are judged by ("" when it cannot be the
        # JetStream server's: mutability.version_for_rules).
        self.rules_version = version_for_rules(live.server_version, live.api_level)
        self.project = project
        self.environment = environment
        self.prune = prune
        self.account = account
        self.now = now or datetime.now(UTC)
        self.errors: list[Diagnostic] = []
        self.after: tuple[str, ...] = (requires,) if requires else ()
        gone = set(live.unavailable)
        # A bucket is planned as the stream it is, then shown in bucket terms.
        lowered, self.bucket_of = buckets.lower_all(desired)
        streams = _order_streams([r for r in lowered if r.address.name not in gone])
        self.bucket_keys = buckets.bucket_keys(self.bucket_of)
        # Declared consumers by stream, with their place in ``desired`` (the plan's order).
        self.pending: dict[str, list[tuple[int, Resource]]] = {}
        for index, res in enumerate(desired):
            if res.address.kind == Kind.CONSUMER and res.address.stream not in gone:
                self.pending.setdefault(res.address.stream or "", []).append((index, res))
        # Stream changes stay drafts until their consumers are planned: a consumer whose
        # limits come down first adds itself to its stream's depends_on.
        self.drafts: dict[str, dict[str, Any]] = {}
        self.consumer_changes: dict[int, Change] = {}
        self.declared_streams = {r.address.name for r in streams}
        self.declared_consumers = {
            (stream, res.address.name) for stream, group in self.pending.items() for _, res in group
        }
        self.desired_canon: dict[str, dict[str, Any]] = {}
        # stream -> (where, live limits, desired limits) of an update of consumer_limits,
        # checked against the stream's consumers once they are read (_check_limits)
        self.limit_checks: dict[str, tuple[Location, Any, Any]] = {}
        # the configs of consumers updated before their stream (limits coming down)
        self.updated_first: dict[tuple[str, str], dict[str, Any]] = {}
        self.unavailable: set[str] = set()  # keys of declared consumers not planned
        # path -> shown value -> its FieldDiff: what creates show alike is one object
        self.create_diffs: dict[str, dict[Any, FieldDiff]] = {}
        for res in streams:
            self._plan_stream(res)

    def _plan_stream(self, res: Resource) -> None:
        live, account, project = self.live, self.account, self.project
        name = res.address.name
        spec = res.spec
        assert isinstance(spec, StreamSpec)
        manifest = stream_api_config(res, project)
        bucket = self.bucket_of.get(res.address)
        contradiction = _inherit_mirror_direct(manifest, res, self.desired_canon, live)
        if contradiction is not None:
            self.errors.append(contradiction)
        if bucket is None:
            self.errors += level_errors(
                res, Kind.STREAM, manifest, live.api_level, self.rules_version
            )
            doc = res.document
            self.errors += [
                Diagnostic(
                    doc.locate(("spec", field)) if doc else res.location, reason, code="refused"
                )
                for field, reason in refused_combinations(manifest, self.rules_version)
            ]
            if self.rules_version:
                found = spec.transform_problems(release=self.rules_version)
                self.errors += _refused_by_release(res, found, self.rules_version)
        else:
            buckets.keep_live_choices(manifest, live.streams.get(name))
            kind = bucket.address.kind
            config = buckets.spec_config(bucket)
            self.errors += level_errors(bucket, kind, config, live.api_level, self.rules_version)
            republish = getattr(bucket.spec, "republish", None)
            if self.rules_version and republish is not None:
                found = dest_problems(republish.src, republish.dest, REPUBLISH, self.rules_version)
                found = [(("republish", *p), m) for p, m in found]
                self.errors += _refused_by_release(bucket, found, self.rules_version)
        self.errors += _replica_errors(bucket or res, manifest, live)
        canon = canonical_stream(manifest, live.api_level)
        self.desired_canon[name] = canon
        info = live.streams.get(name)
        live_canon = canonical_stream(info["config"], live.api_level) if info else None
        if live_canon is not None and not manifest.get("duplicate_window"):
            keep_earlier_duplicate_window(canon, live_canon)
        # the complete config the target knows: nothing left to its defaults (a noop
        # sends nothing, so its wire config is not built, unless a bucket shows it)
        send: dict[str, Any] = {}
        if live_canon != canon or bucket is not None:
            send = stream_wire_config(name, canon, live.api_level)
        depends: list[str] = list(self.after)
        refs: list[str] = []
        origins = [source for _, source in spec.origins()]
        for src in origins:
            if src.remote is None and src.name in self.declared_streams:
                depends.append(str(Address(Kind.STREAM, src.name, account=account)))
            elif src.remote is None:
                refs.append(f"Stream {src.name} (not declared here)")
            else:
                refs.append(f"Stream {src.name} ({_where(src.remote)})")
        for src in origins:
            # a durable sourcing consumer (ADR-60) must exist before the stream reads it
            if src.consumer and (src.name, src.consumer.name) in self.declared_consumers:
                consumer = Address(
                    Kind.CONSUMER, src.consumer.name, stream=src.name, account=account
                )
                depends.append(str(consumer))
        draft: dict[str, Any] = {
            "address": res.address,
            "location": str(res.location),
            "prevent_destroy": res.metadata.prevent_destroy,
            "external_refs": tuple(refs),
        }
        if info is None:
            shown = self._create_diff(manifest)
            stamp(Kind.STREAM, send)
            draft.update(action=Action.CREATE, reason=Reason.NEW, diff=shown, send=send)
        else:
            assert live_canon is not None
            compared = _compare(Kind.STREAM, info, live_canon, canon, send, live, project)
            if compared["action"] is Action.UPDATE:
                lost = update_loss(
                    info, send, now=self.now, subject_counts=live.subject_counts.get(name)
                )
                if lost is not None:
                    compared.update(destructive=True, loss=lost[0], loss_paths=lost[1])
            draft.update(compared)
            if bucket is None and any(
                d.path.startswith("consumer_limits") for d in compared.get("diff", ())
            ):
                doc = res.document
                where = doc.locate(("spec", "consumer_limits")) if doc else res.location
                limits = (live_canon.get("consumer_limits"), canon.get("consumer_limits"))
                self.limit_checks[name] = (where, *limits)
        if canon.get("sealed") and draft["action"] in (Action.CREATE, Action.REPLACE):
            self.errors.append(_sealed_error(res, draft["action"]))
        draft["depends_on"] = [self.bucket_keys.get(d, d) for d in depends]
        if bucket is not None:
            buckets.to_bucket_terms(draft, bucket, send, live_canon, canon)
        self.drafts[name] = draft

    def _create_diff(self, manifest: dict[str, Any]) -> tuple[FieldDiff, ...]:
        """What a create shows. A diff is never changed once made, so the creates that
        show the same value of a field (``storage: memory``, the owner's metadata) share
        one FieldDiff: 14 MB less at 40,000 creates."""
        # diff_config({}, shown) is one FieldDiff per field that is set, at the top level
        # (nothing before it to walk into): made here directly, and only when new.
        diffs: list[FieldDiff] = []
        for path, value in manifest.items():
            if value is None or path in _NOT_SHOWN:
                continue
            alike = self.create_diffs.setdefault(path, {})
            key = _value_key(value)
            made = alike.get(key)
            if made is None:
                made = alike[key] = FieldDiff(path, None, value)
            diffs.append(made)
        return tuple(diffs)

    def take(self, stream: str, infos: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Plan the declared consumers of ``stream`` against ``infos`` (every consumer
        the server listed for it); the infos of the consumers not declared."""
        declared = self.pending.pop(stream, None)
        if not declared:
            if stream in self.limit_checks:
                self._check_limits(stream, infos)
            return infos
        by_name = {str(info.get("name")): info for info in infos}
        for index, res in declared:
            self._plan_consumer(index, res, by_name.get(res.address.name))
        if stream in self.limit_checks:
            self._check_limits(stream, infos)
        for _, res in declared:
            by_name.pop(res.address.name, None)
        return list(by_name.values())

    def _check_limits(self, stream: str, infos: Iterable[dict[str, Any]]) -> None:
        """A located error when the release refuses the stream's update of
        consumer_limits because of its consumers (``consumer_limits_violations``), each
        as it will be when the update is sent."""
        where, before, after = self.limit_checks.pop(stream)
        configs = []
        for info in infos:
            name = str(info.get("name"))
            first = self.updated_first.get((stream, name))
            configs.append((name, first if first is not None else info.get("config") or {}))
        version = self.rules_version
        over = consumer_limits_violations(before, after, configs, version)
        if not over:
            return
        if unset_consumer_limit_is_zero(version):
            message = (
                f"consumer_limits: nats-server {version} refuses this change while consumers "
                f"exceed it, an unset limit counting as 0 (until 2.12.12 and 2.14.3): "
                f"{', '.join(over)}; set both limits at or above theirs, or delete those "
                "consumers first"
            )
        else:
            release = f"nats-server {version}" if version else "the server"
            message = (
                f"consumer_limits: {release} refuses limits below its consumers': "
                f"{', '.join(over)}; lower theirs in their manifests, or delete them first"
            )
        self.errors.append(Diagnostic(where, message, code="refused"))

    def _plan_consumer(self, index: int, res: Resource, info: dict[str, Any] | None) -> None:
        live, project = self.live, self.project
        stream_name = res.address.stream or ""
        if (stream_name, res.address.name) in live.unavailable_consumers:
            self.unavailable.add(str(res.address))  # the server cannot report it now:
            return  # never planned as a create, and nothing waits for it
        stream_canon = self.desired_canon.get(stream_name)
        manifest = consumer_api_config(res, project, stream_canon)
        self.errors += level_errors(
            res, Kind.CONSUMER, manifest, live.api_level, self.rules_version
        )
        stream_cfg = stream_canon or ((live.streams.get(stream_name) or {}).get("config") or {})
        wanted = {
            "num_replicas": manifest.get("num_replicas"),
            "placement": stream_cfg.get("placement"),
        }
        self.errors += _replica_errors(res, wanted, live)
        replicas = manifest.get("num_replicas") or stream_cfg.get("num_replicas") or 1
        ack_limit = live.ack_pending_limit(replicas)
        self.errors += _ack_pending_errors(res, manifest, ack_limit)
        canon = canonical_consumer(manifest, stream_canon, ack_limit)
        live_canon = None
        if info is not None:
            live_canon = canonical_consumer(info["config"], stream_canon, ack_limit)
        parent = self.drafts.get(stream_name)
        parent_action = parent["action"] if parent is not None else None
        parent_key = str(parent["address"]) if parent is not None else ""
        send = {}
        if live_canon != canon or parent_action is Action.REPLACE:  # a noop sends nothing
            send = consumer_wire_config(
                res.address.name, canon, live.api_level, manifest.get("pause_until")
            )
        fields: dict[str, Any]
        depends = list(self.after)
        if parent_action in (Action.CREATE, Action.REPLACE):
            depends.append(parent_key)
        if info is None:
            shown = self._create_diff(manifest)
            stamp(Kind.CONSUMER, send)
            fields = {"action": Action.CREATE, "reason": Reason.NEW, "diff": shown, "send": send}
        elif parent_action is Action.REPLACE:
            assert live_canon is not None
            stamp(Kind.CONSUMER, send)
            fields = {
                "action": Action.REPLACE,
                "reason": Reason.STREAM_REPLACED,
                "destructive": True,
                "loss": _consumer_loss(info),
                "live_digest": live_fingerprint(Kind.CONSUMER, info["config"]),
                "drift": drifted(Kind.CONSUMER, info["config"]),
                "diff": tuple(diff_config(live_canon, canon)),
                "send": send,
                **_live_facts(info["config"], project),
            }
        else:
            assert live_canon is not None
            fields = _compare(Kind.CONSUMER, info, live_canon, canon, send, live, project)
            if fields["action"] is Action.REPLACE:  # delivery restarts from scratch
                fields["loss"] = restart_loss(info, live.streams.get(stream_name), send)
            if fields["action"] is Action.UPDATE and parent_action is Action.UPDATE:
                assert parent is not None
                if _tightens_consumer_limits(parent["diff"]):
                    # The server refuses limits below a consumer's (10069): the
                    # consumers come down first, then the stream.
                    parent["depends_on"].append(str(res.address))
                    self.updated_first[(stream_name, res.address.name)] = send
                else:
                    depends.append(parent_key)
        protect = fields.pop("live_protected", False) or res.metadata.prevent_destroy
        self.consumer_changes[index] = Change(
            res.address,
            location=str(res.location),
            prevent_destroy=protect,
            depends_on=tuple(depends),
            **fields,
        )

    def finish(self) -> Plan:
        """The plan (ManifestError if anything could not be planned)."""
        live = self.live
        for stream in list(self.pending):
            for index, res in self.pending.pop(stream):
                self._plan_consumer(index, res, live.consumers.get((stream, res.address.name)))
        if self.limit_checks:  # streams no take() saw (build_plan): every info is kept
            of: dict[str, list[dict[str, Any]]] = {}
            for (stream, _), info in live.consumers.items():
                of.setdefault(stream, []).append(info)
            for stream in list(self.limit_checks):
                self._check_limits(stream, of.get(stream, []))
        if self.errors:
            raise ManifestError(self.errors)
        for draft in self.drafts.values():  # a sourcing consumer left out (unavailable)
            draft["depends_on"] = [d for d in draft["depends_on"] if d not in self.unavailable]
        consumers = [self.consumer_changes[i] for i in sorted(self.consumer_changes)]
        changes = [_freeze(d) for d in self.drafts.values()] + consumers
        declared = {c.address for c in changes}
        deletes, unmanaged = _orphans(
            live, declared, self.project, self.prune, self.account, self.after
        )
        return Plan(
            self.environment,
            self.project,
            tuple(changes + deletes),
            live.api_level,
            live.server_version,
            unmanaged=tuple(unmanaged),
            prune=self.prune,
            declared=self.declared,
            unavailable=tuple(unavailable_addresses(live, self.account).items()),
        )


def _freeze(draft: dict[str, Any]) -> Change:
    """A stream's draft as its Change (manifest or live metadata protects it)."""
    protect = draft.pop("prevent_destroy") or draft.pop("live_protected", False)
    draft.pop("live_protected", None)
    return Change(prevent_destroy=protect, **{**draft, "depends_on": tuple(draft["depends_on"])})


def _live_facts(config: dict[str, Any], project: str) -> dict[str, Any]:
    """What the live metadata says about a resource jsops is about to write: its owner,
    when another project's, and whether it is protected."""
    owner = owner_of(config)
    facts: dict[str, Any] = {"live_protected": protected(config)}
    if owner is not None and owner != project:
        facts["owner"] = owner
    return facts


def account_change(
    res: Resource,
    action: Action,
    diff: Sequence[FieldDiff],
    send: dict[str, Any],
    live_canonical: dict[str, Any] | None,
) -> Change:
    """The change of one Account manifest (from ``accounts.reconcile``'s comparison)."""
    reason = {Action.CREATE: Reason.NEW, Action.UPDATE: Reason.CHANGED}.get(action)
    return Change(
        res.address,
        action,
        diff=tuple(diff),
        send=send,
        reason=reason,
        location=str(res.location),
        prevent_destroy=res.metadata.prevent_destroy,
        live_digest=fingerprint(live_canonical),
    )


def assemble_plan(
    environment: str,
    project: str,
    accounts: Sequence[Change],
    parts: Sequence[tuple[Plan, LiveState]],
    *,
    identity: ServerIdentity | None,
    prune: bool = False,
    targets: Sequence[str] = (),
    declared: int = 0,
) -> Plan:
    """One plan from the account changes and each account's plan (in that order),
    filtered to ``targets``; a target that matches nothing declared or live is an error."""
    changes: list[Change] = list(accounts)
    unmanaged: list[str] = []
    unavailable: list[tuple[Address, str]] = []
    api_level, version = 0, ""
    for sub, live in parts:
        changes += sub.changes
        unmanaged += sub.unmanaged
        unavailable += sub.unavailable
        if live.server_version:
            api_level, version = live.api_level, live.server_version
    _check_unavailable(unavailable, targets)
    if targets:
        _check_targets(targets, changes, [live for _, live in parts])
        changes = [c for c in changes if _matches_target(c.address, targets)]
        unmanaged = [u for u in unmanaged if any(_unmanaged_matches(u, t) for t in targets)]
    return Plan(
        environment,
        project,
        tuple(changes),
        api_level,
        version,
        unmanaged=tuple(unmanaged),
        identity=identity,
        prune=prune,
        targets=tuple(targets),
        declared=declared,
    )


UNAVAILABLE_SHOWN = 20  # names an unavailable-resources error lists before "and N more"


def _check_unavailable(unavailable: Sequence[tuple[Address, str]], targets: Sequence[str]) -> None:
    """Refuse a plan that resources the server cannot report now matter to: all of
    them without ``--target`` (the plan would be incomplete: an owned stream could not
    be compared, pruned or told apart from a new one), else the targeted ones."""
    relevant = [
        (address, why)
        for address, why in unavailable
        if not targets or _matches_target(address, targets)
    ]
    if not relevant:
        return
    names = [str(a) for a, _ in relevant[:UNAVAILABLE_SHOWN]]
    more = len(relevant) - len(names)
    whys = sorted({why for _, why in relevant})
    raise LiveUnavailable(
        f"the server lists {len(relevant)} resource(s) it cannot report now "
        f"({'; '.join(whys[:3])}): {', '.join(names)}"
        + (f" and {more} more" if more else "")
        + "; nothing is planned for them (plan healthy resources with --target)"
    )


def _check_targets(
    targets: Sequence[str], changes: Sequence[Change], lives: Sequence[LiveState]
) -> None:
    """Every ``--target`` names something declared or live, else a did-you-mean."""
    known = {c.address.target for c in changes}
    for live in lives:
        known.update(f"Stream/{name}" for name in live.unavailable)
        known.update(
            buckets.live_address(name, info["config"]).target for name, info in live.streams.items()
        )
        known.update(f"Consumer/{stream}/{name}" for stream, name in live.consumer_keys())
    check_targets(targets, known, "no resource by that name is declared or live")


def _sealed_error(res: Resource, action: Action) -> Diagnostic:
    """Every release refuses to create a stream sealed (nats-server ``jsStreamCreateRequest``:
    sealing is an update of a stream that exists), so a create, or the create half of a
    replace (which would first delete the stream), with ``sealed: true`` cannot be made."""
    doc = res.document
    if action is Action.CREATE:
        what = "a new stream cannot be created sealed"
        how = "create it with sealed: false (or unset), then seal it in a later apply"
    else:
        what = "this change replaces the stream, whose new copy cannot be created sealed"
        how = "the replace would delete it and then fail: make the change with sealed: false"
    return Diagnostic(
        doc.locate(("spec", "sealed")) if doc else res.location,
        f"sealed: true: {what} (the server refuses it); {how}",
        code="sealed",
    )


def _ack_pending_errors(res: Resource, config: dict[str, Any], limit: int) -> list[Diagnostic]:
    """A ``max_ack_pending`` over the account's is a plan error: the server refuses the
    consumer (10121) whatever else the apply does."""
    wanted = config.get("max_ack_pending") or 0
    if not 0 < limit < wanted:
        return []
    doc = res.document
    return [
        Diagnostic(
            doc.locate(("spec", "max_ack_pending")) if doc else res.location,
            f"max_ack_pending {wanted} is over the account's max_ack_pending of {limit}",
            code="account_limit",
        )
    ]


def _replica_errors(res: Resource, send: dict[str, Any], live: LiveState) -> list[Diagnostic]:
    """More replicas than the target cluster has servers is a plan error (when known).

    The size is the servers the connected one advertises, which leaves out servers that
    are down: a stream that already has at least these replicas is not judged by it."""
    replicas = send.get("num_replicas") or 1
    existing = (live.streams.get(res.address.name) or {}).get("config") or {}
    if int(existing.get("num_replicas") or 1) >= replicas:
        return []
    size = live.cluster_size
    placement = send.get("placement") or {}
    elsewhere = (
        size != 1 and placement.get("cluster") and placement.get("cluster") != live.cluster_name
    )
    if replicas <= 1 or size is None or elsewhere or replicas <= size:
        return []
    where = "the server is not clustered" if size == 1 else f"the cluster has {size} servers"
    doc = res.document
    field = "replicas" if res.address.kind in buckets.BUCKETS else "num_replicas"
    return [
        Diagnostic(
            doc.locate(("spec", field)) if doc else res.location,
            f"{field} {replicas}: {where}",
            code="replicas",
        )
    ]


def _inherit_mirror_direct(
    send: dict[str, Any], res: Resource, desired: dict[str, dict[str, Any]], live: LiveState
) -> Diagnostic | None:
    """A mirror of a stream in the same account gets the origin's allow_direct as its
    mirror_direct: the server copies it (2.10 over what was sent; from 2.11, pedantic
    mode refuses a mismatch), so a manifest's mirror_direct that contradicts the origin
    (declared, else live) is a located error: it could only fail or drift forever."""
    spec = res.spec
    assert isinstance(spec, StreamSpec)
    mirror = spec.mirror
    if mirror is None or mirror.domain or mirror.external:
        return None
    origin = desired.get(mirror.name)
    if origin is None and mirror.name in live.streams:
        origin = live.streams[mirror.name]["config"]
    if origin is None:
        return None
    direct = bool(origin.get("allow_direct"))
    if spec.mirror_direct is None:
        if direct:
            send["mirror_direct"] = True
        return None
    if spec.mirror_direct == direct:
        return None
    doc = res.document
    return Diagnostic(
        doc.locate(("spec", "mirror_direct")) if doc else res.location,
        f"mirror_direct: {str(spec.mirror_direct).lower()} contradicts allow_direct: "
        f"{str(direct).lower()} of the origin {mirror.name}: the server gives a mirror its "
        "origin's (nats-server 2.10 overrides what is sent, 2.11+ refuses it); leave "
        "mirror_direct unset",
        code="refused",
    )


_DEFAULTS = {Kind.STREAM: STREAM_DEFAULTS, Kind.CONSUMER: CONSUMER_DEFAULTS}
_LOSS = {Kind.STREAM: _stream_loss, Kind.CONSUMER: _consumer_loss}


def _compare(
    kind: Kind,
    info: dict[str, Any],
    live_canon: dict[str, Any],
    canon: dict[str, Any],
    send: dict[str, Any],
    live: LiveState,
    project: str,
) -> dict[str, Any]:
    """The change fields for a resource that exists: noop, update (with the live fields
    jsops does not model sent back unchanged) or replace (per the mutability table)."""
    live_config = info["config"]
    if live_canon == canon:
        return {"action": Action.NOOP}  # a noop needs no fingerprint
    fields: dict[str, Any] = {
        "live_digest": live_fingerprint(kind, live_config),
        "drift": drifted(kind, live_config),
        "diff": tuple(diff_config(live_canon, canon)),
        **_live_facts(live_config, project),
    }
    version = version_for_rules(live.server_version, live.api_level)
    reasons = replace_reasons(kind, live_canon, canon, api_level=live.api_level, version=version)
    if reasons:
        stamp(kind, send)
        return {
            **fields,
            "action": Action.REPLACE,
            "reason": Reason.TAKEOVER if "owner" in fields else Reason.CANNOT_UPDATE,
            "replace_paths": tuple(f for f, _ in reasons),
            "replace_reasons": tuple(r for _, r in reasons),
            "destructive": True,
            "loss": _LOSS[kind](info),
            "send": send,
        }
    owner = owner_of(live_config)
    reason = Reason.CHANGED
    if "owner" in fields:
        reason = Reason.TAKEOVER
    elif owner is None:
        reason = Reason.ADOPT
    update = {**_unmodeled(live_config, _DEFAULTS[kind]), **send}
    if kind is Kind.STREAM and live_config.get("mirror") and update.get("mirror"):
        # An update never changes a mirror (that is a replace), and the server compares
        # the one sent with its own by reflect.DeepEqual: the same instant written with
        # another offset (opt_start_time "+01:00" as jsops's "Z") is refused (10055).
        update["mirror"] = live_config["mirror"]
    stamp(kind, update)
    return {**fields, "action": Action.UPDATE, "reason": reason, "send": update}


def _tightens_consumer_limits(diff: Sequence[FieldDiff]) -> bool:
    """Whether a stream update sets or lowers a ``consumer_limits`` value."""
    for d in diff:
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
        Address(
            Kind(kind), rest.rsplit("/", 1)[-1], rest.split("/", 1)[0] if "/" in rest else None
        ),
        [target],
    )


def _value_key(value: Any) -> Any:
    """A hashable key equal only for the same JSON value (True and 1 are equal in
    Python, not in JSON, so each scalar goes with its type)."""
    kind = type(value)
    if kind is str:
        return value
    if kind is dict:
        return (dict, *((k, _value_key(v)) for k, v in value.items()))
    if kind is list:
        return (list, *map(_value_key, value))
    return (kind, value)


_NOT_SHOWN = ("name", "durable_name")  # what a create does not show: it is addressed by them


def _orphans(
    live: LiveState,
    declared: set[Address],
    project: str,
    prune: bool,
    account: str | None,
    after: tuple[str, ...] = (),
) -> tuple[list[Change], list[str]]:
    """Owned live resources no manifest declares: deletes (with prune) or a note."""
    unmanaged: list[str] = []
    deleted_streams: dict[str, list[str]] = {}
    stream_deletes: list[tuple[Address, dict[str, Any]]] = []
    for name in sorted(live.streams):
        info = live.streams[name]
        address = buckets.live_address(name, info["config"], account)
        if (
            address in declared
            or Address(Kind.STREAM, name, account=account) in declared
            or owner_of(info["config"]) != project
        ):
            continue
        if not prune:
            unmanaged.append(str(address))
            continue
        deleted_streams[name] = []
        stream_deletes.append((address, info))
    consumer_deletes: list[Change] = []
    for stream, name in sorted(live.consumers):
        info = live.consumers[(stream, name)]
        address = Address(Kind.CONSUMER, name, stream=stream, account=account)
        if address in declared or owner_of(info["config"]) != project:
            continue
        if not prune:
            unmanaged.append(str(address))
            continue
        if stream in deleted_streams:
            deleted_streams[stream].append(str(address))
        consumer_deletes.append(
            Change(
                address,
                Action.DELETE,
                reason=Reason.STREAM_DELETED
                if stream in deleted_streams
                else Reason.NOT_IN_MANIFESTS,
                destructive=True,
                loss=_consumer_loss(info),
                live_digest=live_fingerprint(Kind.CONSUMER, info["config"]),
                drift=drifted(Kind.CONSUMER, info["config"]),
                prevent_destroy=protected(info["config"]),
                depends_on=after,
            )
        )
    # Deletes run in reverse dependency order: consumers, then their streams.
    deletes = [
        Change(
            address,
            Action.DELETE,
            reason=Reason.NOT_IN_MANIFESTS,
            destructive=True,
            loss=_stream_loss(info),
            live_digest=live_fingerprint(Kind.STREAM, info["config"]),
            drift=drifted(Kind.STREAM, info["config"]),
            prevent_destroy=protected(info["config"]),
            depends_on=(*after, *deleted_streams[info["config"]["name"]]),
        )
        for address, info in stream_deletes
    ]
    return consumer_deletes + deletes, unmanaged
