"""The plan command line: exit codes, stdout/stderr separation, JSON shape, --target.

DESIGN section 3: 0 success (no changes with --detailed-exitcode), 1 any error
(usage errors too: click's 2 is mapped to 1), 2 changes with --detailed-exitcode.
Data goes to stdout, messages to stderr.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from harness.project import make_project, run_cli
from harness.servers import JsWriteCounter, SingleServer, unique_name
from test_apply import consumer_doc, docs, stream_doc

if TYPE_CHECKING:
    from harness.project import TestProject

DAY = 86_400 * 10**9
CHANGE_KEYS = {"action", "kind", "name", "stream", "account", "destructive", "reason", "diff"}
SUMMARY_KEYS = {"create", "update", "replace", "delete", "noop"}


@pytest.fixture
def project(tmp_path: Path, nats_server: SingleServer) -> TestProject:
    return make_project(tmp_path, nats_server.url)


def test_detailed_exitcode(project: TestProject) -> None:
    name = unique_name("EXIT")
    project.write("a.yaml", docs(stream_doc(name), consumer_doc(name, "c")))
    code, _out, err = project.cli("plan", "--detailed-exitcode")
    assert code == 2, err
    assert "Plan: 2 to create" in err
    code, _, err = project.cli("plan")
    assert code == 0, err  # without the flag, changes are still success
    code, _, err = project.cli("apply", "--auto-approve")
    assert code == 0, err
    code, _, err = project.cli("plan", "--detailed-exitcode")
    assert code == 0, err
    assert "No changes. 2 resource(s) up to date." in err


def test_plan_json_is_the_design_object_and_alone_on_stdout(
    nats_server: SingleServer, project: TestProject
) -> None:
    name, new = unique_name("JSON"), unique_name("JNEW")
    project.write("a.yaml", docs(stream_doc(name, max_age="7d"), consumer_doc(name, "c")))
    code, _, err = project.cli("apply", "--auto-approve")
    assert code == 0, err
    project.write("a.yaml", docs(stream_doc(name, max_age="14d"), consumer_doc(name, "c")))
    project.write("b.yaml", stream_doc(new))

    with JsWriteCounter(nats_server.url) as counter:
        code, out, err = project.cli("plan", "--format", "json", "--detailed-exitcode")
    assert counter.writes == []
    assert code == 2, err
    data = json.loads(out)  # all of stdout is the one JSON object
    assert out.endswith("}\n")
    assert err.strip() == "Plan: 1 to create, 1 to update, 0 to replace, 0 to delete, 1 unchanged."

    assert data["format_version"] == 1
    assert data["environment"] == "test"
    assert set(data["summary"]) == SUMMARY_KEYS
    assert data["summary"] == {"create": 1, "update": 1, "replace": 0, "delete": 0, "noop": 1}
    by_name = {c["name"]: c for c in data["changes"]}
    assert set(by_name) == {name, new}  # unchanged resources are counted, not listed
    for change in data["changes"]:
        assert set(change) >= CHANGE_KEYS
        assert change["kind"] in ("Stream", "Consumer")
        assert isinstance(change["destructive"], bool)
        for diff in change["diff"]:
            assert set(diff) == {"path", "before", "after"}
    update = by_name[name]
    assert update == {
        **update,
        "action": "update",
        "kind": "Stream",
        "stream": None,
        "account": None,
        "destructive": False,
        "reason": "changed",
        "diff": [{"path": "max_age", "before": 7 * DAY, "after": 14 * DAY}],
    }
    create = by_name[new]
    assert create["action"] == "create"
    assert {"path": "subjects", "before": None, "after": [f"{new.lower()}.>"]} in create["diff"]


def test_plan_out_writes_the_same_object(project: TestProject) -> None:
    name = unique_name("OUT")
    project.write("a.yaml", stream_doc(name))
    code, out, err = project.cli("plan", "--format", "json", "--out", "plan.json")
    assert code == 0, err
    saved = json.loads((project.root / "plan.json").read_text())
    shown = json.loads(out)
    saved.pop("created_at"), shown.pop("created_at")
    assert saved == shown
    assert "plan saved to plan.json" in err


def test_plan_out_to_an_unwritable_place_is_one_line(project: TestProject) -> None:
    project.write("a.yaml", stream_doc(unique_name("NOWRITE")))
    code, _, err = project.cli("plan", "--out", "no/such/dir/plan.json")
    assert code == 1
    assert err.splitlines()[-1].startswith("no/such/dir/plan.json: cannot write the plan file")
    assert "Traceback" not in err


def test_markdown_format(project: TestProject) -> None:
    name = unique_name("MD")
    project.write("a.yaml", stream_doc(name))
    code, out, err = project.cli("plan", "--format", "markdown")
    assert code == 0, err
    assert out.startswith("### jsops plan: `test`\n")
    assert f"| `+` | `Stream {name}` | create |" in out


def test_target_limits_the_plan_to_a_stream_and_its_consumers(project: TestProject) -> None:
    a, b = unique_name("TA"), unique_name("TB")
    project.write(
        "a.yaml",
        docs(stream_doc(a), consumer_doc(a, "c1"), consumer_doc(a, "c2")),
    )
    project.write("b.yaml", docs(stream_doc(b), consumer_doc(b, "c1")))
    code, out, err = project.cli("plan", "--format", "json", "--target", f"Stream/{a}")
    assert code == 0, err
    planned = sorted((c["kind"], c["name"], c["stream"]) for c in json.loads(out)["changes"])
    assert planned == [("Consumer", "c1", a), ("Consumer", "c2", a), ("Stream", a, None)]

    code, out, err = project.cli("plan", "--format", "json", "--target", f"Consumer/{b}/c1")
    assert code == 0, err
    planned = sorted((c["kind"], c["name"], c["stream"]) for c in json.loads(out)["changes"])
    assert planned == [("Consumer", "c1", b)]

    code, _, err = project.cli("apply", "--auto-approve", "--target", f"Stream/{b}")
    assert code == 0, err
    code, out, err = project.cli("plan", "--format", "json")
    assert sorted(c["name"] for c in json.loads(out)["changes"]) == sorted([a, "c1", "c2"])


@pytest.mark.parametrize(
    "target",
    ["Stream", "Stream/", "stream/X", "Consumer/X", "Consumer/S/C/D", "Bogus/X", "X"],
)
def test_malformed_target_is_a_usage_error(project: TestProject, target: str) -> None:
    project.write("a.yaml", stream_doc(unique_name("BADT")))
    for command in ("plan", "apply"):
        code, out, err = project.cli(command, "--target", target)
        assert code == 1
        assert out == ""
        assert err.strip() == (
            f'invalid target "{target}": use Stream/NAME, Consumer/STREAM/NAME, '
            "KeyValue/BUCKET, ObjectStore/BUCKET or Account/NAME"
        )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["plan", "--bogus"], "No such option '--bogus'", id="unknown option"),
        pytest.param(["bogus"], "No such command 'bogus'", id="unknown command"),
        pytest.param(["plan", "--format", "xml"], "'xml' is not one of", id="bad format"),
        pytest.param(["apply", "--auto-aprove"], "No such option", id="misspelled flag"),
        pytest.param(["plan", "extra"], "unexpected extra argument", id="extra argument"),
        pytest.param(["plan", "-e"], "requires an argument", id="missing value"),
        pytest.param(["plan", "-e", "nope"], 'unknown environment "nope"', id="unknown env"),
    ],
)
def test_usage_errors_exit_1_without_traceback(
    project: TestProject, args: list[str], message: str
) -> None:
    code, out, err = project.cli(*args)
    assert code == 1, (out, err)
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize("args", [["--help"], ["plan", "--help"], ["apply", "-h"], ["--version"]])
def test_help_and_version_exit_0(tmp_path: Path, args: list[str]) -> None:
    code, out, err = run_cli(args, cwd=tmp_path)
    assert code == 0, err
    assert out


def test_manifest_errors_exit_1_before_any_request(
    nats_server: SingleServer, project: TestProject
) -> None:
    project.write("a.yaml", stream_doc(unique_name("BAD"), max_age="seven days"))
    with JsWriteCounter(nats_server.url) as counter:
        for args in (("plan",), ("plan", "--format", "json"), ("apply", "--auto-approve")):
            code, out, err = project.cli(*args)
            assert code == 1
            assert out == ""
            assert err.startswith("manifests/a.yaml:")
            assert "Traceback" not in err
    assert counter.requests == []


def test_bare_command_shows_help_and_exits_1(tmp_path: Path) -> None:
    code, out, err = run_cli([], cwd=tmp_path)
    assert code == 1
    assert out == ""
    assert err.startswith("Usage: jsops [OPTIONS] COMMAND")
