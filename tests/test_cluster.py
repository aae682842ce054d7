"""A 3-node cluster: R3 streams with placement, scaling in place, replica limits."""

from __future__ import annotations

import json

from harness.manifests import stream_doc
from harness.project import make_project
from harness.servers import JsWriteCounter, js_request_sync, unique_name

from reconciler.plan import Action

STREAM = """
    apiVersion: jsops/v1
    kind: Stream
    metadata: {{name: {name}}}
    spec:
      subjects: ["{subject}.>"]
      num_replicas: {replicas}
      placement: {{cluster: c1}}
    ---
    apiVersion: jsops/v1
    kind: Consumer
    metadata: {{name: worker, stream: {name}}}
    spec: {{ack_policy: explicit}}
"""


def test_r3_with_placement_and_scaling_in_place(nats_cluster, tmp_path) -> None:
    project = make_project(tmp_path, nats_cluster.url)
    name = unique_name("CL")
    project.write("s.yaml", STREAM.format(name=name, subject=name.lower(), replicas=1))
    _plan, result = project.apply()
    assert result is not None and result.ok
    assert all(c.action is Action.NOOP for c in project.plan().changes)

    project.write("s.yaml", STREAM.format(name=name, subject=name.lower(), replicas=3))
    plan = project.plan()
    change = next(c for c in plan.changes if c.address.kind == "Stream")
    assert change.action is Action.UPDATE
    assert [(d.path, d.before, d.after) for d in change.diff] == [("num_replicas", 1, 3)]
    created = js_request_sync(nats_cluster.url, f"$JS.API.STREAM.INFO.{name}")["created"]
    _plan, result = project.apply()
    assert result is not None and result.ok
    info = js_request_sync(nats_cluster.url, f"$JS.API.STREAM.INFO.{name}")
    assert info["config"]["num_replicas"] == 3 and info["created"] == created
    plan = project.plan()
    assert [(str(c.address), c.diff) for c in plan.changes if c.diff] == []


def test_more_replicas_than_servers_is_a_plan_error(nats_cluster, tmp_path) -> None:
    project = make_project(tmp_path, nats_cluster.url)
    name = unique_name("CL")
    project.write("s.yaml", STREAM.format(name=name, subject=name.lower(), replicas=5))
    code, out, err = project.cli("plan")
    assert code == 1 and out == "", (code, out, err)
    assert err.strip().endswith("num_replicas 5: the cluster has 3 servers"), err


def test_replicas_on_a_standalone_server_is_a_plan_error(nats_server, tmp_path) -> None:
    project = make_project(tmp_path, nats_server.url)
    name = unique_name("SA")
    project.write("s.yaml", STREAM.format(name=name, subject=name.lower(), replicas=3))
    code, _out, err = project.cli("plan")
    assert code == 1
    assert "s.yaml:6:3: num_replicas 3: the server is not clustered" in err, err


def test_saved_plan_is_bound_to_the_cluster_not_the_node(nats_cluster, tmp_path) -> None:
    """A plan made through one node applies through another node of the same cluster;
    an environment pinned to another cluster refuses to run (and writes nothing)."""
    n1, n2 = nats_cluster.urls[0], nats_cluster.urls[1]
    project = make_project(
        tmp_path, n1, envs={"test": {"servers": [n1], "expect": {"cluster": "c1"}}}
    )
    name = unique_name("NODES")
    project.write("s.yaml", stream_doc(name, num_replicas=3))
    code, _, err = project.cli("plan", "--out", "plan.json")
    assert code == 0, err
    assert json.loads((project.root / "plan.json").read_text())["identity"]["cluster"] == "c1"
    code, _, err = project.cli("apply", "plan.json", "--server", n2)
    assert code == 0, err

    pinned = make_project(
        tmp_path, n1, envs={"test": {"servers": [n1], "expect": {"cluster": "east"}}}
    )
    pinned.write("s.yaml", stream_doc(unique_name("EAST")))
    with JsWriteCounter(n1) as counter:
        code, _, err = pinned.cli("apply", "--auto-approve")
    assert code == 1
    assert 'expects cluster "east" but found c1' in err
    assert counter.writes == []
