"""Export / adoption: live resources made by hand become manifests; planning them shows
an ``update`` whose only diff is the owner tag, and after apply everything is ``noop``."""

from __future__ import annotations

from typing import Any

import pytest
from harness.project import make_project
from harness.servers import js_request_sync, unique_name

from reconciler.plan import Action

GiB = 1024**3
HOUR = 3600 * 10**9

STREAMS: list[Any] = [
    pytest.param({}, [], id="defaults"),
    pytest.param(
        {
            "max_age": 7 * 24 * HOUR,
            "max_bytes": 10 * GiB,
            "description": "d",
            "storage": "memory",
            "discard": "new",
            "max_msgs": 1000,
        },
        [{"ack_policy": "explicit", "max_deliver": 5, "ack_wait": 60 * 10**9}],
        id="units-and-consumer",
    ),
    pytest.param(
        {
            "max_age": 60 * 10**9,
            "compression": "s2",
            "allow_direct": True,
            "metadata": {"team": "x"},
            "consumer_limits": {"max_ack_pending": 50},
        },
        [
            {"ack_policy": "explicit"},
            {
                "deliver_subject": "dlv.{n}",
                "idle_heartbeat": 5 * 10**9,
                "flow_control": True,
                "ack_policy": "explicit",
            },
        ],
        id="derived-defaults",
    ),
    pytest.param(
        {
            "republish": {"src": ">", "dest": "rp.{n}.>"},
            "allow_msg_ttl": True,
            "subject_delete_marker_ttl": 60 * 10**9,
        },
        [
            {
                "deliver_policy": "by_start_sequence",
                "opt_start_seq": 5,
                "backoff": [10**9, 5 * 10**9],
                "max_deliver": 4,
                "ack_policy": "explicit",
                "ack_wait": 10**9,
            }
        ],
        id="flags-and-backoff",
    ),
]


def _fill(value: Any, name: str) -> Any:
    if isinstance(value, str):
        return value.replace("{n}", name.lower())
    if isinstance(value, dict):
        return {k: _fill(v, name) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, name) for v in value]
    return value


@pytest.mark.parametrize(("config", "consumers"), STREAMS)
def test_exported_resources_adopt_with_only_the_owner_tag(nats_server, tmp_path, config, consumers):
    name = unique_name("EXP")
    body = {"name": name, "subjects": [f"{name.lower()}.>"], **_fill(config, name)}
    reply = js_request_sync(nats_server.url, f"$JS.API.STREAM.CREATE.{name}", body)
    assert "error" not in reply, reply
    for i, cconfig in enumerate(consumers):
        reply = js_request_sync(
            nats_server.url,
            f"$JS.API.CONSUMER.CREATE.{name}.c{i}",
            {
                "stream_name": name,
                "action": "create",
                "config": {"durable_name": f"c{i}", **_fill(cconfig, name)},
            },
        )
        assert "error" not in reply, reply

    project = make_project(tmp_path, nats_server.url)
    code, _out, err = project.cli("export", "--out", "manifests")
    assert code == 0, err
    exported = project.root / "manifests" / f"{name}.yaml"
    text = exported.read_text()
    assert text.startswith("# yaml-language-server: $schema=")
    if config.get("max_bytes"):
        assert "max_bytes: 10GiB" in text and "max_age: 7d" in text
    assert "duplicate_window" not in text and "jsops.owner" not in text
    # keep only this test's stream (the shared server holds other tests' streams)
    for other in (project.root / "manifests").glob("*.yaml"):
        if other != exported:
            other.unlink()

    plan = project.plan()
    mine = [c for c in plan.changes if c.address.name == name or c.address.stream == name]
    assert len(mine) == 1 + len(consumers)
    for change in mine:
        assert change.action is Action.UPDATE, change
        assert [d.path for d in change.diff] == ["metadata.jsops.owner"], change.diff
    _plan, result = project.apply()
    assert result is not None and result.ok
    assert all(c.action is Action.NOOP for c in project.plan().changes)
    js_request_sync(nats_server.url, f"$JS.API.STREAM.DELETE.{name}")


def test_export_keeps_prevent_destroy(nats_server, tmp_path):
    """A resource jsops marked prevent_destroy is exported with it: without it, applying
    the exported files would plan the mark away and drop the protection."""
    name = unique_name("EXPD")
    project = make_project(tmp_path, nats_server.url)
    project.write(
        "s.yaml",
        f"""
        apiVersion: jsops/v1
        kind: Stream
        metadata: {{name: {name}, prevent_destroy: true}}
        spec: {{subjects: ["{name.lower()}.>"]}}
        ---
        apiVersion: jsops/v1
        kind: Consumer
        metadata: {{name: c, stream: {name}, prevent_destroy: true}}
        spec: {{ack_policy: explicit}}
        """,
    )
    _plan, result = project.apply()
    assert result is not None and result.ok
    (project.root / "manifests" / "s.yaml").unlink()
    code, _out, err = project.cli("export", "--out", "manifests")
    assert code == 0, err
    exported = project.root / "manifests" / f"{name}.yaml"
    assert exported.read_text().count("prevent_destroy: true") == 2
    for other in (project.root / "manifests").glob("*.yaml"):
        if other != exported:
            other.unlink()
    mine = [c for c in project.plan().changes if name in (c.address.name, c.address.stream)]
    assert len(mine) == 2 and all(c.action is Action.NOOP for c in mine), mine
    js_request_sync(nats_server.url, f"$JS.API.STREAM.DELETE.{name}")


def test_export_leaves_out_what_the_manifests_declare(nats_server: Any, tmp_path: Any) -> None:
    """The tutorial's adoption step: a project declares ORDERS and its consumer; LEGACY
    and a consumer of ORDERS were made by hand. Export writes only those two, and the
    next plan adopts them (it failed: "declared twice" for everything exported again)."""
    from harness.manifests import consumer_doc, stream_doc

    url = nats_server.url
    project = make_project(tmp_path, url)
    orders, legacy = unique_name("ORDERS"), unique_name("LEGACY")
    project.write(
        "orders.yaml",
        stream_doc(orders) + "---\n" + consumer_doc(orders, "processor", ack_policy="explicit"),
    )
    code, _out, err = project.cli("apply", "--auto-approve")
    assert code == 0, err
    js_request_sync(
        url, f"$JS.API.STREAM.CREATE.{legacy}", {"name": legacy, "subjects": [f"{legacy}.>"]}
    )
    js_request_sync(
        url,
        f"$JS.API.CONSUMER.CREATE.{orders}.worker",
        {"stream_name": orders, "config": {"durable_name": "worker", "ack_policy": "explicit"}},
    )
    code, _out, err = project.cli("export", "--out", "manifests/exported")
    assert code == 0, err
    assert "left out 2 resource(s) the manifests declare" in err
    orders_file = (project.root / "manifests" / "exported" / f"{orders}.yaml").read_text()
    assert "name: worker" in orders_file and "processor" not in orders_file
    assert "kind: Stream" not in orders_file
    for other in (project.root / "manifests" / "exported").glob("*.yaml"):
        if other.stem not in (orders, legacy):
            other.unlink()  # the shared server's other streams
    plan = project.plan()
    adopted = {str(c.address) for c in plan.changes if c.action is Action.UPDATE}
    assert adopted == {f"Stream {legacy}", f"Consumer {orders}/worker"}
    for name in (legacy, orders):
        js_request_sync(url, f"$JS.API.STREAM.DELETE.{name}")
