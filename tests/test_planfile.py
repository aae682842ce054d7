"""planfile: a plan survives JSON (the saved plan file), and odd files are refused."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from reconciler.diff import FieldDiff
from reconciler.errors import JsopsError
from reconciler.models import Address, Kind
from reconciler.plan import Action, Change, Plan, Reason
from reconciler.planfile import (
    FORMAT_VERSION,
    dumps,
    plan_from_json,
    plan_to_json,
    read_plan,
    write_plan,
)

PLAN = Plan(
    "dev",
    "shop",
    (
        Change(
            Address(Kind.STREAM, "ORDERS"),
            Action.UPDATE,
            diff=(FieldDiff("max_age", 1, 2),),
            reason=Reason.CHANGED,
            live_digest="abc",
            location="manifests/orders.yaml:3:9",
            send={"name": "ORDERS", "max_age": 2},
        ),
        Change(
            Address(Kind.CONSUMER, "processor", stream="ORDERS", account="ACME"),
            Action.REPLACE,
            reason=Reason.STREAM_REPLACED,
            destructive=True,
            loss={"num_pending": 3, "num_ack_pending": 0, "num_redelivered": 0},
            depends_on=("Stream ORDERS",),
        ),
        Change(Address(Kind.STREAM, "LOGS"), Action.NOOP),
    ),
    api_level=3,
    server_version="2.12.0",
    prune=True,
    targets=("Stream/ORDERS",),
    declared=3,
)


def test_a_plan_survives_its_json() -> None:
    again = plan_from_json(json.loads(dumps(PLAN)))
    assert again == PLAN
    assert again.changes[1].address.kind is Kind.CONSUMER  # enums come back as enums


def test_the_json_has_the_documented_shape() -> None:
    data = plan_to_json(PLAN)
    assert data["format_version"] == FORMAT_VERSION
    assert data["environment"] == "dev"
    assert data["summary"] == {"create": 0, "update": 1, "replace": 1, "delete": 0, "noop": 1}
    first = data["changes"][0]
    assert {k: first[k] for k in ("action", "kind", "name", "stream", "account")} == {
        "action": "update", "kind": "Stream", "name": "ORDERS", "stream": None, "account": None,
    }  # fmt: skip
    assert first["diff"] == [{"path": "max_age", "before": 1, "after": 2}]
    assert [c["name"] for c in data["unchanged"]] == ["LOGS"]  # noop changes kept apart


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        pytest.param({"format_version": 99}, "format_version 99; this jsops reads format_version",
                     id="an unknown format version"),
        pytest.param({"changes": None, "format_version": None}, "not a jsops plan",
                     id="not a plan"),
    ],
)  # fmt: skip
def test_unreadable_plans_are_refused_with_a_sentence(edit: dict, message: str) -> None:
    data = {**plan_to_json(PLAN), **edit}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(JsopsError, match=message):
        plan_from_json(data)


@pytest.mark.parametrize(
    ("key", "value"),
    [("action", "explode"), ("kind", "Queue"), ("reason", "because")],
)
def test_an_unknown_enum_value_is_named(key: str, value: str) -> None:
    data = plan_to_json(PLAN)
    data["changes"][0][key] = value
    with pytest.raises(JsopsError, match=f"unknown {key} '{value}'"):
        plan_from_json(data)


def test_readers_ignore_keys_they_do_not_know() -> None:
    data = plan_to_json(PLAN)
    data["from_the_future"] = True
    data["changes"][0]["also_new"] = [1, 2]
    assert plan_from_json(data) == PLAN


def test_the_plan_file_is_private_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text("old")
    os.chmod(path, 0o644)
    write_plan(PLAN, path)
    assert path.stat().st_mode & 0o777 == 0o600  # it holds the exact configs to send
    assert read_plan(path) == PLAN


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "not a jsops plan file"), ("[1]", "not a jsops plan file"), ("{}", "not a jsops plan")],
)
def test_bad_plan_files_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "plan.json"
    path.write_text(text)
    with pytest.raises(JsopsError, match=message) as err:
        read_plan(path)
    assert str(err.value).startswith(f"{path}: ")
    with pytest.raises(JsopsError, match="plan file not found"):
        read_plan(tmp_path / "missing.json")
