"""planfile: a plan survives JSON (the saved plan file), and odd files are refused."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from reconciler.diff import FieldDiff
from reconciler.errors import JsopsError
from reconciler.models import Address, Kind
from reconciler.plan import Action, Change, Plan, Reason
from reconciler.planfile import (
    FORMAT_VERSION,
    _Reader,
    decode_object,
    dumps,
    plan_from_json,
    plan_to_json,
    read_plan,
    read_saved_plan,
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


def test_a_plan_file_in_any_json_layout_reads_as_written(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    for text in (
        json.dumps(plan_to_json(PLAN)),  # one line
        json.dumps(plan_to_json(PLAN), indent=3),  # as `jq .` leaves it
        "\n\t " + json.dumps({**plan_to_json(PLAN), "unchanged": []}) + " \r\n",
        json.dumps({**plan_to_json(PLAN), "changes": []}),
    ):
        path.write_text(text)
        assert read_plan(path) == plan_from_json(json.loads(text))
    assert len(read_plan(path).changes) == 1  # the last one: no changes, one unchanged


BROKEN_JSON = ['{"changes": [1 2]}', '{"changes": [], }', '{"a": 1} {}', '{"changes": [{}',
               "{1: 2}", "{", '{"a": "no end\n"}', '{"a": tru\ne}', ""]  # fmt: skip


@pytest.mark.parametrize(
    "text",
    [
        '{"changes": [], "changes": [1, 2]}',
        '{"environment": "dev", "changes": [], "environment": "prod"}',
    ],
)
def test_a_top_level_key_written_twice_is_refused(text: str, tmp_path: Path) -> None:
    """json.loads keeps the last, a reader that stops early (the header of a large plan
    file) the first: a plan file that could mean two things means none."""
    with pytest.raises(ValueError, match=r"the key '(changes|environment)' comes twice \(at char"):
        decode_object(_Reader(io.BytesIO(text.encode())), each=lambda i: i, lists=("changes",))
    path = tmp_path / "plan.json"
    path.write_text(text)
    with pytest.raises(JsopsError, match=r"not a jsops plan file \(the key"):
        read_saved_plan(path)


@pytest.mark.parametrize("text", BROKEN_JSON)
def test_broken_json_is_refused_as_json_loads_refuses_it(tmp_path: Path, text: str) -> None:
    with pytest.raises(ValueError):
        json.loads(text)
    path = tmp_path / "plan.json"
    path.write_text(text)
    with pytest.raises(JsopsError, match=r"not a jsops plan file \(.*char \d+"):
        read_plan(path)


def test_a_file_of_another_version_is_named_so_before_its_changes_are_read(
    tmp_path: Path,
) -> None:
    path = tmp_path / "plan.json"
    data = plan_to_json(PLAN)
    data["changes"][0]["action"] = "explode"  # a change this version cannot read ...
    path.write_text(json.dumps({**data, "format_version": 99}))  # ... in a newer file
    with pytest.raises(JsopsError, match="format_version 99; this jsops reads"):
        read_plan(path)
    path.write_text(json.dumps(data))
    with pytest.raises(JsopsError, match="unknown action 'explode'"):
        read_plan(path)
    data["changes"][0] = ["not", "a", "change"]
    path.write_text(json.dumps(data))
    with pytest.raises(JsopsError, match="plan file is malformed"):
        read_plan(path)


JSON_TEXTS = [
    '{"changes": [{"a": [1,\n2]}, 3.5e1\n, "x"], "n": 12\n, "unchanged": []}',
    '{\n  "changes": [\n    {\n      "deep": {"k": [true, false, null]}\n    }\n  ],\n'
    '  "s": "a \\"quoted\\" \\u00e9 value"\n}\n',
    '{"changes": {"not": "a list"}, "changes2": [1]}',
    '{"x": {"k": 1, "k": 2}, "changes": [{"a": 1, "a": 2}]}',  # below the top: json.loads
    '{"k": "\u00e9\u20ac\U0001f600", "changes": [-0.0, 1e400]}',
    "  [1, 2]  ",
    "{}",
    "7",
]


@pytest.mark.parametrize("text", JSON_TEXTS)
@pytest.mark.parametrize("chunk", [1, 7, 1 << 16])
def test_a_file_decodes_as_json_loads_decodes_it(text: str, chunk: int) -> None:
    reader = _Reader(io.BytesIO(text.encode()), chunk=chunk)
    got = decode_object(reader, each=lambda item: ("made", item), lists=("changes",))
    want = json.loads(text)
    if isinstance(want, dict) and isinstance(want.get("changes"), list):
        want["changes"] = [("made", item) for item in want["changes"]]
    assert got == want
    assert reader.digest.hexdigest() == hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("text", BROKEN_JSON)
@pytest.mark.parametrize("chunk", [1, 5, 1 << 16])
def test_broken_json_is_refused_read_in_any_size_of_piece(text: str, chunk: int) -> None:
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError, match=r"at char \d+"):
        decode_object(
            _Reader(io.BytesIO(text.encode()), chunk), each=lambda item: item, lists=("changes",)
        )


_SHAPES = [
    pytest.param(lambda d: d["changes"][0]["diff"][0].update(path=5),
                 "change 1: diff.0 has no path string", id="diff-path-number"),
    pytest.param(lambda d: d["changes"][0].update(loss={"messages": "x"}),
                 "change 1: loss holds something other than counts", id="loss-not-counts"),
    pytest.param(lambda d: d["changes"][0].update(loss="zz"), "change 1: loss is a string",
                 id="loss-string"),
    pytest.param(lambda d: d["changes"][1].update(name={"a": 1}), "change 2: name is an object",
                 id="name-object"),
    pytest.param(lambda d: d.update(environment=["x"]), "environment is a list",
                 id="environment-list"),
    pytest.param(lambda d: d["changes"][0].update(replace_reasons="abc"),
                 "change 1: replace_reasons is a string", id="reasons-string"),
    pytest.param(lambda d: d.update(unmanaged=[1]), "unmanaged holds something other than strings",
                 id="unmanaged-numbers"),
    pytest.param(lambda d: d.update(identity={"server_name": {"x": 1}}),
                 "identity holds something other than strings", id="identity-object"),
    pytest.param(lambda d: d["changes"].insert(0, "x"),
                 "change 1: a change is a string, not an object", id="change-string"),
]  # fmt: skip


@pytest.mark.parametrize(("edit", "message"), _SHAPES)
def test_a_field_of_the_wrong_shape_is_named_not_an_internal_error(
    tmp_path: Path, edit: Any, message: str
) -> None:
    """A plan file is input from anywhere: each field of the wrong type is one line naming
    the file, the change and the field (it was ``internal error: ValueError`` where it
    was printed, or printed as ``Stream {'a': 1}``)."""
    from harness.project import run_cli

    data = plan_to_json(PLAN)
    edit(data)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data))
    for fmt in ("text", "markdown", "json"):
        code, out, err = run_cli(["show", str(path), "--format", fmt], cwd=tmp_path)
        assert code == 1 and out == "", (fmt, out)
        assert err == f"{path}: plan file is malformed: {message}\n", fmt


def test_a_deeply_nested_plan_file_is_refused_in_one_line(tmp_path: Path) -> None:
    from harness.project import run_cli

    path = tmp_path / "deep.json"
    path.write_text('{"format_version": 1, "changes": [' + "[" * 100_000 + "]" * 100_000 + "]}")
    code, out, err = run_cli(["show", str(path)], cwd=tmp_path)
    assert (code, out) == (1, "")
    assert err == f"{path}: not a jsops plan file (nested too deeply)\n"
