"""The refusal gate: every reason apply will not start, checked once, before any write.

``refusals(plan, project, options, saved=...)`` is run once per apply by ``api.apply``
on the plan it is about to carry out, which is always a plan made just now from the
manifests and a fresh bulk read of the live state (a saved plan is only compared with
it, never executed). So ownership and protection are judged from the live metadata
read right before the writes, whatever a plan file says. ``plan`` shows the refusals
that no destructive-action flag lifts (``Refusal.shown``) the same way.

The wording of each refusal is in ``render.refusal_text``; this module only decides.

=====================  ==========================================  =====================
code                   when                                        overridden by
=====================  ==========================================  =====================
prevent_destroy        replace/delete of a protected resource      nothing
                       (manifest ``prevent_destroy`` or the live
                       ``jsops.prevent_destroy`` tag)
no_destroy_here        replace/delete where the environment says   nothing
                       ``allow_delete: false``
takeover               any write to a resource whose live          ``--allow-takeover``
                       ``jsops.owner`` is another project
replace                a replace (the server cannot update it)     ``--allow-replace``
data_loss              an update that lowers max_msgs, max_bytes,  ``--allow-data-loss``
                       max_msgs_per_subject or max_age below what
                       the stream holds now (messages dropped)
delete                 a delete (owned, declared nowhere)          ``--prune``
empty_prune            a pruning plan where the manifests declare  ``--allow-empty-prune``
                       nothing for the environment
saved_identity         a saved plan made against another server,   nothing (plan again)
                       cluster, domain or account
saved_stale            a saved plan whose resource changed live    nothing (plan again)
saved_differs          a saved plan that is not what jsops plans   nothing (plan again)
                       now from the manifests and live state
=====================  ==========================================  =====================
"""

from __future__ import annotations

import hashlib
import json
import logging
import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from reconciler.environments import Project, ProjectConfig
from reconciler.models import Address
from reconciler.plan import Action, Change, Plan

log = logging.getLogger(__name__)


class Code(StrEnum):
    PREVENT_DESTROY = "prevent_destroy"
    NO_DESTROY_HERE = "no_destroy_here"
    TAKEOVER = "takeover"
    REPLACE = "replace"
    DATA_LOSS = "data_loss"
    DELETE = "delete"
    EMPTY_PRUNE = "empty_prune"
    SAVED_IDENTITY = "saved_identity"
    SAVED_STALE = "saved_stale"
    SAVED_DIFFERS = "saved_differs"


# code -> (the flag that overrides it, or None; shown in plans)
RULES: dict[Code, tuple[str | None, bool]] = {
    Code.PREVENT_DESTROY: (None, True),
    Code.NO_DESTROY_HERE: (None, True),
    Code.TAKEOVER: ("--allow-takeover", True),
    Code.REPLACE: ("--allow-replace", False),
    Code.DATA_LOSS: ("--allow-data-loss", False),
    Code.DELETE: ("--prune", False),
    Code.EMPTY_PRUNE: ("--allow-empty-prune", True),
    Code.SAVED_IDENTITY: (None, False),
    Code.SAVED_STALE: (None, False),
    Code.SAVED_DIFFERS: (None, False),
}
SAVED_PLAN_CODES = (Code.SAVED_IDENTITY, Code.SAVED_STALE, Code.SAVED_DIFFERS)


@dataclass(frozen=True, slots=True)
class Refusal:
    """One reason not to apply. ``address`` is None for a refusal of the whole plan;
    ``detail`` is what the wording needs (an owner, replace reasons, field paths)."""

    code: Code
    address: Address | None = None
    detail: str = ""
    change: Change | None = None

    @property
    def override(self) -> str | None:
        return RULES[self.code][0]

    @property
    def shown(self) -> bool:
        return RULES[self.code][1]


@dataclass(frozen=True)
class ApplyOptions:
    """The flags that lift refusals (see the table in the module docstring)."""

    prune: bool = False
    allow_replace: bool = False
    allow_takeover: bool = False
    allow_empty_prune: bool = False
    allow_data_loss: bool = False


def change_refusals(change: Change, options: ApplyOptions) -> list[Refusal]:
    """The refusals of one change, from its facts (the live owner and protection)."""
    if change.owner is None and change.action in _NEVER_REFUSED:
        return []  # most changes of a large plan, shown or checked
    out: list[Refusal] = []
    address = change.address
    destroys = change.action in (Action.REPLACE, Action.DELETE)
    if change.owner is not None and not options.allow_takeover:
        out.append(Refusal(Code.TAKEOVER, address, change.owner, change))
    if destroys and change.prevent_destroy:
        out.append(Refusal(Code.PREVENT_DESTROY, address, change=change))
    elif change.action is Action.REPLACE and not options.allow_replace:
        why = "; ".join(change.replace_reasons) or "a stream it belongs to is replaced"
        out.append(Refusal(Code.REPLACE, address, why, change))
    elif change.action is Action.DELETE and not options.prune:
        out.append(Refusal(Code.DELETE, address, change=change))
    elif change.action is Action.UPDATE and change.destructive and not options.allow_data_loss:
        out.append(Refusal(Code.DATA_LOSS, address, ", ".join(change.loss_paths), change))
    return out


# What a change of another project's resource may be refused for aside, nothing
# refuses these (change_refusals).
_NEVER_REFUSED = frozenset({Action.NOOP, Action.CREATE})
_SHOWN_WITH = ApplyOptions(prune=True)


def shown_refusals(change: Change) -> list[Refusal]:
    """The refusals a plan shows on a change: those no destructive-action flag
    (``--prune``, ``--allow-replace``, ``--allow-data-loss``) lifts."""
    return [r for r in change_refusals(change, _SHOWN_WITH) if r.shown]


def refusals(
    plan: Plan,
    project: Project | ProjectConfig | None,
    options: ApplyOptions,
    *,
    saved: Plan | None = None,
    saved_changes: Iterable[Change] | None = None,
    saved_fingerprints: Mapping[str, bytes] | None = None,
) -> list[Refusal]:
    """Every reason to refuse ``plan`` (made just now) before writing anything.

    ``project`` brings the environment's ``allow_delete``; ``saved`` is the plan file
    being applied, which must be what ``plan`` is (:func:`saved_plan_refusals`), with
    its changes in ``saved_changes`` (and their fingerprints in ``saved_fingerprints``)
    when it does not hold them.
    """
    out: list[Refusal] = (
        saved_plan_refusals(saved, plan, saved_changes, saved_fingerprints)
        if saved is not None
        else []
    )
    out += empty_prune_refusals(plan, options)
    config = project.config if isinstance(project, Project) else project
    env_cfg = config.environments.get(plan.environment) if config else None
    for change in plan.pending():
        out += change_refusals(change, options)
        if (
            env_cfg is not None
            and not env_cfg.allow_delete
            and change.action in (Action.REPLACE, Action.DELETE)
        ):
            out.append(Refusal(Code.NO_DESTROY_HERE, change.address, plan.environment, change))
    return out


def empty_prune_refusals(plan: Plan, options: ApplyOptions) -> list[Refusal]:
    """A pruning plan that deletes while nothing is declared for its environment (an
    emptied or mistyped manifests folder would delete every owned resource)."""
    if plan.prune and plan.declared == 0 and plan.has_changes and not options.allow_empty_prune:
        return [Refusal(Code.EMPTY_PRUNE, None, plan.environment)]
    return []


# A saved plan is compared with a fresh one on what apply would do; the loss counts and
# manifest locations move on their own (messages arrive, lines shift) and are not.
_NOT_COMPARED = ("loss", "location")


_COMPARED = tuple(name for name in Change.__slots__ if name not in _NOT_COMPARED)
# A change's compared fields as one tuple, made in C (a generator of getattr calls was
# two thirds of comparing a saved plan of 40,000 changes with a fresh one).
_comparable = operator.attrgetter(*_COMPARED)


_encode = json.JSONEncoder(separators=(",", ":")).encode
# The compared fields but the two that hold objects (made plain in fingerprint itself).
_plain_compared = operator.attrgetter(*(n for n in _COMPARED if n not in ("address", "diff")))


def fingerprint(change: Change) -> bytes:
    """A digest of what a saved plan's change is compared on: two changes with the same
    fingerprint have the same compared fields, as JSON (what a plan file holds and what
    the server is sent). A plan file's changes are kept as these while apply plans again,
    instead of being read a second time (0.5 s at 40,000 changes) to be compared."""
    a = change.address
    form = (
        (a.kind, a.name, a.stream, a.account),
        [(d.path, d.before, d.after) for d in change.diff],
        _plain_compared(change),
    )
    return hashlib.blake2b(_encode(form).encode(), digest_size=16).digest()


def saved_plan_refusals(
    saved: Plan,
    fresh: Plan,
    changes: Iterable[Change] | None = None,
    fingerprints: Mapping[str, bytes] | None = None,
) -> list[Refusal]:
    """Where a saved plan is not what jsops plans now (same manifests, live state,
    options): another target, resources changed live since, or a plan that differs.

    The saved plan's changes are ``changes`` if given (else its own), compared one at a
    time as they come: they need not all be held (:class:`reconciler.planfile.SavedPlan`
    reads them from the file). With the ``fingerprints`` of the saved changes (key ->
    :func:`fingerprint`), a fresh plan whose changes have exactly those is the saved one
    and ``changes`` is not read; any other is compared change by change, to say where."""
    if saved.identity is None or fresh.identity is None:
        return [Refusal(Code.SAVED_IDENTITY, None, "the plan file records no server identity")]
    wrong = saved.identity.mismatches(fresh.identity)
    if wrong:
        return [
            Refusal(
                Code.SAVED_IDENTITY,
                None,
                f"it was made against {saved.identity.describe()}; "
                f"this is {fresh.identity.describe()}",
            )
        ]
    out: list[Refusal] = []
    same_options = (saved.prune, saved.targets) == (fresh.prune, fresh.targets)
    if (
        fingerprints is not None
        and same_options
        and len(fingerprints) == len(fresh.changes)
        and all(fingerprints.get(c.key) == fingerprint(c) for c in fresh.changes)
    ):
        log.info("the plan made now is the saved one: %d changes alike", len(fresh.changes))
        return out
    now = {c.key: c for c in fresh.changes}
    seen: set[str] = set()
    for old in saved.changes if changes is None else changes:
        key = old.key
        seen.add(key)
        new = now.get(key)
        if new is None:
            out.append(Refusal(Code.SAVED_DIFFERS, old.address, "not in a plan made now"))
            continue
        why = None
        code = Code.SAVED_STALE
        if old.action is Action.CREATE and new.action is not Action.CREATE:
            why = "now exists (the plan creates it)"
        elif old.action is not Action.CREATE and new.action is Action.CREATE:
            why = f"no longer exists (the plan {old.action.value}s it)"
        elif old.live_digest != new.live_digest:
            why = "changed since the plan was made"
        elif _comparable(old) != _comparable(new):
            fields = [name for name in _COMPARED if getattr(old, name) != getattr(new, name)]
            code, why = Code.SAVED_DIFFERS, f"differs from a plan made now ({', '.join(fields)})"
        if why is not None:
            out.append(Refusal(code, old.address, why, new))
    for key, new in now.items():
        if key not in seen:
            out.append(Refusal(Code.SAVED_DIFFERS, new.address, "missing from the plan file", new))
    if not same_options:
        out.append(Refusal(Code.SAVED_DIFFERS, None, "made with other --prune/--target options"))
    return out
