"""Lists the server treats as sets (``subjects``, ``filter_subjects``) compare as sets:
a reordering plans ``noop`` and apply sends nothing, in plans, drift and saved plans;
a real change shows what was added and removed."""

from __future__ import annotations

from pathlib import Path

from harness.project import make_project
from harness.servers import JsWriteCounter, SingleServer, js_request_sync, unique_name

from reconciler.plan import Action


def _text(stream: str, subjects: list[str], filters: list[str], max_age: str = "0s") -> str:
    return (
        "apiVersion: jsops/v1\nkind: Stream\n"
        f"metadata: {{name: {stream}}}\nspec: {{subjects: {subjects}, max_age: {max_age}}}\n"
        "---\napiVersion: jsops/v1\nkind: Consumer\n"
        f"metadata: {{name: c, stream: {stream}}}\nspec: {{filter_subjects: {filters}}}\n"
    )


def test_reordered_subjects_and_filters_plan_noop_and_apply_sends_nothing(
    nats_server: SingleServer, tmp_path: Path
) -> None:
    stream = unique_name("SET")
    p = stream.lower()
    subjects = [f"{p}.a.>", f"{p}.b.>", f"{p}.c"]
    filters = [f"{p}.a.x", f"{p}.b.y"]
    project = make_project(tmp_path, nats_server.url)
    project.write("s.yaml", _text(stream, subjects, filters))
    _plan, result = project.apply()
    assert result is not None and result.ok

    project.write("s.yaml", _text(stream, subjects[::-1], filters[::-1]))
    plan = project.plan()
    assert [(str(c.address), c.diff) for c in plan.changes if c.action is not Action.NOOP] == []
    with JsWriteCounter(nats_server.url) as counter:
        _plan, result = project.apply()
    assert result is None and counter.writes == []

    # drift: the live order changed out of band (same members) is no drift either
    live = js_request_sync(nats_server.url, f"$JS.API.STREAM.INFO.{stream}")["config"]
    reply = js_request_sync(
        nats_server.url,
        f"$JS.API.STREAM.UPDATE.{stream}",
        {**live, "subjects": [subjects[1], subjects[2], subjects[0]]},
    )
    assert "error" not in reply, reply
    assert all(c.action is Action.NOOP for c in project.plan().changes)

    # a saved plan stays valid when only the live order moves after it was made
    project.write("s.yaml", _text(stream, subjects, filters, max_age="1h"))
    code, _out, err = project.cli("plan", "--out", "plan.json")
    assert code == 0, err
    live = js_request_sync(nats_server.url, f"$JS.API.STREAM.INFO.{stream}")["config"]
    reply = js_request_sync(
        nats_server.url, f"$JS.API.STREAM.UPDATE.{stream}", {**live, "subjects": subjects[::-1]}
    )
    assert "error" not in reply, reply
    code, _out, err = project.cli("apply", "plan.json", "--auto-approve")
    assert code == 0, err
    js_request_sync(nats_server.url, f"$JS.API.STREAM.DELETE.{stream}")


def test_text_diff_of_a_set_shows_added_and_removed(
    nats_server: SingleServer, tmp_path: Path
) -> None:
    stream = unique_name("SETD")
    p = stream.lower()
    project = make_project(tmp_path, nats_server.url)
    project.write("s.yaml", _text(stream, [f"{p}.a", f"{p}.b"], [f"{p}.a"]))
    _plan, result = project.apply()
    assert result is not None and result.ok
    project.write("s.yaml", _text(stream, [f"{p}.c", f"{p}.a"], [f"{p}.a"]))
    code, out, err = project.cli("plan", "--no-color")
    assert code == 0, err
    assert f'subjects: +"{p}.c" -"{p}.b"' in out, out
    js_request_sync(nats_server.url, f"$JS.API.STREAM.DELETE.{stream}")
