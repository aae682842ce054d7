"""build_plan as a pure function: validated manifests + a live state -> a Plan.

No server: the live state is built from what a plan sent, the way the server stores
a config it accepted (feature tests on real servers check that servers do so). Each
case names the user-visible decision it pins down.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import pytest
from harness.manifests import desired

from reconciler.errors import ManifestError
from reconciler.live import LiveState
from reconciler.normalize import owner_of
from reconciler.plan import Action, Plan, Reason, build_plan

PROJECT = "shop"
LEVEL = 3  # the API level of nats-server 2.12 and later

ORDERS = """
apiVersion: jsops/v1
kind: Stream
metadata: {name: ORDERS}
spec: {subjects: ["orders.>"], max_age: 7d, storage: file}
"""
PROCESSOR = """
---
apiVersion: jsops/v1
kind: Consumer
metadata: {name: processor, stream: ORDERS}
spec: {ack_policy: explicit, ack_wait: 30s}
"""


def live_state(streams: dict[str, Any] | None = None, consumers: Any = None) -> LiveState:
    return LiveState(LEVEL, "2.12.0", None, 1, streams or {}, consumers or {}, {})


def plan_of(text: str, live: LiveState, *, prune: bool = False) -> Plan:
    return build_plan(desired(text), live, project=PROJECT, environment="dev", prune=prune)


def stored(plan: Plan, *, messages: int = 0) -> LiveState:
    """The live state after the server accepted every config ``plan`` sends."""
    streams: dict[str, Any] = {}
    consumers: dict[tuple[str, str], Any] = {}
    for change in plan.pending():
        config = copy.deepcopy(change.send)
        assert config is not None
        if change.address.stream:
            consumers[(change.address.stream, change.address.name)] = {
                "config": config,
                "num_pending": messages,
                "num_ack_pending": 0,
            }
        else:
            state = {"messages": messages, "bytes": 100 * messages, "consumer_count": 0}
            streams[change.address.name] = {"config": config, "state": state}
    return live_state(streams, consumers)


def edited(live: LiveState, name: str, **config: Any) -> LiveState:
    """``live`` with stream ``name``'s config changed out of band."""
    streams = copy.deepcopy(live.streams)
    streams[name]["config"].update(config)
    return live_state(streams, copy.deepcopy(live.consumers))


def actions(plan: Plan) -> dict[str, str]:
    return {str(c.address): c.action.value for c in plan.changes}


def test_an_empty_server_gets_a_create_per_resource_streams_first() -> None:
    plan = plan_of(ORDERS + PROCESSOR, live_state())
    assert [(str(c.address), c.action, c.reason) for c in plan.changes] == [
        ("Stream ORDERS", Action.CREATE, Reason.NEW),
        ("Consumer ORDERS/processor", Action.CREATE, Reason.NEW),
    ]
    stream, consumer = plan.changes
    assert consumer.depends_on == ("Stream ORDERS",)
    assert stream.send is not None and stream.send["max_age"] == 7 * 86400 * 10**9
    assert owner_of(stream.send) == PROJECT  # the owner tag goes on every write
    assert stream.send["subjects"] == ["orders.>"]
    assert plan.summary["create"] == 2 and plan.has_changes


def test_what_the_server_stored_plans_to_noop() -> None:
    first = plan_of(ORDERS + PROCESSOR, live_state())
    again = plan_of(ORDERS + PROCESSOR, stored(first))
    assert actions(again) == {"Stream ORDERS": "noop", "Consumer ORDERS/processor": "noop"}
    assert not again.has_changes and again.pending() == []


@dataclass
class Case:
    """A manifest edit (or a live change) and the change it must plan for ORDERS."""

    manifest: str
    action: Action
    paths: tuple[str, ...] = ()
    destructive: bool = False
    live: dict[str, Any] = field(default_factory=dict)  # live config edited out of band
    drift: bool = False


CASES = [
    pytest.param(
        Case(ORDERS.replace("max_age: 7d", "max_age: 14d"), Action.UPDATE, ("max_age",)),
        id="max_age change is an in-place update",
    ),
    pytest.param(
        Case(ORDERS.replace('["orders.>"]', '["orders.>", "returns.>"]'), Action.UPDATE,
             ("subjects",)),
        id="a new subject is an update",
    ),
    pytest.param(
        Case(ORDERS.replace('["orders.>"]', '["orders.>"], max_msgs: 1000'), Action.UPDATE,
             ("max_msgs",)),
        id="a new limit is an update",
    ),
    pytest.param(
        Case(ORDERS.replace("storage: file", "storage: memory"), Action.REPLACE, ("storage",),
             destructive=True),
        id="storage change is a destructive replace",
    ),
    pytest.param(
        Case(ORDERS, Action.UPDATE, ("max_age",), live={"max_age": 3600 * 10**9}, drift=True),
        id="a live edit out of band is drift, planned back",
    ),
    pytest.param(
        Case(ORDERS, Action.NOOP),
        id="an unchanged manifest is noop",
    ),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_stream_edits(case: Case) -> None:
    live = stored(plan_of(ORDERS, live_state()), messages=5)
    if case.live:
        live = edited(live, "ORDERS", **case.live)
    (change,) = plan_of(case.manifest, live).changes
    assert change.action is case.action
    assert tuple(d.path for d in change.diff) == case.paths
    assert change.destructive is case.destructive
    assert change.drift is case.drift
    if case.action is Action.REPLACE:
        assert change.replace_paths == case.paths
        assert change.loss == {"messages": 5, "bytes": 500, "consumers": 0}
    if case.action is not Action.NOOP:
        assert change.live_digest is not None  # apply checks the live config is unchanged


def test_a_replaced_stream_replaces_its_consumers() -> None:
    live = stored(plan_of(ORDERS + PROCESSOR, live_state()), messages=3)
    plan = plan_of(ORDERS.replace("storage: file", "storage: memory") + PROCESSOR, live)
    stream, consumer = plan.changes
    assert stream.action is Action.REPLACE
    assert (consumer.action, consumer.reason) == (Action.REPLACE, Reason.STREAM_REPLACED)
    assert consumer.destructive and consumer.loss is not None
    assert consumer.loss["num_pending"] == 3
    assert consumer.depends_on == ("Stream ORDERS",)


def test_owned_leftovers_are_deleted_only_with_prune() -> None:
    live = stored(plan_of(ORDERS + PROCESSOR, live_state()))
    nothing_declared = """
    apiVersion: jsops/v1
    kind: Stream
    metadata: {name: OTHER}
    spec: {subjects: ["other.>"]}
    """
    kept = plan_of(nothing_declared, live)
    assert actions(kept) == {"Stream OTHER": "create"}
    assert list(kept.unmanaged) == ["Stream ORDERS", "Consumer ORDERS/processor"]

    pruned = plan_of(nothing_declared, live, prune=True)
    deletes = [c for c in pruned.changes if c.action is Action.DELETE]
    # consumers before their stream (deletes run in reverse dependency order)
    assert [str(c.address) for c in deletes] == ["Consumer ORDERS/processor", "Stream ORDERS"]
    assert deletes[1].depends_on == ("Consumer ORDERS/processor",)
    assert all(c.destructive and c.reason for c in deletes)


def test_resources_of_another_owner_are_never_deleted() -> None:
    live = stored(plan_of(ORDERS, live_state()))
    live.streams["ORDERS"]["config"]["metadata"] = {"jsops.owner": "someone-else"}
    plan = plan_of(
        """
        apiVersion: jsops/v1
        kind: Stream
        metadata: {name: OTHER}
        spec: {subjects: ["other.>"]}
        """,
        live,
        prune=True,
    )
    assert actions(plan) == {"Stream OTHER": "create"}
    assert plan.unmanaged == ()


def test_an_origin_is_created_before_the_mirror_that_reads_it() -> None:
    copy_of_orders = """
apiVersion: jsops/v1
kind: Stream
metadata: {name: COPY}
spec: {mirror: {name: ORDERS}}
---"""
    text = copy_of_orders + ORDERS
    plan = plan_of(text, live_state())
    assert [str(c.address) for c in plan.changes] == ["Stream ORDERS", "Stream COPY"]
    assert plan.changes[1].depends_on == ("Stream ORDERS",)


def test_a_field_the_server_cannot_accept_is_a_plan_error() -> None:
    text = ORDERS.replace("storage: file", "storage: file, num_replicas: 3")
    with pytest.raises(ManifestError) as err:
        plan_of(text, live_state())  # a single server (cluster_size 1)
    assert "num_replicas" in str(err.value.lines())


def test_creates_share_what_they_show_alike_and_show_their_own_values() -> None:
    """The diffs of 40,000 creates are one object per field and value shown (memory):
    a create still shows its own value, however close to another's."""
    text = "\n---\n".join(
        f"apiVersion: jsops/v1\nkind: Stream\nmetadata: {{name: {name}}}\n"
        f'spec: {{subjects: ["{name.lower()}.>"], storage: {storage}, max_msgs: {msgs}, '
        f"metadata: {{team: {team}}}}}"
        for name, storage, msgs, team in [
            ("A", "memory", 1, "a"),
            ("B", "memory", 2, "a"),
            ("C", "file", 1, "b"),
        ]
    )
    plan = plan_of(text, live_state())
    shown = {c.address.name: {d.path: d for d in c.diff} for c in plan.changes}
    assert [shown[n]["storage"].after for n in "ABC"] == ["memory", "memory", "file"]
    assert [shown[n]["max_msgs"].after for n in "ABC"] == [1, 2, 1]
    assert [shown[n]["metadata"].after["team"] for n in "ABC"] == ["a", "a", "b"]
    assert shown["A"]["storage"] is shown["B"]["storage"]
    assert shown["A"]["metadata"] is shown["B"]["metadata"]
    assert shown["A"]["max_msgs"] is shown["C"]["max_msgs"]
    assert shown["A"]["subjects"] is not shown["B"]["subjects"]


def test_values_equal_in_python_are_not_shared_unless_the_same_json() -> None:
    from reconciler.plan import _value_key

    assert _value_key(True) != _value_key(1)
    assert _value_key({"a": True}) != _value_key({"a": 1})
    assert _value_key([1.0]) != _value_key([1])
    assert _value_key({"a": [1, "x"]}) == _value_key({"a": [1, "x"]})
