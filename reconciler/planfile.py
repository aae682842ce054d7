"""The plan's JSON form (``plan --format json`` and ``plan --out FILE``).

The only module that knows the file shape (DESIGN section 6). ``changes`` lists what
apply will do, in apply order; unchanged resources are only counted in ``summary``
(``noop``) and kept, in the same shape, under ``unchanged``. Readers ignore keys they
do not know; keys are only ever added. A file with another ``format_version`` is
refused with a sentence naming the supported one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reconciler.diff import FieldDiff
from reconciler.errors import JsopsError
from reconciler.models import Address
from reconciler.plan import FORMAT_VERSION, Action, Change, Plan, Reason


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
        "location": change.location,
        "prevent_destroy": change.prevent_destroy,
        "depends_on": list(change.depends_on),
        "external_refs": list(change.external_refs),
        "live_digest": change.live_digest,
        "send": change.send,
    }


def plan_to_json(plan: Plan) -> dict[str, Any]:
    return {
        "format_version": plan.format_version,
        "environment": plan.environment,
        "project": plan.project,
        "api_level": plan.api_level,
        "server_version": plan.server_version,
        "created_at": plan.created_at,
        "changes": [change_to_json(c) for c in plan.changes if c.action is not Action.NOOP],
        "summary": plan.summary,
        "unchanged": [change_to_json(c) for c in plan.changes if c.action is Action.NOOP],
        "unmanaged": list(plan.unmanaged),
    }


def dumps(plan: Plan) -> str:
    return json.dumps(plan_to_json(plan), indent=2, ensure_ascii=False) + "\n"


def _enum(enum: type[Action] | type[Reason], value: Any, what: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        raise JsopsError(f"plan file: unknown {what} {value!r}") from None


def change_from_json(data: dict[str, Any]) -> Change:
    address = Address(data["kind"], data["name"], data.get("stream"), data.get("account"))
    reason = data.get("reason")
    return Change(
        address=address,
        action=_enum(Action, data["action"], "action"),
        diff=[FieldDiff(d["path"], d.get("before"), d.get("after")) for d in data.get("diff", [])],
        reason=_enum(Reason, reason, "reason") if reason else None,
        replace_paths=list(data.get("replace_paths") or []),
        replace_reasons=list(data.get("replace_reasons") or []),
        destructive=bool(data.get("destructive")),
        loss=data.get("loss"),
        location=data.get("location"),
        live_digest=data.get("live_digest"),
        drift=bool(data.get("drift")),
        send=data.get("send"),
        prevent_destroy=bool(data.get("prevent_destroy")),
        depends_on=list(data.get("depends_on") or []),
        external_refs=list(data.get("external_refs") or []),
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
        return Plan(
            environment=data["environment"],
            project=data.get("project", ""),
            changes=[
                change_from_json(c) for c in [*data["changes"], *(data.get("unchanged") or [])]
            ],
            api_level=int(data.get("api_level", 0)),
            server_version=data.get("server_version", ""),
            created_at=data.get("created_at", ""),
            unmanaged=list(data.get("unmanaged") or []),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise JsopsError(f"plan file is malformed: {exc}") from None


def write_plan(plan: Plan, path: str | Path) -> None:
    try:
        Path(path).write_text(dumps(plan), encoding="utf-8")
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
