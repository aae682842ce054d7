"""``jsops graph``: the topology from the manifests (no server), and with ``--live``
what only the server has; ``jsops show PLANFILE`` prints a saved plan as plan did."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from harness.project import TestProject, make_project
from harness.servers import SingleServer, js_request_sync, unique_name
from test_apply import consumer_doc, docs, stream_doc

from reconciler.graph import Entry, build_graph, to_dot, to_mermaid
from reconciler.models import Address
from reconciler.server import free_port


def _edges(mermaid: str) -> set[tuple[str, str, str]]:
    """(from label, to label, edge label) of a Mermaid flowchart."""
    labels = dict(re.findall(r'^\s*(n\d+)\W+"([^"]+)"', mermaid, re.MULTILINE))
    found = set()
    for src, label, dst in re.findall(r"^\s*(n\d+) -->(?:\|([^|]*)\|)? (n\d+)$", mermaid, re.M):
        found.add((labels[src], labels[dst], label))
    return found


def test_graph_draws_mirrors_sources_domains_accounts_consumers_and_buckets() -> None:
    graph = build_graph(
        [
            Entry(Address("Stream", "ORDERS"), {"subjects": ["orders.>"]}),
            Entry(Address("Stream", "COPY"), {"mirror": {"name": "ORDERS"}}),
            Entry(
                Address("Stream", "AGG", account="ACME"),
                {"sources": [{"name": "EU", "external": {"api": "$JS.eu.API"}}]},
            ),
            Entry(Address("Consumer", "proc", stream="ORDERS")),
            Entry(Address("Stream", "KV_config"), {"mirror": {"name": "KV_base"}}),
        ]
    )
    mermaid = to_mermaid(graph)
    assert _edges(mermaid) == {
        ("Stream ORDERS", "Stream COPY", "mirror"),
        ("Stream EU", "Stream AGG", "source"),
        ("Stream ORDERS", "Consumer proc", ""),
        ("KeyValue base", "KeyValue config", "mirror"),
    }
    assert re.search(r'subgraph g\d+\["account ACME"\]', mermaid)
    assert re.search(r'subgraph g\d+\["domain eu"\]', mermaid)
    dot = to_dot(graph)
    assert dot.startswith("digraph jsops {") and dot.rstrip().endswith("}")
    assert 'label="domain eu";' in dot and 'label="account ACME";' in dot
    assert dot.count(" -> ") == 4


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")
def test_dot_output_is_read_by_graphviz() -> None:
    graph = build_graph([Entry(Address("Stream", "A"), {"sources": [{"name": 'B "x"'}]})])
    run = subprocess.run(["dot", "-Tsvg"], input=to_dot(graph), capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


@pytest.fixture
def project(tmp_path: Path, nats_server: SingleServer) -> TestProject:
    return make_project(tmp_path, nats_server.url)


def _chain(origin: str, mirror: str) -> str:
    return docs(
        stream_doc(origin),
        stream_doc(mirror, subjects=None, mirror={"name": origin}),
        consumer_doc(origin, "worker"),
    )


def test_graph_command_needs_no_server(tmp_path: Path) -> None:
    project = make_project(tmp_path, f"nats://127.0.0.1:{free_port()}")
    project.write("a.yaml", _chain("ORIGIN", "COPY"))
    code, out, err = project.cli("graph")
    assert code == 0, err
    assert out.startswith("flowchart LR\n")
    assert _edges(out) == {
        ("Stream ORIGIN", "Stream COPY", "mirror"),
        ("Stream ORIGIN", "Consumer worker", ""),
    }
    assert "3 node(s), 2 edge(s)" in err
    code, out, err = project.cli("graph", "--format", "dot")
    assert code == 0, err
    assert out.startswith("digraph jsops {")
    assert 'n0 -> n1 [label="mirror"];' in out


def test_graph_of_invalid_manifests_is_located_errors(tmp_path: Path) -> None:
    project = make_project(tmp_path, "nats://127.0.0.1:1")
    project.write("a.yaml", stream_doc("BAD", max_age="soon"))
    code, out, err = project.cli("graph")
    assert code == 1 and out == ""
    assert "manifests/a.yaml:4:" in err


def test_graph_live_adds_what_only_the_server_has(
    project: TestProject, nats_server: SingleServer
) -> None:
    origin, mirror, stray = unique_name("GO"), unique_name("GM"), unique_name("GSTRAY")
    project.write("a.yaml", _chain(origin, mirror))
    reply = js_request_sync(
        nats_server.url,
        f"$JS.API.STREAM.CREATE.{stray}",
        {"name": stray, "subjects": [f"{stray.lower()}.>"], "sources": [{"name": origin}]},
    )
    assert "error" not in reply, reply
    try:
        code, out, err = project.cli("graph", "--live")
    finally:
        # its origin never exists: the server would retry the source's consumer
        # (CONSUMER.CREATE) for the rest of the run, a write every other test would see
        js_request_sync(nats_server.url, f"$JS.API.STREAM.DELETE.{stray}", None)
    assert code == 0, err
    assert (f"Stream {origin}", f"Stream {stray}", "source") in _edges(out)
    stray_id = re.search(rf'(n\d+)\[\("Stream {stray}"\)\]', out).group(1)  # type: ignore[union-attr]
    assert re.search(rf"class [n0-9,]*\b{stray_id}\b[n0-9,]* live", out)


def test_show_prints_a_saved_plan_in_every_format(project: TestProject) -> None:
    name = unique_name("SHOW")
    project.write("a.yaml", docs(stream_doc(name, max_age="7d"), consumer_doc(name, "c")))
    code, plan_md, err = project.cli("plan", "--format", "markdown", "--out", "plan.json")
    assert code == 0, err
    code, plan_text, _ = project.cli("plan")
    saved = (project.root / "plan.json").read_text()

    code, out, err = project.cli("show", "plan.json", "--format", "json")
    assert code == 0, err
    assert json.loads(out) == json.loads(saved)
    assert "Plan: 2 to create" in err
    code, out, _ = project.cli("show", "plan.json", "--format", "markdown")
    assert out == plan_md
    code, out, _ = project.cli("show", "plan.json")
    assert out == plan_text
    assert f"+ Stream {name}" in out and "max_age: 7d" in out


def test_show_of_a_missing_or_bad_file_is_one_line(project: TestProject) -> None:
    code, out, err = project.cli("show", "nope.json")
    assert code == 1 and out == ""
    assert err.strip() == "nope.json: plan file not found"
    (project.root / "bad.json").write_text('{"format_version": 99, "changes": []}')
    code, _, err = project.cli("show", "bad.json")
    assert code == 1
    assert "format_version 99" in err and "Traceback" not in err


def test_graph_draws_buckets_as_buckets(tmp_path: Path) -> None:
    project = make_project(tmp_path, "nats://127.0.0.1:1")
    project.write(
        "kv.yaml",
        """
        apiVersion: jsops/v1
        kind: KeyValue
        metadata: {name: base}
        spec: {history: 5}
        ---
        apiVersion: jsops/v1
        kind: KeyValue
        metadata: {name: replica}
        spec: {mirror: {name: base}}
        ---
        apiVersion: jsops/v1
        kind: ObjectStore
        metadata: {name: files}
        ---
        apiVersion: jsops/v1
        kind: KeyValue
        metadata: {name: merged}
        spec: {sources: [{name: base}, {name: base, domain: edge}]}
        """,
    )
    code, out, err = project.cli("graph")
    assert code == 0, err
    assert _edges(out) == {
        ("KeyValue base", "KeyValue replica", "mirror"),
        ("KeyValue base", "KeyValue merged", "source"),
    }
    assert '[["ObjectStore files"]]' in out
    assert '[["KeyValue base"]]' in out
    assert re.search(r'subgraph g\d+\["domain edge"\]', out)
