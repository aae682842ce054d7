"""Plan renderers: text (terraform-style, human units), json, markdown (PR comments).

Human units appear only here: which fields are durations or sizes is read from the
manifest models themselves, so a new field never needs a second table.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any, TextIO

import click

from reconciler import planfile
from reconciler.diff import set_delta
from reconciler.models import UNIT_PATHS, Kind
from reconciler.models.units import format_duration, format_size
from reconciler.normalize import SET_FIELDS
from reconciler.plan import Action, Change, Plan, Reason
from reconciler.printable import html_text, md_code, md_text, one_line, terminal
from reconciler.refusals import Code, Refusal, shown_refusals

_COLORS = {
    Action.CREATE: "green",
    Action.UPDATE: "yellow",
    Action.REPLACE: "magenta",
    Action.DELETE: "red",
    Action.NOOP: None,
}


def _strip_indexes(path: str) -> str:
    return ".".join(p for p in path.split(".") if not p.isdigit())


_UNITS: dict[tuple[Kind, str], str | None] = {}  # (kind, path) -> unit, as looked up
_JSON_VALUE = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode


def _unit(kind: Kind, path: str) -> str | None:
    key = (kind, path)
    if key not in _UNITS:
        _UNITS[key] = UNIT_PATHS.get(kind, {}).get(_strip_indexes(path))
    return _UNITS[key]


def human(kind: Kind, path: str, value: Any) -> str:
    """A value in human units: ``604800000000000`` at ``max_age`` -> ``7d``."""
    if value is None:
        return "(none)"
    unit = _unit(kind, path)
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
    # What json.dumps(value, ensure_ascii=False, separators=(", ", ": ")) gives, the
    # usual values (a name, a count, a list of subjects) without its encoder's setup.
    if type(value) is str:
        return encode_basestring(value)
    if type(value) is int:
        return str(value)
    if type(value) is list and all(type(v) is str for v in value):
        return "[" + ", ".join(map(encode_basestring, value)) + "]"
    return _JSON_VALUE(value)


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


def _plan_refusals(change: Change) -> list[str]:
    """Short notes for a plan line (the refusals no destructive-action flag lifts):
    ``refused: prevent_destroy``, ``refused: owned by project "billing" (--allow-takeover)``."""
    notes = []
    for refusal in shown_refusals(change):
        if refusal.code is Code.TAKEOVER:
            notes.append(f'refused: owned by project "{refusal.detail}" (--allow-takeover)')
        else:
            notes.append(f"refused: {refusal.code.value}")
    return notes


def _on(plan: Plan) -> str:
    """`` on cluster c1, no domain, account $G``: the target the plan was read from."""
    return f" on {plan.identity.describe()}" if plan.identity else ""


def summary_line(plan: Plan) -> str:
    s = plan.summary
    if not plan.has_changes:
        return f"No changes. {s['noop']} resource(s) up to date."
    return (
        f"Plan: {s['create']} to create, {s['update']} to update, {s['replace']} to "
        f"replace, {s['delete']} to delete, {s['noop']} unchanged."
    )


def render_text(
    plan: Plan, *, color: bool = False, show_noop: bool = False, backup_dir: str | None = None
) -> str:
    """The terraform-style plan; with ``backup_dir`` (``apply --backup-dir``) each change
    that will be snapshotted first says where to."""
    lines = text_lines(plan, color=color, show_noop=show_noop, backup_dir=backup_dir)
    return "".join(f"{line}\n" for line in lines)


def write_text(
    plan: Plan,
    out: TextIO,
    *,
    color: bool = False,
    show_noop: bool = False,
    backup_dir: str | None = None,
) -> None:
    """:func:`render_text` written a line at a time (the text of 40,000 creates is never
    held whole: 25 MB of an apply's peak at 10,000 streams)."""
    for line in text_lines(plan, color=color, show_noop=show_noop, backup_dir=backup_dir):
        out.write(f"{line}\n")


def text_lines(
    plan: Plan, *, color: bool = False, show_noop: bool = False, backup_dir: str | None = None
) -> Iterator[str]:
    """The lines of :func:`render_text` (without their newlines), made as they are taken.

    Each line is :func:`~reconciler.printable.terminal`-safe before it is colored (names,
    metadata keys and plan files are not jsops's), and a diff path is one line."""
    if backup_dir is not None:  # (apply --backup-dir only: a plan needs neither)
        from reconciler.backup import needs_snapshot, snapshot_target

    yield one_line(
        f'jsops plan: project "{plan.project}", environment "{plan.environment}" '
        f"(server {plan.server_version or '?'}, API level {plan.api_level})" + _on(plan)
    )
    yield ""
    shown = False
    for change in plan.changes:
        if change.action is Action.NOOP and not show_noop:
            continue
        head = f"{change.action.symbol:>3} {one_line(str(change.address))}"
        notes = _change_notes(change, DRIFT_NOTE)
        if backup_dir is not None and needs_snapshot(change):
            notes.append(f"snapshot to {Path(backup_dir, snapshot_target(change))} first")
        if notes:
            head += f"  ({one_line('; '.join(notes))})"
        if color and _COLORS[change.action]:
            head = click.style(head, fg=_COLORS[change.action])
        shown = True
        yield head
        kind = change.address.kind
        for ref in change.external_refs:
            yield f"      reads {one_line(str(ref))}"
        if change.action is Action.CREATE:
            for d in change.diff:
                yield terminal(f"      {one_line(d.path)}: {human(kind, d.path, d.after)}")
            continue
        for d in change.diff:
            path = one_line(d.path)
            mark = "  # forces replacement" if d.path.split(".")[0] in change.replace_paths else ""
            if d.path in SET_FIELDS.get(kind, ()):
                added, removed = set_delta(d)
                delta = [f"+{json.dumps(v)}" for v in added]
                delta += [f"-{json.dumps(v)}" for v in removed]
                yield terminal(f"      {path}: {' '.join(delta)}{mark}")
            else:
                yield terminal(
                    f"      {path}: {human(kind, d.path, d.before)} -> "
                    f"{human(kind, d.path, d.after)}{mark}"
                )
    if plan.unmanaged:
        shown = True
        yield ""
        yield (
            "Unmanaged: owned by this project but declared in no manifest "
            "(deleted only with --prune):"
        )
        for u in plan.unmanaged:
            yield f"    {one_line(str(u))}"
    if not shown:
        yield "No changes: the live state matches the manifests."


def render_json(plan: Plan) -> str:
    return planfile.dumps(plan)


# GitHub refuses a comment body over 65,536 characters. The markdown plan stays a margin
# below it, so a CI step may add its own marker line or heading and still post it.
COMMENT_LIMIT = 65_536
MARKDOWN_BUDGET = COMMENT_LIMIT - 1_536
DIAGRAM_NODES = 40  # boxes in the plan's Mermaid diagram (it stays readable and small)
UNMANAGED_LISTED = 20
REFUSED_LISTED = 20
_ACTIONS = (Action.CREATE, Action.UPDATE, Action.REPLACE, Action.DELETE, Action.NOOP)
_KIND_ORDER = {
    Kind.ACCOUNT: 0,
    Kind.STREAM: 1,
    Kind.KEY_VALUE: 2,
    Kind.OBJECT_STORE: 3,
    Kind.CONSUMER: 4,
}
_TABLE_HEAD = ["| | resource | action | details |", "|---|---|---|---|"]
_JSON_HINT = (
    "the JSON plan has everything (`jsops plan --format json`, or "
    "`jsops show PLANFILE --format json` for a saved plan)"
)


class _Budget:
    """Characters left for the parts of a comment that can be cut."""

    def __init__(self, left: int) -> None:
        self.left = left

    def take(self, lines: list[str]) -> bool:
        """Spend on ``lines`` (each counted with its newline) if they fit."""
        size = sum(len(line) + 1 for line in lines)
        if size > self.left:
            return False
        self.left -= size
        return True


def _lines_size(lines: list[str]) -> int:
    return sum(len(line) + 1 for line in lines)


def _change_notes(change: Change, drift_note: str) -> list[str]:
    """What a plan line says about a change besides its diff, for text and markdown alike:
    drift, the reason, why it is a replace, what it loses, and its refusals."""
    notes = [drift_note] if change.drift else []
    if reason := _reason_note(change):
        notes.append(reason)
    if change.replace_reasons:
        notes.append("; ".join(change.replace_reasons))
    if loss := loss_text(change):
        notes.append(f"loses {loss}")
    return notes + _plan_refusals(change)


def _md_details(change: Change) -> str:
    """The notes of a change as markdown text: only the drift mark is markdown (bold);
    the rest, which carries names from the server, is escaped."""
    notes = _change_notes(change, DRIFT_NOTE)
    if not change.drift:
        return md_text("; ".join(notes))
    return "; ".join([f"**{DRIFT_NOTE}**", *map(md_text, notes[1:])])


def _md_row(change: Change) -> str:
    warn = " ⚠️" if change.destructive else ""
    return (
        f"| `{change.action.symbol}` | {md_code(str(change.address))} | "
        f"{change.action.value}{warn} | {_md_details(change)} |"
    )


def _md_value(change: Change, path: str, value: Any) -> str:
    return md_code(human(change.address.kind, path, value))


def _md_diff_block(change: Change) -> list[str]:
    lines = [
        f"<details><summary>{change.action.value} <code>{html_text(str(change.address))}"
        "</code></summary>",
        "",
        "| field | before | after |",
        "|---|---|---|",
    ]
    for d in change.diff:
        lines.append(
            f"| {md_code(d.path)} | {_md_value(change, d.path, d.before)} | "
            f"{_md_value(change, d.path, d.after)} |"
        )
    return [*lines, "", "</details>", ""]


def _kind_table(plan: Plan) -> list[str]:
    counts: dict[Kind, dict[Action, int]] = {}
    for change in plan.changes:
        row = counts.setdefault(change.address.kind, dict.fromkeys(_ACTIONS, 0))
        row[change.action] += 1
    lines = [
        "| kind | create | update | replace | delete | unchanged |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind, row in sorted(counts.items(), key=lambda item: _KIND_ORDER.get(item[0], 9)):
        lines.append(f"| {kind} | " + " | ".join(str(row[a]) for a in _ACTIONS) + " |")
    return [*lines, ""]


def _table(changes: list[Change], budget: _Budget, heading: str | None) -> tuple[list[str], int]:
    """A table of ``changes``, as many rows as the budget allows: (lines, rows left out)."""
    head = ([heading, ""] if heading else []) + _TABLE_HEAD
    if not changes or not budget.take(head):
        return [], len(changes)
    rows = []
    for change in changes:
        row = _md_row(change)
        if not budget.take([row]):
            break
        rows.append(row)
    return [*head, *rows, ""], len(changes) - len(rows)


def _diagram(plan: Plan, budget: _Budget) -> list[str]:
    from reconciler.graph import plan_graph, to_mermaid

    graph, left_out = plan_graph(plan.pending(), DIAGRAM_NODES)
    if not graph.edges:  # boxes without arrows tell nothing the tables do not
        return []
    caption = "What changes, and what it reads from"
    if left_out:
        caption += f" ({left_out} more changes not drawn)"
    lines = [f"<details open><summary>{caption}</summary>", "", "```mermaid"]
    lines += to_mermaid(graph).splitlines()
    lines += ["```", "", "</details>", ""]
    return lines if budget.take(lines) else []


def _unmanaged(plan: Plan) -> list[str]:
    if not plan.unmanaged:
        return []
    shown = ", ".join(md_code(str(u)) for u in plan.unmanaged[:UNMANAGED_LISTED])
    more = len(plan.unmanaged) - UNMANAGED_LISTED
    if more > 0:
        shown += f" and {more} more"
    return [
        "Unmanaged (owned by this project, declared in no manifest; deleted only with "
        f"`--prune`): {shown}",
        "",
    ]


def _footer(plan: Plan) -> list[str]:
    return [
        f"<sub>jsops · project {md_code(plan.project)} · server "
        f"{md_text(plan.server_version or '?')} (API level {plan.api_level})"
        f"{md_text(_on(plan))}</sub>"
    ]


def render_markdown(plan: Plan, *, limit: int = MARKDOWN_BUDGET) -> str:
    """A pull-request comment that always fits in ``limit`` characters: the summary per
    kind and action, every destructive change first, then a diagram of what changes,
    the other changes and their field diffs while they fit; what is cut is counted in
    a note that points to the JSON plan."""
    pending = plan.pending()
    destructive = [c for c in pending if c.destructive]
    others = [c for c in pending if not c.destructive]
    refused = [c for c in pending if _plan_refusals(c)]
    head = [
        f"### jsops plan: {md_code(plan.environment)}"
        + ("" if plan.has_changes else " (no changes)"),
        "",
        summary_line(plan),
        "",
    ]
    if plan.has_changes:
        head += _kind_table(plan)
    if destructive:
        head += [
            "> [!WARNING]",
            f"> {len(destructive)} destructive change(s): data or delivery state will be lost.",
            "",
        ]
    if refused:
        listed = ", ".join(md_code(str(c.address)) for c in refused[:REFUSED_LISTED])
        more = len(refused) - REFUSED_LISTED
        head += [
            "> [!CAUTION]",
            f"> {len(refused)} change(s) refused (apply stops before writing anything): "
            f"{listed}{f' and {more} more' if more > 0 else ''}.",
            "",
        ]
    tail = _unmanaged(plan) + _footer(plan)
    note_room = 600  # the cut note below is shorter than this
    budget = _Budget(limit - _lines_size(head) - _lines_size(tail) - note_room)

    first, cut_destructive = _table(
        destructive, budget, f"#### Destructive changes ({len(destructive)})" if others else None
    )
    diagram = _diagram(plan, budget)
    second, cut_others = _table(
        others, budget, f"#### Other changes ({len(others)})" if destructive else None
    )
    details: list[str] = []
    undetailed = 0
    for change in pending:
        if not change.diff:
            continue
        block = _md_diff_block(change)
        if undetailed or not budget.take(block):
            undetailed += 1
            continue
        details += block

    note: list[str] = []
    if cut_destructive or cut_others or undetailed:
        parts = []
        if cut_destructive or cut_others:
            parts.append(f"{cut_destructive + cut_others} of {len(pending)} changes are not listed")
        if undetailed:
            parts.append(f"{undetailed} have their field changes left out")
        note = [
            "> [!NOTE]",
            f"> Cut to fit one comment: {', '.join(parts)}; {_JSON_HINT}.",
            "",
        ]
    return "\n".join(head + first + diagram + second + details + note + tail) + "\n"


def render_markdown_failure(
    error: BaseException, environment: str | None, *, limit: int = MARKDOWN_BUDGET
) -> str:
    """The comment of a plan that failed: why, with every manifest error's location (as
    many as fit), so a CI step that posts stdout never posts an empty comment."""
    from reconciler.errors import JsopsError, ManifestError

    where = md_code(environment) if environment else "(no environment)"
    head = [f"### jsops plan: {where} (failed)", "", "> [!CAUTION]"]
    tail = ["", "<sub>jsops · nothing was changed</sub>"]
    if isinstance(error, ManifestError):
        count = len(error.diagnostics)
        head += [
            f"> The plan failed: {count} error(s) in the manifests. Nothing was sent to a "
            "server. `jsops validate` lists them all.",
            "",
            "| location | error |",
            "|---|---|",
        ]
        budget = _Budget(limit - _lines_size(head) - _lines_size(tail) - 200)
        rows = []
        for diag in error.diagnostics:
            text = diag.message + (f" ({diag.hint})" if diag.hint else "")
            if diag.location.rendered:
                text += " (line in rendered template)"
            row = f"| {md_code(str(diag.location))} | {md_text(text)} |"
            if not budget.take([row]):
                break
            rows.append(row)
        if len(rows) < count:
            rows += ["", f"{count - len(rows)} more error(s) not listed: run `jsops validate`."]
        return "\n".join(head + rows + tail) + "\n"
    if isinstance(error, JsopsError):
        lines = error.lines()
    else:
        lines = [f"internal error: {type(error).__name__}: {error}"]
    text = md_text(" ".join(lines)[: limit // 4])
    head.append(f"> The plan failed: {text}")
    return "\n".join(head + tail) + "\n"


RENDERERS = {"text": render_text, "json": render_json, "markdown": render_markdown}
