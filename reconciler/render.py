"""Plan renderers: text (terraform-style, human units), json, markdown (PR comments).

Human units appear only here: which fields are durations or sizes is read from the
manifest models themselves, so a new field never needs a second table.
"""

from __future__ import annotations

import json
from typing import Any

import click

from reconciler import planfile
from reconciler.models import ConsumerSpec, KeyValueSpec, Kind, ObjectStoreSpec, StreamSpec
from reconciler.models.types import unit_paths
from reconciler.models.units import format_duration, format_size
from reconciler.plan import Action, Change, Plan, Reason
from reconciler.refusals import ApplyOptions, Code, Refusal, change_refusals

_COLORS = {
    Action.CREATE: "green",
    Action.UPDATE: "yellow",
    Action.REPLACE: "magenta",
    Action.DELETE: "red",
    Action.NOOP: None,
}


_STREAM_UNITS = unit_paths(StreamSpec)
UNIT_PATHS = {
    Kind.STREAM: _STREAM_UNITS,
    Kind.CONSUMER: unit_paths(ConsumerSpec),
    # a bucket's diff: bucket fields, and ``stream.<field>`` for what no bucket field covers
    **{
        kind: {**unit_paths(spec), **{f"stream.{k}": v for k, v in _STREAM_UNITS.items()}}
        for kind, spec in ((Kind.KEY_VALUE, KeyValueSpec), (Kind.OBJECT_STORE, ObjectStoreSpec))
    },
}


def _strip_indexes(path: str) -> str:
    return ".".join(p for p in path.split(".") if not p.isdigit())


def human(kind: Kind, path: str, value: Any) -> str:
    """A value in human units: ``604800000000000`` at ``max_age`` -> ``7d``."""
    if value is None:
        return "(none)"
    unit = UNIT_PATHS.get(kind, {}).get(_strip_indexes(path))
    if unit and isinstance(value, int) and not isinstance(value, bool):
        return (
            format_duration(value)
            if unit == "duration"
            else ("unlimited" if value == -1 else format_size(value))
        )
    if unit and isinstance(value, list):
        fmt = format_duration if unit == "duration" else format_size
        return "[" + ", ".join(fmt(v) if isinstance(v, int) else str(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and value == -1 and path.startswith("max_"):
        return "unlimited"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def loss_text(change: Change) -> str:
    """What a destructive change loses, in words: ``12 messages (1KiB), 1 consumer``;
    an update ``about 7 messages (70B) (max_msgs lowered)``; a consumer replace adds
    what restarting delivery does (``delivery restarts (deliver_policy all): 200
    already processed messages are redelivered``)."""
    loss = dict(change.loss or {})
    if not loss:
        return ""
    parts = []
    if "messages" in loss or "bytes" in loss:
        size = int(loss.pop("bytes", 0) or 0)
        about = "about " if change.loss_paths else ""
        parts.append(
            f"{about}{_plural(int(loss.pop('messages', 0) or 0), 'message')} "
            f"({format_size(size) if size > 0 else '0B'})"
            + (f" ({', '.join(change.loss_paths)} lowered)" if change.loss_paths else "")
        )
    consumers = int(loss.pop("consumers", 0) or 0)
    if consumers:
        parts.append(_plural(consumers, "consumer"))
    if "num_pending" in loss or "num_ack_pending" in loss:
        parts.append(f"{int(loss.pop('num_pending', 0) or 0)} pending")
        parts.append(f"{int(loss.pop('num_ack_pending', 0) or 0)} ack pending")
    restart = _restart_text(change, loss.pop("redelivered", None), loss.pop("skipped", None))
    for key, value in loss.items():
        if value:
            parts.append(f"{value} {key.removeprefix('num_').replace('_', ' ')}")
    if restart:
        parts.append(restart)
    return ", ".join(parts)


def _restart_text(change: Change, redelivered: int | None, skipped: int | None) -> str:
    """A replaced consumer starts over: what its new deliver_policy does."""
    if change.address.kind != Kind.CONSUMER or change.reason is Reason.STREAM_REPLACED:
        return ""
    if redelivered is None and skipped is None and change.action is not Action.REPLACE:
        return ""
    policy = (change.send or {}).get("deliver_policy") or "all"
    text = f"delivery restarts (deliver_policy {policy})"
    if redelivered is not None:
        text += (
            f": {_plural(redelivered, 'already processed message')} "
            f"{'is' if redelivered == 1 else 'are'} redelivered"
        )
    if skipped:
        text += f", {_plural(skipped, 'pending message')} never delivered"
    return text


def _reason_note(change: Change) -> str | None:
    """The reason in words, when it tells more than the action symbol already does (a
    takeover is told by its refusal)."""
    reason = change.reason
    if reason is None or reason in (Reason.NEW, Reason.CHANGED, Reason.TAKEOVER):
        return None
    if reason is Reason.CANNOT_UPDATE and change.replace_reasons:
        return None
    return reason.value.replace("_", " ")


# How a change whose live config moved since jsops wrote it (``Change.drift``) is marked.
DRIFT_NOTE = "drift: changed outside jsops"


# What each refusal says; ``{detail}`` is Refusal.detail, ``{env}`` the environment.
_REFUSALS = {
    Code.PREVENT_DESTROY: "{action} refused by prevent_destroy",
    Code.NO_DESTROY_HERE: (
        '{action} refused: environment "{detail}" does not allow deletes or replaces '
        "(allow_delete: false in jsops.yaml)"
    ),
    Code.TAKEOVER: (
        '{action} refused: owned by project "{detail}" (jsops.owner); '
        "--allow-takeover takes it over"
    ),
    Code.REPLACE: "replace needs --allow-replace ({detail})",
    Code.DELETE: "delete needs --prune",
    Code.DATA_LOSS: "update drops stored messages, needs --allow-data-loss",
    Code.EMPTY_PRUNE: (
        'prune refused: the manifests declare nothing for environment "{detail}", so every '
        "owned resource would be deleted (--allow-empty-prune to do that)"
    ),
    Code.SAVED_IDENTITY: "the plan is for another target: {detail}",
    Code.SAVED_STALE: "{detail}",
    Code.SAVED_DIFFERS: "{detail}",
}


def refusal_text(refusal: Refusal) -> str:
    """One line for a refusal: ``FILE:L:C: Stream X: replace refused by prevent_destroy
    (would lose 3 messages (1KiB))``."""
    change = refusal.change
    action = change.action.value if change else ""
    text = _REFUSALS[refusal.code].format(action=action, detail=refusal.detail)
    if refusal.address is not None:
        text = f"{refusal.address}: {text}"
    if change is not None and change.location and refusal.code is not Code.DELETE:
        text = f"{change.location}: {text}"
    loss = loss_text(change) if change is not None and refusal.code in _SAYS_LOSS else ""
    return text + (f" (would lose {loss})" if loss else "")


_SAYS_LOSS = (
    Code.PREVENT_DESTROY,
    Code.REPLACE,
    Code.DELETE,
    Code.NO_DESTROY_HERE,
    Code.DATA_LOSS,
)
# Refusals a plan shows on its changes: those no destructive-action flag lifts.
_PLAN_OPTIONS = ApplyOptions(prune=True, allow_replace=True)


def _plan_refusals(change: Change) -> list[str]:
    """Short notes for a plan line: ``refused: prevent_destroy``, ``refused: owned by
    project "billing" (--allow-takeover)``."""
    notes = []
    for refusal in change_refusals(change, _PLAN_OPTIONS):
        if refusal.code is Code.TAKEOVER:
            notes.append(f'refused: owned by project "{refusal.detail}" (--allow-takeover)')
        elif refusal.shown:
            notes.append(f"refused: {refusal.code.value}")
    return notes


def summary_line(plan: Plan) -> str:
    s = plan.summary
    if not plan.has_changes:
        return f"No changes. {s['noop']} resource(s) up to date."
    return (
        f"Plan: {s['create']} to create, {s['update']} to update, {s['replace']} to "
        f"replace, {s['delete']} to delete, {s['noop']} unchanged."
    )


def render_text(plan: Plan, *, color: bool = False, show_noop: bool = False) -> str:
    lines = [
        f'jsops plan: project "{plan.project}", environment "{plan.environment}" '
        f"(server {plan.server_version or '?'}, API level {plan.api_level})",
        "",
    ]
    for change in plan.changes:
        if change.action is Action.NOOP and not show_noop:
            continue
        head = f"{change.action.symbol:>3} {change.address}"
        notes = [DRIFT_NOTE] if change.drift else []
        if reason := _reason_note(change):
            notes.append(reason)
        if change.replace_reasons:
            notes.append("; ".join(change.replace_reasons))
        loss = loss_text(change)
        if loss:
            notes.append(f"loses {loss}")
        notes += _plan_refusals(change)
        if notes:
            head += f"  ({'; '.join(notes)})"
        if color and _COLORS[change.action]:
            head = click.style(head, fg=_COLORS[change.action])
        lines.append(head)
        kind = change.address.kind
        for ref in change.external_refs:
            lines.append(f"      reads {ref}")
        for d in change.diff:
            mark = "  # forces replacement" if d.path.split(".")[0] in change.replace_paths else ""
            if change.action is Action.CREATE:
                lines.append(f"      {d.path}: {human(kind, d.path, d.after)}")
            else:
                lines.append(
                    f"      {d.path}: {human(kind, d.path, d.before)} -> "
                    f"{human(kind, d.path, d.after)}{mark}"
                )
    if plan.unmanaged:
        lines.append("")
        lines.append(
            "Unmanaged: owned by this project but declared in no manifest "
            "(deleted only with --prune):"
        )
        lines.extend(f"    {u}" for u in plan.unmanaged)
    if len(lines) == 2:
        lines.append("No changes: the live state matches the manifests.")
    return "\n".join(lines) + "\n"


def render_json(plan: Plan) -> str:
    return planfile.dumps(plan)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(plan: Plan) -> str:
    import jinja2  # only the markdown format needs it

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("reconciler", "templates"),
        trim_blocks=True,
        autoescape=False,
        keep_trailing_newline=True,
    )
    template = env.get_template("plan.md.j2")

    def details(change: Change) -> str:
        parts = [f"**{DRIFT_NOTE}**"] if change.drift else []
        if reason := _reason_note(change):
            parts.append(reason)
        if change.replace_reasons:
            parts.append("; ".join(change.replace_reasons))
        if loss_text(change):
            parts.append(f"loses {loss_text(change)}")
        parts += _plan_refusals(change)
        return _md_escape("; ".join(parts))

    def fmt(change: Change, path: str, value: Any) -> str:
        return "`" + _md_escape(human(change.address.kind, path, value)) + "`"

    pending = plan.pending()
    return template.render(
        plan=plan,
        pending=pending,
        summary=summary_line(plan),
        details=details,
        fmt=fmt,
        destructive=[c for c in pending if c.destructive],
        refused=[c for c in pending if _plan_refusals(c)],
    )


RENDERERS = {"text": render_text, "json": render_json, "markdown": render_markdown}
