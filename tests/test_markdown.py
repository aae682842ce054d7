"""The markdown plan always fits one pull-request comment (DESIGN section 8).

Large plans are built with ``build_plan`` from real manifests and a live state held in
memory (fast, and the same code path as a real plan); the mirror diagram and the failed
plans run the CLI against real servers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from harness.project import TestProject, make_project
from harness.servers import SingleServer, unique_name
from test_apply import consumer_doc, docs, stream_doc

from reconciler import render
from reconciler.errors import Location
from reconciler.live import LiveState
from reconciler.models import Address, Resource
from reconciler.models.envelope import StreamManifest
from reconciler.plan import Plan, build_plan
from reconciler.server import free_port

LIMIT = 65_536


def _big_plan(creates: int, deletes: int) -> Plan:
    """``creates`` new streams and ``deletes`` owned live streams no manifest declares."""
    desired = [
        Resource(
            Address("Stream", f"NEW_{i:05d}"),
            StreamManifest.model_validate(
                {
                    "apiVersion": "jsops/v1",
                    "kind": "Stream",
                    "metadata": {"name": f"NEW_{i:05d}"},
                    "spec": {"subjects": [f"new.{i}"], "max_age": "7d", "max_bytes": "1GiB"},
                }
            ),
            Location("manifests/streams.yaml", 1 + 5 * i, 1),
        )
        for i in range(creates)
    ]
    live_streams: dict[str, dict[str, Any]] = {
        f"OLD_{i:05d}": {
            "config": {
                "name": f"OLD_{i:05d}",
                "subjects": [f"old.{i}"],
                "metadata": {"jsops.owner": "big"},
            },
            "state": {"messages": 10 + i, "bytes": 4096, "consumer_count": 0},
        }
        for i in range(deletes)
    }
    live = LiveState(5, "2.15.1", None, 1, live_streams, {}, {})
    return build_plan(desired, live, project="big", environment="test", prune=True)


def test_a_2000_stream_plan_fits_one_comment_and_says_2000() -> None:
    plan = _big_plan(2000, 150)
    text = render.render_markdown(plan)
    assert len(text) < LIMIT
    assert "Plan: 2000 to create, 0 to update, 0 to replace, 150 to delete" in text
    assert "| Stream | 2000 | 0 | 0 | 150 | 0 |" in text  # the summary per kind and action
    # every destructive change is listed, and before any other change
    first_create = text.index("`Stream NEW_")
    for i in range(150):
        assert text.index(f"`Stream OLD_{i:05d}`") < first_create
    assert "Cut to fit one comment" in text
    assert "`jsops plan --format json`" in text
    assert text.rstrip().endswith("</sub>")


def test_destructive_changes_beyond_one_comment_are_cut_too() -> None:
    plan = _big_plan(0, 3000)
    text = render.render_markdown(plan)
    assert len(text) < LIMIT
    assert "3000 destructive change(s)" in text
    assert "of 3000 changes are not listed" in text


def test_a_small_plan_is_not_cut() -> None:
    text = render.render_markdown(_big_plan(3, 1))
    assert "Cut to fit" not in text
    assert text.count("<details><summary>create") == 3


@pytest.fixture
def project(tmp_path: Path, nats_server: SingleServer) -> TestProject:
    return make_project(tmp_path, nats_server.url)


def test_markdown_plan_draws_the_mirror_chain(project: TestProject) -> None:
    origin, mirror, both = unique_name("ORIG"), unique_name("MIRR"), unique_name("SRCS")
    project.write(
        "chain.yaml",
        docs(
            stream_doc(origin),
            stream_doc(mirror, subjects=None, mirror={"name": origin}),
            stream_doc(
                both, subjects=None, sources=[{"name": origin}, {"name": "X", "domain": "eu"}]
            ),
            consumer_doc(mirror, "reader"),
        ),
    )
    code, out, err = project.cli("plan", "--format", "markdown")
    assert code == 0, err
    diagram = out.split("```mermaid\n", 1)[1].split("```", 1)[0]
    ids = {
        label: line.split("[", 1)[0].split("(", 1)[0].strip()
        for line in diagram.splitlines()
        for label in (f"Stream {origin}", f"Stream {mirror}", f"Stream {both}", "Stream X")
        if f'"{label}"' in line
    }
    assert len(ids) == 4, diagram
    assert f"{ids[f'Stream {origin}']} -->|mirror| {ids[f'Stream {mirror}']}" in diagram
    assert f"{ids[f'Stream {origin}']} -->|source| {ids[f'Stream {both}']}" in diagram
    assert f"{ids['Stream X']} -->|source| {ids[f'Stream {both}']}" in diagram
    assert 'subgraph g1["domain eu"]' in diagram or '["domain eu"]' in diagram
    assert "Consumer reader" in diagram


def test_failed_plan_still_writes_a_comment_with_the_locations(project: TestProject) -> None:
    project.write("bad.yaml", stream_doc("BAD", max_age="7 days", retention="forever"))
    code, out, err = project.cli("plan", "--format", "markdown")
    assert code == 1
    assert out.startswith("### jsops plan: `test` (failed)")
    assert "2 error(s) in the manifests" in out
    assert "`manifests/bad.yaml:4:" in out
    assert "max_age" in out and "retention" in out
    assert "manifests/bad.yaml:4:" in err  # stderr still has the usual lines


def test_failed_connection_still_writes_a_comment(tmp_path: Path) -> None:
    project = make_project(tmp_path, f"nats://127.0.0.1:{free_port()}")
    project.write("a.yaml", stream_doc(unique_name("UNREACH")))
    code, out, err = project.cli("plan", "-e", "test", "--format", "markdown")
    assert code == 1
    assert out.startswith("### jsops plan: `test` (failed)")
    assert "The plan failed:" in out
    assert err.strip().splitlines()[-1] in out.replace("\\|", "|")
    assert "Traceback" not in out + err
