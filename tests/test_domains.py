"""Mirrors and sources across JetStream domains: a dev leaf node and a prod hub."""

from __future__ import annotations

import asyncio
import time

import nats
import pytest
from harness.project import make_project
from harness.servers import js_request_sync, unique_name

from reconciler.plan import Action


def _publish(url: str, subject: str, count: int) -> None:
    async def run() -> None:
        nc = await nats.connect(url)
        js = nc.jetstream()
        for i in range(count):
            await js.publish(subject, f"m{i}".encode())
        await nc.close()

    asyncio.run(run())


def _wait_messages(url: str, subject: str, count: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    messages = -1
    while time.monotonic() < deadline:
        reply = js_request_sync(url, subject)
        messages = reply.get("state", {}).get("messages", -1)
        if messages >= count:
            return messages
        time.sleep(0.1)
    return messages


def _project(tmp_path, hub_and_leaf):
    return make_project(
        tmp_path,
        hub_and_leaf.hub.url,
        envs={
            "dev": {"servers": [hub_and_leaf.leaf.url], "domain": "leaf"},
            "prod": {"servers": [hub_and_leaf.hub.url], "domain": "hub"},
        },
    )


def test_leaf_stream_mirrored_on_the_hub(tmp_path, hub_and_leaf) -> None:
    project = _project(tmp_path, hub_and_leaf)
    name = unique_name("ORD")
    p = name.lower()
    project.write(
        "orders.yaml",
        f"""
        apiVersion: jsops/v1
        kind: Stream
        metadata: {{name: {name}, environments: [dev]}}
        spec: {{subjects: ["{p}.>"], max_age: 1d}}
        ---
        apiVersion: jsops/v1
        kind: Stream
        metadata: {{name: {name}_MIRROR, environments: [prod]}}
        spec:
          mirror: {{name: {name}, domain: leaf}}
          max_age: 1d
    """,
    )
    dev_plan, result = project.apply(env="dev")
    assert result is not None and result.ok
    assert [str(c.address) for c in dev_plan.changes] == [f"Stream {name}"]
    _prod_plan, result = project.apply(env="prod")
    assert result is not None and result.ok
    mirror = js_request_sync(hub_and_leaf.hub.url, f"$JS.API.STREAM.INFO.{name}_MIRROR")
    assert mirror["config"]["mirror"]["external"]["api"] == "$JS.leaf.API"

    _publish(hub_and_leaf.leaf.url, f"{p}.new", 5)
    got = _wait_messages(hub_and_leaf.hub.url, f"$JS.API.STREAM.INFO.{name}_MIRROR", 5)
    assert got == 5
    for env in ("dev", "prod"):
        assert all(c.action is Action.NOOP for c in project.plan(env=env).changes), env


def test_stream_sourcing_two_others_declared_in_the_wrong_order(nats_server, tmp_path) -> None:
    project = make_project(tmp_path, nats_server.url)
    agg, a, b = unique_name("AGG"), unique_name("SA"), unique_name("SB")
    project.write(
        "all.yaml",
        f"""
        apiVersion: jsops/v1
        kind: Stream
        metadata: {{name: {agg}}}
        spec:
          sources:
            - {{name: {a}}}
            - {{name: {b}, filter_subject: "{b.lower()}.x"}}
        ---
        apiVersion: jsops/v1
        kind: Consumer
        metadata: {{name: reader, stream: {agg}}}
        spec: {{ack_policy: explicit}}
        ---
        apiVersion: jsops/v1
        kind: Stream
        metadata: {{name: {a}}}
        spec: {{subjects: ["{a.lower()}.>"]}}
        ---
        apiVersion: jsops/v1
        kind: Stream
        metadata: {{name: {b}}}
        spec: {{subjects: ["{b.lower()}.>"]}}
    """,
    )
    plan, result = project.apply()
    assert result is not None and result.ok
    order = [c.address.name for c in plan.changes]
    assert order.index(a) < order.index(agg) and order.index(b) < order.index(agg)
    _publish(nats_server.url, f"{a.lower()}.1", 2)
    _publish(nats_server.url, f"{b.lower()}.x", 3)
    _publish(nats_server.url, f"{b.lower()}.y", 1)
    assert _wait_messages(nats_server.url, f"$JS.API.STREAM.INFO.{agg}", 5) == 5
    assert all(c.action is Action.NOOP for c in project.plan().changes)

    # removing a source is an in-place update
    project.write(
        "all.yaml",
        (project.root / "manifests" / "all.yaml")
        .read_text()
        .replace(f'    - {{name: {b}, filter_subject: "{b.lower()}.x"}}\n', ""),
    )
    plan = project.plan()
    change = next(c for c in plan.changes if c.address.name == agg)
    assert change.action is Action.UPDATE
    _plan, result = project.apply()
    assert result is not None and result.ok
    assert all(c.action is Action.NOOP for c in project.plan().changes)


def test_mirror_of_a_direct_stream_on_the_same_server(nats_server, tmp_path) -> None:
    """The server copies the origin's allow_direct into a local mirror's mirror_direct;
    jsops sends it explicitly (pedantic mode) and plans noop afterwards."""
    project = make_project(tmp_path, nats_server.url)
    origin = unique_name("ORIG")
    project.write(
        "m.yaml",
        f"""
        apiVersion: jsops/v1
        kind: Stream
        metadata: {{name: {origin}_M}}
        spec: {{mirror: {{name: {origin}}}}}
        ---
        apiVersion: jsops/v1
        kind: Stream
        metadata: {{name: {origin}}}
        spec: {{subjects: ["{origin.lower()}.>"], allow_direct: true}}
    """,
    )
    _plan, result = project.apply()
    assert result is not None and result.ok
    info = js_request_sync(nats_server.url, f"$JS.API.STREAM.INFO.{origin}_M")
    assert info["config"]["mirror_direct"] is True
    assert all(c.action is Action.NOOP for c in project.plan().changes)


def test_promote_mirror_output_applied_to_the_hub(tmp_path, hub_and_leaf) -> None:
    project = _project(tmp_path, hub_and_leaf)
    name = unique_name("PRM")
    p = name.lower()
    project.write(
        "dev.yaml",
        f"""
        apiVersion: jsops/v1
        kind: Stream
        metadata: {{name: {name}, environments: [dev]}}
        spec: {{subjects: ["{p}.>"], max_age: 1d, max_bytes: 64MiB}}
        ---
        apiVersion: jsops/v1
        kind: Consumer
        metadata: {{name: reader, stream: {name}, environments: [dev]}}
        spec: {{ack_policy: explicit}}
    """,
    )
    _plan, result = project.apply(env="dev")
    assert result is not None and result.ok

    out = project.root / "manifests" / "promoted"
    promote = (
        "promote",
        "--from",
        "dev",
        "--to",
        "prod",
        "--mode",
        "mirror",
        "--select",
        name,
        "--out",
        str(out),
    )
    code, _out, err = project.cli(*promote)
    assert code == 0, err
    first = {f.name: f.read_bytes() for f in out.iterdir()}
    assert list(first) == [f"{name}.yaml"]
    text = first[f"{name}.yaml"].decode()
    assert "domain: leaf" in text and "environments:\n    - prod" in text
    assert "max_age: 1d" in text and "max_bytes: 64MiB" in text
    code, _out, err = project.cli(*promote)
    assert code == 0, err
    assert {f.name: f.read_bytes() for f in out.iterdir()} == first  # byte-identical

    plan = project.plan(env="prod")
    assert [(str(c.address), c.action.value) for c in plan.changes] == [
        (f"Stream {name}", "create")
    ]
    _plan, result = project.apply(env="prod")
    assert result is not None and result.ok
    _publish(hub_and_leaf.leaf.url, f"{p}.x", 4)
    assert _wait_messages(hub_and_leaf.hub.url, f"$JS.API.STREAM.INFO.{name}", 4) == 4
    for env in ("dev", "prod"):
        assert all(c.action is Action.NOOP for c in project.plan(env=env).changes), env


def test_promote_copy_re_renders_with_the_target_values(tmp_path, nats_server) -> None:
    project = make_project(
        tmp_path,
        nats_server.url,
        envs={
            "dev": {"servers": [nats_server.url], "values": {"age": "1h"}},
            "prod": {"servers": [nats_server.url], "values": {"age": "7d"}},
        },
    )
    name = unique_name("CPY")
    project.write(
        "dev.yaml",
        f"""
        apiVersion: jsops/v1
        kind: Stream
        metadata: {{name: {name}, environments: [dev]}}
        spec: {{subjects: ["{name.lower()}.>"], max_age: "{{{{ values.age }}}}"}}
        ---
        apiVersion: jsops/v1
        kind: Consumer
        metadata: {{name: reader, stream: {name}, environments: [dev]}}
        spec: {{ack_policy: explicit, ack_wait: 10s}}
    """,
    )
    out = project.root / "promoted"
    code, _o, err = project.cli(
        "promote",
        "--from",
        "dev",
        "--to",
        "prod",
        "--mode",
        "copy",
        "--name",
        "{name}_P",
        "--out",
        str(out),
    )
    assert code == 0, err
    text = (out / f"{name}_P.yaml").read_text()
    assert "max_age: 7d" in text and f"stream: {name}_P" in text and "ack_wait: 10s" in text


def test_durable_sourcing_consumer_round_trip(nats_server, tmp_path, target) -> None:
    """2.14+: a stream sources a work queue through a durable push consumer with
    ack_policy flow_control (ADR-60), all declared in jsops; apply then plan is noop."""
    if target.api_level < 4:
        pytest.skip(f"durable sourcing consumers need nats-server 2.14 ({target.version})")
    project = make_project(tmp_path, nats_server.url)
    wq, agg = unique_name("WQ"), unique_name("AGGW")
    deliver = f"dlv.{wq.lower()}"
    project.write(
        "wq.yaml",
        f"""
        apiVersion: jsops/v1
        kind: Stream
        metadata: {{name: {wq}}}
        spec: {{subjects: ["{wq.lower()}.>"], retention: workqueue}}
        ---
        apiVersion: jsops/v1
        kind: Consumer
        metadata: {{name: feed, stream: {wq}}}
        spec: {{ack_policy: flow_control, deliver_subject: "{deliver}"}}
        ---
        apiVersion: jsops/v1
        kind: Stream
        metadata: {{name: {agg}}}
        spec:
          sources:
            - name: {wq}
              consumer: {{name: feed, deliver_subject: "{deliver}"}}
    """,
    )
    _plan, result = project.apply()
    assert result is not None and result.ok
    _publish(nats_server.url, f"{wq.lower()}.job", 3)
    assert _wait_messages(nats_server.url, f"$JS.API.STREAM.INFO.{agg}", 3) == 3
    assert all(c.action is Action.NOOP for c in project.plan().changes)
