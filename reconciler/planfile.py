"""The plan's JSON form (``plan --format json`` and ``plan --out FILE``).

The only module that knows the file shape (DESIGN section 6). ``changes`` lists what
apply will do, in apply order; unchanged resources are only counted in ``summary``
(``noop``) and kept, in the same shape, under ``unchanged``. Readers ignore keys they
do not know; keys are only ever added. A file with another ``format_version`` is
refused with a sentence naming the supported one.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO, TypeVar

from reconciler.diff import FieldDiff
from reconciler.errors import JsopsError
from reconciler.live import ServerIdentity
from reconciler.models import Address, Kind
from reconciler.plan import Action, Change, Plan, Reason
from reconciler.refusals import shown_refusals

FORMAT_VERSION = 1


def change_to_json(change: Change) -> dict[str, Any]:
    address = change.address
    return {
        "action": change.action.value,
        "kind": address.kind,
        "name": address.name,
        "stream": address.stream,
        "account": address.account,
        "destructive": change.destructive,
        "reason": change.reason.value if change.reason else None,
        "drift": change.drift,
        "diff": [d.to_json() for d in change.diff],
        "replace_paths": list(change.replace_paths),
        "replace_reasons": list(change.replace_reasons),
        "loss": change.loss,
        "loss_paths": list(change.loss_paths),
        "location": change.location,
        "prevent_destroy": change.prevent_destroy,
        "depends_on": list(change.depends_on),
        "external_refs": list(change.external_refs),
        "owner": change.owner,
        "refused": [
            {"code": r.code.value, "detail": r.detail or None, "override": r.override}
            for r in shown_refusals(change)
        ],
        "live_digest": change.live_digest,
        "send": change.send,
    }


def plan_to_json(plan: Plan, *, lazy: bool = False) -> dict[str, Any]:
    """The plan file's document; with ``lazy``, its change lists are generators (made as
    :func:`write_document` writes them: a plan of 40,000 never holds them all)."""
    changes = (change_to_json(c) for c in plan.changes if c.action is not Action.NOOP)
    unchanged = (change_to_json(c) for c in plan.changes if c.action is Action.NOOP)
    return {
        "format_version": FORMAT_VERSION,
        "environment": plan.environment,
        "project": plan.project,
        "api_level": plan.api_level,
        "server_version": plan.server_version,
        "created_at": plan.created_at,
        "identity": plan.identity.to_json() if plan.identity else None,
        "prune": plan.prune,
        "targets": list(plan.targets),
        "declared": plan.declared,
        "changes": changes if lazy else list(changes),
        "summary": plan.summary,
        "unchanged": unchanged if lazy else list(unchanged),
        "unmanaged": list(plan.unmanaged),
    }


def dumps(plan: Plan) -> str:
    return document_json(plan_to_json(plan))


def dump(plan: Plan, out: TextIO) -> None:
    """Write the plan's JSON document (what :func:`dumps` gives) to ``out``, a line at a time."""
    write_document(plan_to_json(plan, lazy=True), out)


def document_json(document: dict[str, Any]) -> str:
    """A JSON document as jsops prints it (:func:`write_document`), as one string."""
    out = io.StringIO()
    write_document(document, out)
    return out.getvalue()


def write_document(document: dict[str, Any], out: TextIO) -> None:
    """Write a JSON document as jsops prints it: one top-level key a line, and each item
    of a top-level list (or iterator) on its own line, in compact form.

    ``json.dumps(indent=...)`` runs Python's pure encoder (the C one takes no indent):
    for a plan or status of 40,000 resources it cost seconds and ~170 MB of string
    pieces. Each line here is one C-encoded value, written as it is made; the result is
    still one JSON value, and reads (and diffs) a resource a line."""
    one = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode
    out.write("{\n")
    last = len(document) - 1
    for i, (key, value) in enumerate(document.items()):
        comma = "," if i < last else ""
        items = iter(value) if isinstance(value, (list, Iterator)) else None
        first = next(items, _NOTHING) if items is not None else _NOTHING
        if first is _NOTHING:
            out.write(f"  {one(key)}: {one([] if items is not None else value)}{comma}\n")
            continue
        assert items is not None
        out.write(f"  {one(key)}: [\n    {one(first)}")
        for item in items:
            out.write(f",\n    {one(item)}")
        out.write(f"\n  ]{comma}\n")
    out.write("}\n")


_NOTHING = object()


E = TypeVar("E", bound=StrEnum)


def _enum(enum: type[E], value: Any, what: str) -> E:
    try:
        return enum(value)
    except ValueError:
        raise JsopsError(f"plan file: unknown {what} {value!r}") from None


def change_from_json(data: dict[str, Any]) -> Change:
    address = Address(
        _enum(Kind, data["kind"], "kind"), data["name"], data.get("stream"), data.get("account")
    )
    reason = data.get("reason")
    return Change(
        address=address,
        action=_enum(Action, data["action"], "action"),
        diff=tuple(
            FieldDiff(d["path"], d.get("before"), d.get("after")) for d in data.get("diff", [])
        ),
        reason=_enum(Reason, reason, "reason") if reason else None,
        replace_paths=tuple(data.get("replace_paths") or ()),
        replace_reasons=tuple(data.get("replace_reasons") or ()),
        destructive=bool(data.get("destructive")),
        loss=data.get("loss"),
        loss_paths=tuple(data.get("loss_paths") or ()),
        location=data.get("location"),
        live_digest=data.get("live_digest"),
        drift=bool(data.get("drift")),
        send=data.get("send"),
        prevent_destroy=bool(data.get("prevent_destroy")),
        depends_on=tuple(data.get("depends_on") or ()),
        external_refs=tuple(data.get("external_refs") or ()),
        owner=data.get("owner"),
    )


def plan_from_json(data: dict[str, Any]) -> Plan:
    if "format_version" not in data or "changes" not in data:
        raise JsopsError("not a jsops plan (no format_version or changes)")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise JsopsError(
            f"plan file has format_version {version!r}; this jsops reads format_version "
            f"{FORMAT_VERSION} (make the plan again with this version)"
        )
    try:
        identity = data.get("identity")
        return Plan(
            environment=data["environment"],
            project=data.get("project", ""),
            changes=tuple(
                change_from_json(c) for c in [*data["changes"], *(data.get("unchanged") or [])]
            ),
            api_level=int(data.get("api_level", 0)),
            server_version=data.get("server_version", ""),
            created_at=data.get("created_at", ""),
            unmanaged=tuple(data.get("unmanaged") or ()),
            identity=ServerIdentity(**{k: identity.get(k) for k in ServerIdentity.FIELDS})
            if isinstance(identity, dict)
            else None,
            prune=bool(data.get("prune")),
            targets=tuple(data.get("targets") or ()),
            declared=int(data.get("declared", 0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise JsopsError(f"plan file is malformed: {exc}") from None


def write_plan(plan: Plan, path: str | Path) -> None:
    """Write the plan file, readable by its owner only (0600, also when it existed)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)
            dump(plan, handle)
    except OSError as exc:
        raise JsopsError(f"{path}: cannot write the plan file ({exc.strerror or exc})") from None


def read_plan(path: str | Path) -> Plan:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise JsopsError(f"{path}: plan file not found") from None
    except (OSError, ValueError) as exc:
        raise JsopsError(f"{path}: not a jsops plan file ({exc})") from None
    if not isinstance(data, dict):
        raise JsopsError(f"{path}: not a jsops plan file")
    try:
        return plan_from_json(data)
    except JsopsError as exc:
        raise JsopsError(f"{path}: {exc}") from None
