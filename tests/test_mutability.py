"""The replace table (``reconciler/mutability.py``) against every supported nats-server.

For every row of ``STREAM_REPLACE_RULES`` / ``CONSUMER_REPLACE_RULES`` that holds on
this server, one case shows, on a stream with messages and a consumer with state:

1. the server itself refuses the change in place (a raw ``STREAM.UPDATE`` or
   ``CONSUMER.CREATE`` with ``action: update`` answers with the row's err_code);
2. jsops plans it as a destructive ``replace`` naming the row's field, with the loss;
3. ``apply`` without ``allow_replace`` refuses and writes nothing;
4. ``apply(allow_replace=True)`` deletes and recreates (declared consumers of a
   replaced stream come back too), and the next plan is all ``noop``.

Rows gated to some releases (API level / version) have unit tests of the gate and live
cases that run on the releases where they hold (``make test-matrix``); elsewhere they
are skipped with the reason. A case whose fields the release does not know is skipped
naming the field's release. A set of changes the server allows in place shows jsops
plans ``update`` for them and the consumers keep their identity (same ``created``, same
delivered stream sequence).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nats
import pytest
from harness.project import make_project
from harness.releases import Target
from harness.servers import JsWriteCounter, SingleServer, js_request_sync, unique_name

from reconciler.connection import server_info
from reconciler.errors import ApplyRefused, ErrCode
from reconciler.mutability import (
    CONSUMER_REPLACE_RULES,
    STREAM_REPLACE_RULES,
    ReplaceRule,
    changed,
    replace_reasons,
    version_for_rules,
)
from reconciler.normalize import canonical_consumer, canonical_stream
from reconciler.plan import Action, Change, Plan, Reason

if TYPE_CHECKING:  # imported by name, pytest would try to collect it as a test class
    from harness.project import TestProject

API = "$JS.API"
MESSAGES = 5  # published to every stream under test
FETCHED = 2  # pulled (and left unacked) from its pull consumer
CONSUMER = "worker"  # the pull consumer declared on every stream under test
SECOND = 10**9


# ---------------------------------------------------------------- names and manifests


@dataclass
class Names:
    """Unique names for one case: the stream, its subjects, and two mirror origins."""

    stream: str = field(default_factory=lambda: unique_name("MUT"))
    origin_a: str = field(default_factory=lambda: unique_name("ORIGA"))
    origin_b: str = field(default_factory=lambda: unique_name("ORIGB"))

    @property
    def subj(self) -> str:
        return self.stream.lower()

    @property
    def subjects(self) -> list[str]:
        return [f"{self.subj}.>"]

    def origin_subjects(self, origin: str) -> list[str]:
        return [f"{origin.lower()}.>"]

    @property
    def all_streams(self) -> list[str]:
        return [self.stream, self.origin_a, self.origin_b]


Spec = Callable[[Names], dict[str, Any]]


def doc(kind: str, metadata: dict[str, Any], spec: dict[str, Any]) -> str:
    """One manifest document; YAML is a superset of JSON, so the spec goes in as JSON."""
    return (
        f"apiVersion: jsops/v1\nkind: {kind}\nmetadata: {json.dumps(metadata)}\n"
        f"spec: {json.dumps(spec)}\n"
    )


def stream_doc(name: str, spec: dict[str, Any]) -> str:
    return doc("Stream", {"name": name}, spec)


def consumer_doc(name: str, stream: str, spec: dict[str, Any]) -> str:
    return doc("Consumer", {"name": name, "stream": stream}, spec)


def manifests(*docs: str) -> str:
    return "---\n".join(docs)


# ---------------------------------------------------------------- raw server helpers


def stream_info(url: str, name: str) -> dict[str, Any]:
    reply = js_request_sync(url, f"{API}.STREAM.INFO.{name}")
    assert "error" not in reply, reply
    return reply


def consumer_info(url: str, stream: str, name: str) -> dict[str, Any]:
    reply = js_request_sync(url, f"{API}.CONSUMER.INFO.{stream}.{name}")
    assert "error" not in reply, reply
    return reply


def messages(url: str, name: str) -> int:
    return int(stream_info(url, name)["state"]["messages"])


def publish(
    url: str, subject: str, count: int = MESSAGES, headers: dict[str, str] | None = None
) -> None:
    """Publish ``count`` messages and check each ack (``headers``: e.g. a counter increment)."""

    async def run() -> None:
        nc = await nats.connect(url)
        try:
            for i in range(count):
                payload = b"" if headers else f"m{i}".encode()
                reply = await nc.request(subject, payload, timeout=5, headers=headers)
                ack = json.loads(reply.data)
                assert "error" not in ack, ack
        finally:
            await nc.close()

    asyncio.run(run())


def fetch_unacked(url: str, stream: str, consumer: str, count: int = FETCHED) -> None:
    """Pull ``count`` messages and leave them unacknowledged (ack-pending state)."""

    async def run() -> None:
        nc = await nats.connect(url)
        try:
            inbox = nc.new_inbox()
            sub = await nc.subscribe(inbox)
            request = {"batch": count, "expires": 2 * SECOND}
            await nc.publish(
                f"{API}.CONSUMER.MSG.NEXT.{stream}.{consumer}",
                json.dumps(request).encode(),
                reply=inbox,
            )
            for _ in range(count):
                msg = await sub.next_msg(timeout=3)
                assert msg.subject != inbox, msg.headers  # a status, not a message
        finally:
            await nc.close()

    asyncio.run(run())


def wait_messages(url: str, name: str, count: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while messages(url, name) != count:
        assert time.monotonic() < deadline, f"{name} never reached {count} messages"
        time.sleep(0.05)


def merged(config: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``config`` with ``changes`` applied; a None value removes the key."""
    out = dict(config)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def spec_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """What turns ``old`` into ``new`` (None = removed), for a raw update."""
    out: dict[str, Any] = {k: None for k in old if k not in new}
    out.update({k: v for k, v in new.items() if old.get(k) != v})
    return out


def raw_stream_update(url: str, name: str, changes: dict[str, Any]) -> dict[str, Any]:
    config = merged(stream_info(url, name)["config"], changes)
    return js_request_sync(url, f"{API}.STREAM.UPDATE.{name}", config)


def raw_consumer_update(
    url: str, stream: str, name: str, changes: dict[str, Any]
) -> dict[str, Any]:
    config = merged(consumer_info(url, stream, name)["config"], changes)
    payload = {"stream_name": stream, "config": config, "action": "update"}
    return js_request_sync(url, f"{API}.CONSUMER.CREATE.{stream}.{name}", payload)


def change_for(plan: Plan, kind: str, name: str) -> Change:
    found = [c for c in plan.changes if c.address.kind == kind and c.address.name == name]
    assert len(found) == 1, [str(c.address) for c in plan.changes]
    return found[0]


def assert_all_noop(plan: Plan) -> None:
    pending = [(str(c.address), c.action.value, c.diff) for c in plan.pending()]
    assert not pending, pending


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def names(nats_server: SingleServer) -> Iterator[Names]:
    """Unique names for one case; its streams are deleted afterwards."""
    n = Names()
    yield n
    for stream in n.all_streams:
        js_request_sync(nats_server.url, f"{API}.STREAM.DELETE.{stream}")


@pytest.fixture
def project(tmp_path: Path, nats_server: SingleServer) -> TestProject:
    return make_project(tmp_path, nats_server.url)


# ---------------------------------------------------------------- the gates (unit)


def _rule(kind_rules: tuple[ReplaceRule, ...], field_name: str, check_name: str) -> ReplaceRule:
    found = [r for r in kind_rules if r.field == field_name and r.check.__name__ == check_name]
    assert len(found) == 1, (field_name, check_name)
    return found[0]


@pytest.mark.parametrize(
    ("rule", "api_level", "version", "applies"),
    [
        # Removing a mirror: refused up to 2.11 (API level 1), a promotion from 2.12 (level 2).
        pytest.param(
            _rule(STREAM_REPLACE_RULES, "mirror", "mirror_removed"), 0, "2.10.24", True, id="l0"
        ),
        pytest.param(
            _rule(STREAM_REPLACE_RULES, "mirror", "mirror_removed"), 1, "2.11.9", True, id="l1"
        ),
        pytest.param(
            _rule(STREAM_REPLACE_RULES, "mirror", "mirror_removed"), 2, "2.12.0", False, id="l2"
        ),
        pytest.param(
            _rule(STREAM_REPLACE_RULES, "mirror", "mirror_removed"), 4, "2.15.1", False, id="l4"
        ),
        # Any allow_msg_ttl change: refused on 2.11.0-2.11.1 only.
        pytest.param(
            _rule(STREAM_REPLACE_RULES, "allow_msg_ttl", "changed"),
            1,
            "2.11.1",
            True,
            id="ttl-2.11.1",
        ),
        pytest.param(
            _rule(STREAM_REPLACE_RULES, "allow_msg_ttl", "changed"),
            1,
            "2.11.2",
            False,
            id="ttl-2.11.2",
        ),
        pytest.param(
            _rule(STREAM_REPLACE_RULES, "allow_msg_ttl", "changed"),
            4,
            "2.15.1",
            False,
            id="ttl-2.15.1",
        ),
        # max_consumers: refused up to 2.12.4 (API level 2).
        pytest.param(
            _rule(STREAM_REPLACE_RULES, "max_consumers", "changed"),
            1,
            "2.11.4",
            True,
            id="maxc-2.11.4",
        ),
        pytest.param(
            _rule(STREAM_REPLACE_RULES, "max_consumers", "changed"),
            2,
            "2.12.4",
            True,
            id="maxc-2.12.4",
        ),
        pytest.param(  # 2.12.5 is API level 3: the level decides, whatever the version
            _rule(STREAM_REPLACE_RULES, "max_consumers", "changed"),
            3,
            "2.12.5",
            False,
            id="maxc-2.12.5",
        ),
        pytest.param(
            _rule(STREAM_REPLACE_RULES, "max_consumers", "changed"),
            4,
            "2.15.1",
            False,
            id="maxc-2.15.1",
        ),
        # Consumer mem_storage: checked from 2.14.4 on (nats-server 8fb265a48).
        pytest.param(
            _rule(CONSUMER_REPLACE_RULES, "mem_storage", "changed"),
            4,
            "2.14.3",
            False,
            id="mem-2.14.3",
        ),
        pytest.param(
            _rule(CONSUMER_REPLACE_RULES, "mem_storage", "changed"),
            4,
            "2.14.4",
            True,
            id="mem-2.14.4",
        ),
        pytest.param(
            _rule(CONSUMER_REPLACE_RULES, "mem_storage", "changed"),
            2,
            "2.12.15",
            False,
            id="mem-2.12.15",
        ),
        pytest.param(
            _rule(CONSUMER_REPLACE_RULES, "mem_storage", "changed"),
            4,
            "2.15.1",
            True,
            id="mem-2.15.1",
        ),
        # Pre-release and build suffixes compare by their release number.
        pytest.param(
            _rule(STREAM_REPLACE_RULES, "allow_msg_ttl", "changed"),
            1,
            "2.11.2-RC.1",
            False,
            id="ttl-suffix",
        ),
        # An ungated rule holds everywhere.
        pytest.param(
            _rule(STREAM_REPLACE_RULES, "storage", "changed"), 0, "", True, id="ungated-unknown"
        ),
        pytest.param(
            _rule(STREAM_REPLACE_RULES, "storage", "changed"), 4, "2.15.1", True, id="ungated"
        ),
    ],
)
def test_rule_gate(rule: ReplaceRule, api_level: int, version: str, applies: bool) -> None:
    assert rule.applies(api_level, version) is applies


def test_unknown_version_keeps_version_gated_rules() -> None:
    """Without a version the gate cannot tell, so the safe answer (replace) wins."""
    rule = ReplaceRule("x", changed, "why", max_version="2.12.4")
    assert rule.applies(4, "")
    assert not rule.applies(4, "2.12.5")
    assert ReplaceRule("x", changed, "why", min_version="2.14.5").applies(4, "")


@pytest.mark.parametrize(
    ("before", "after", "api_level", "version", "expected"),
    [
        pytest.param(
            {"mirror": {"name": "A"}}, {"mirror": None}, 1, "2.11.9", ["mirror"], id="unmirror-2.11"
        ),
        pytest.param({"mirror": {"name": "A"}}, {"mirror": None}, 2, "2.12.0", [], id="promote"),
        pytest.param(
            {"mirror": None}, {"mirror": {"name": "A"}}, 4, "2.15.1", ["mirror"], id="mirror-add"
        ),
        pytest.param(
            {"allow_msg_ttl": False},
            {"allow_msg_ttl": True},
            1,
            "2.11.1",
            ["allow_msg_ttl"],
            id="ttl-on-2.11.1",
        ),
        pytest.param(
            {"allow_msg_ttl": False}, {"allow_msg_ttl": True}, 1, "2.11.2", [], id="ttl-on-2.11.2"
        ),
        pytest.param(
            {"allow_msg_ttl": True},
            {"allow_msg_ttl": False},
            4,
            "2.15.1",
            ["allow_msg_ttl"],
            id="ttl-off",
        ),
        pytest.param(
            {"max_consumers": -1},
            {"max_consumers": 10},
            2,
            "2.12.4",
            ["max_consumers"],
            id="maxc-2.12.4",
        ),
        pytest.param(
            {"max_consumers": -1}, {"max_consumers": 10}, 4, "2.15.1", [], id="maxc-2.15.1"
        ),
        pytest.param(
            {"retention": "limits"}, {"retention": "interest"}, 4, "2.15.1", [], id="interest"
        ),
        pytest.param(
            {"retention": "workqueue"},
            {"retention": "limits"},
            4,
            "2.15.1",
            ["retention"],
            id="from-workqueue",
        ),
        pytest.param({"sealed": False}, {"sealed": True}, 4, "2.15.1", [], id="seal"),
        pytest.param(
            {"sealed": True, "deny_delete": True, "storage": "file"},
            {"sealed": False, "deny_delete": False, "storage": "memory"},
            4,
            "2.15.1",
            ["storage", "sealed", "deny_delete"],
            id="several",
        ),
    ],
)
def test_stream_replace_reasons_by_level(
    before: dict[str, Any],
    after: dict[str, Any],
    api_level: int,
    version: str,
    expected: list[str],
) -> None:
    found = replace_reasons("Stream", before, after, api_level=api_level, version=version)
    assert [f for f, _ in found] == expected


@pytest.mark.parametrize(
    ("before", "after", "version", "expected"),
    [
        pytest.param({"mem_storage": False}, {"mem_storage": True}, "2.14.3", [], id="2.14.3"),
        pytest.param(
            {"mem_storage": False}, {"mem_storage": True}, "2.14.4", ["mem_storage"], id="2.14.4"
        ),
        pytest.param({"deliver_subject": "a"}, {"deliver_subject": "b"}, "2.15.1", [], id="push"),
        pytest.param(
            {"deliver_subject": None},
            {"deliver_subject": "b"},
            "2.15.1",
            ["deliver_subject"],
            id="pull-to-push",
        ),
    ],
)
def test_consumer_replace_reasons_by_version(
    before: dict[str, Any], after: dict[str, Any], version: str, expected: list[str]
) -> None:
    found = replace_reasons("Consumer", before, after, api_level=4, version=version)
    assert [f for f, _ in found] == expected


def test_each_field_is_reported_once() -> None:
    found = replace_reasons(
        "Stream", {"allow_msg_ttl": True}, {"allow_msg_ttl": False}, api_level=1, version="2.11.0"
    )
    assert [f for f, _ in found] == ["allow_msg_ttl"]


@pytest.mark.parametrize(
    ("connected", "level", "expected"),
    [
        pytest.param("2.15.1", 5, "2.15.1", id="the-server-itself"),
        pytest.param("2.12.8", 3, "2.12.8", id="2.12-at-level-3"),
        pytest.param("2.12.3", 2, "2.12.3", id="2.12-at-level-2"),
        pytest.param("2.15.1", 1, "", id="2.15-leaf-before-a-2.11-hub"),
        pytest.param("2.11.11", 5, "", id="2.11-leaf-before-a-2.15-hub"),
        pytest.param("2.16.0", 6, "2.16.0", id="a-newer-release"),
        pytest.param("", 4, "", id="unknown"),
    ],
)
def test_the_rules_use_a_version_only_when_it_can_be_the_jetstream_server_s(
    connected: str, level: int, expected: str
) -> None:
    assert version_for_rules(connected, level) == expected


@pytest.mark.parametrize(
    ("connected", "level", "action"),
    [
        pytest.param("2.15.1", 1, Action.REPLACE, id="2.15-leaf-before-a-2.11-hub"),
        pytest.param("2.11.11", 5, Action.UPDATE, id="2.11-leaf-before-a-2.15-hub"),
        pytest.param("2.12.4", 2, Action.REPLACE, id="2.12.4"),
        pytest.param("2.12.5", 3, Action.UPDATE, id="2.12.5"),
    ],
)
def test_a_domain_behind_a_leaf_is_judged_by_its_own_api_level(
    connected: str, level: int, action: Action
) -> None:
    """Planning through a leaf node to a hub's domain: the API level is the hub's, the
    version the leaf's. max_consumers (refused in place before 2.12.5, level 3) follows
    the level; a 2.15 leaf before a 2.11 hub planned an update the hub refused."""
    from reconciler.errors import Location
    from reconciler.live import LiveState
    from reconciler.models import Address, Kind, Resource
    from reconciler.models.envelope import StreamManifest
    from reconciler.plan import build_plan

    manifest = StreamManifest.model_validate(
        {
            "apiVersion": "jsops/v1",
            "kind": "Stream",
            "metadata": {"name": "S"},
            "spec": {"subjects": ["s.>"], "max_consumers": 20},
        }
    )
    desired = [Resource(Address(Kind.STREAM, "S"), manifest, Location("s.yaml", 1, 1))]
    live_config = {
        "name": "S",
        "subjects": ["s.>"],
        "max_consumers": 10,
        "metadata": {"jsops.owner": "p"},
    }
    live = LiveState(
        level, connected, None, 1, {"S": {"config": live_config, "state": {"messages": 0}}}
    )
    plan = build_plan(desired, live, project="p", environment="hub")
    [change] = plan.changes
    assert change.action is action
    assert "max_consumers" in {d.path for d in change.diff}


# ---------------------------------------------------------------- streams: refused in place


@dataclass(frozen=True)
class StreamCase:
    """A stream change the server refuses: ``old`` -> ``new`` (specs, API units)."""

    field: str
    old: Spec
    new: Spec
    err_code: int
    message: str
    initial: Spec | None = None  # applied (and published to) before ``old``, e.g. to seal
    mirror: bool = False  # the stream mirrors origin A (publish there, not to the stream)
    counter: bool = False  # a counter stream: publish increments (Nats-Incr)


def _base(n: Names, **extra: Any) -> dict[str, Any]:
    return {"subjects": n.subjects, **extra}


STREAM_REFUSED = [
    pytest.param(
        StreamCase(
            "storage",
            lambda n: _base(n, storage="file"),
            lambda n: _base(n, storage="memory"),
            ErrCode.STREAM_INVALID_CONFIG,
            "can not change storage type",
        ),
        id="storage-file-to-memory",
    ),
    pytest.param(
        StreamCase(
            "storage",
            lambda n: _base(n, storage="memory"),
            lambda n: _base(n, storage="file"),
            ErrCode.STREAM_INVALID_CONFIG,
            "can not change storage type",
        ),
        id="storage-memory-to-file",
    ),
    pytest.param(
        StreamCase(
            "retention",
            lambda n: _base(n, retention="limits"),
            lambda n: _base(n, retention="workqueue"),
            ErrCode.STREAM_INVALID_CONFIG,
            "can not change retention policy to/from workqueue",
        ),
        id="retention-limits-to-workqueue",
    ),
    pytest.param(
        StreamCase(
            "retention",
            lambda n: _base(n, retention="workqueue"),
            lambda n: _base(n, retention="interest"),
            ErrCode.STREAM_INVALID_CONFIG,
            "can not change retention policy to/from workqueue",
        ),
        id="retention-workqueue-to-interest",
    ),
    pytest.param(
        StreamCase(
            "sealed",
            lambda n: _base(n, sealed=True),
            lambda n: _base(n),
            ErrCode.STREAM_INVALID_CONFIG,
            "can not unseal a sealed stream",
            initial=lambda n: _base(n),
        ),
        id="sealed-true-to-false",
    ),
    pytest.param(
        StreamCase(
            "deny_delete",
            lambda n: _base(n, deny_delete=True),
            lambda n: _base(n),
            ErrCode.STREAM_INVALID_CONFIG,
            "can not cancel deny message deletes",
        ),
        id="deny_delete-true-to-false",
    ),
    pytest.param(
        StreamCase(
            "deny_purge",
            lambda n: _base(n, deny_purge=True),
            lambda n: _base(n),
            ErrCode.STREAM_INVALID_CONFIG,
            "can not cancel deny purge",
        ),
        id="deny_purge-true-to-false",
    ),
    pytest.param(
        StreamCase(
            "mirror",
            lambda n: _base(n),
            lambda n: {"mirror": {"name": n.origin_a}},
            ErrCode.MIRROR_NOT_UPDATABLE,
            "stream mirror configuration can not be updated",
        ),
        id="mirror-added",
    ),
    pytest.param(
        StreamCase(
            "mirror",
            lambda n: {"mirror": {"name": n.origin_a}},
            lambda n: {"mirror": {"name": n.origin_b}},
            ErrCode.MIRROR_NOT_UPDATABLE,
            "stream mirror configuration can not be updated",
            mirror=True,
        ),
        id="mirror-changed",
    ),
    pytest.param(
        StreamCase(
            "mirror",
            lambda n: {"mirror": {"name": n.origin_a}},
            lambda n: {"mirror": {"name": n.origin_a, "filter_subject": f"{n.origin_a.lower()}.x"}},
            ErrCode.MIRROR_NOT_UPDATABLE,
            "stream mirror configuration can not be updated",
            mirror=True,
        ),
        id="mirror-filter-changed",
    ),
    pytest.param(
        StreamCase(
            "mirror",
            lambda n: {"mirror": {"name": n.origin_a}},
            lambda n: {"subjects": n.subjects},
            10055,
            "stream mirror configuration can not be updated",
            mirror=True,
        ),
        id="mirror-removed-before-2.12",
    ),
    pytest.param(
        StreamCase(
            "max_consumers",
            lambda n: _base(n),
            lambda n: _base(n, max_consumers=10),
            10052,
            "can not change MaxConsumers",
        ),
        id="max_consumers-before-2.12.5",
    ),
    pytest.param(
        StreamCase(
            "allow_msg_ttl",
            lambda n: _base(n, allow_msg_ttl=True),
            lambda n: _base(n),
            ErrCode.STREAM_INVALID_CONFIG,
            "message TTL status can not be disabled",
        ),
        id="allow_msg_ttl-true-to-false",
    ),
    pytest.param(
        StreamCase(
            "allow_msg_counter",
            lambda n: _base(n),
            lambda n: _base(n, allow_msg_counter=True),
            ErrCode.STREAM_INVALID_CONFIG,
            "can not change message counter setting",
        ),
        id="allow_msg_counter-false-to-true",
    ),
    pytest.param(
        StreamCase(
            "allow_msg_counter",
            lambda n: _base(n, allow_msg_counter=True),
            lambda n: _base(n),
            ErrCode.STREAM_INVALID_CONFIG,
            "can not change message counter setting",
            counter=True,
        ),
        id="allow_msg_counter-true-to-false",
    ),
    pytest.param(
        StreamCase(
            "allow_msg_schedules",
            lambda n: _base(n, allow_msg_schedules=True),
            lambda n: _base(n),
            ErrCode.STREAM_INVALID_CONFIG,
            "message schedules can not be disabled",
        ),
        id="allow_msg_schedules-true-to-false",
    ),
    pytest.param(
        StreamCase(
            "persist_mode",
            lambda n: _base(n, persist_mode="async"),
            lambda n: _base(n),
            ErrCode.STREAM_INVALID_CONFIG,
            "can not change persist mode",
        ),
        id="persist_mode-async-to-default",
    ),
    pytest.param(
        StreamCase(
            "persist_mode",
            lambda n: _base(n),
            lambda n: _base(n, persist_mode="async"),
            ErrCode.STREAM_INVALID_CONFIG,
            "can not change persist mode",
        ),
        id="persist_mode-default-to-async",
    ),
]


def _stream_project_text(n: Names, spec: dict[str, Any]) -> str:
    """The stream under test, its pull consumer, and the two (empty-spec) mirror origins."""
    return manifests(
        stream_doc(n.origin_a, {"subjects": n.origin_subjects(n.origin_a)}),
        stream_doc(n.origin_b, {"subjects": n.origin_subjects(n.origin_b)}),
        stream_doc(n.stream, spec),
        consumer_doc(CONSUMER, n.stream, {"ack_policy": "explicit"}),
    )


def _checks_only_set_limits(version: str) -> bool:
    v = tuple(int(p) for p in version.split("."))
    return v >= (2, 14, 3) or (2, 12, 12) <= v < (2, 14, 0)


def _canonical(kind: str, spec: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    config = {**extra, **spec}
    return canonical_stream(config) if kind == "Stream" else canonical_consumer(config)


def _refused_here(
    target: Target,
    kind: str,
    field_name: str,
    old: dict[str, Any],
    new: dict[str, Any],
    extra: dict[str, Any],
) -> None:
    """Skip unless this release knows the fields and refuses the change in place."""
    target.require(kind, old, new)
    before, after = _canonical(kind, old, extra), _canonical(kind, new, extra)
    if field_name not in {f for f, _ in target.replace_fields(kind, before, after)}:
        pytest.skip(f"nats-server {target.version} allows this {field_name} change in place")


def _settle_stream(project: TestProject, url: str, n: Names, case: StreamCase) -> None:
    """Apply the old manifest and give the stream messages and the consumer state."""
    first = case.initial or case.old
    project.write("streams.yaml", _stream_project_text(n, first(n)))
    _, result = project.apply()
    assert result is not None and result.ok
    if case.mirror:
        publish(url, f"{n.origin_a.lower()}.x")
        wait_messages(url, n.stream, MESSAGES)
    elif case.counter:
        publish(url, f"{n.subj}.x", headers={"Nats-Incr": "1"})
    else:
        publish(url, f"{n.subj}.x")
    fetch_unacked(url, n.stream, CONSUMER)
    if case.initial is not None:
        project.write("streams.yaml", _stream_project_text(n, case.old(n)))
        plan, result = project.apply()
        assert change_for(plan, "Stream", n.stream).action is Action.UPDATE
        assert result is not None and result.ok
    assert messages(url, n.stream) == MESSAGES
    assert consumer_info(url, n.stream, CONSUMER)["num_ack_pending"] == FETCHED
    assert_all_noop(project.plan())


@pytest.mark.parametrize("case", STREAM_REFUSED)
def test_stream_change_refused_in_place_is_a_replace(
    nats_server: SingleServer, project: TestProject, names: Names, case: StreamCase, target: Target
) -> None:
    url, n = nats_server.url, names
    _refused_here(target, "Stream", case.field, case.old(n), case.new(n), {"name": n.stream})
    _settle_stream(project, url, n, case)
    before = stream_info(url, n.stream)
    before_consumer = consumer_info(url, n.stream, CONSUMER)

    # 1. the server refuses the change in place
    reply = raw_stream_update(url, n.stream, spec_changes(case.old(n), case.new(n)))
    assert "error" in reply, reply
    assert reply["error"]["err_code"] == case.err_code, reply["error"]
    assert case.message in reply["error"]["description"], reply["error"]

    # 2. jsops plans a destructive replace naming the field, with the loss
    project.write("streams.yaml", _stream_project_text(n, case.new(n)))
    plan = project.plan()
    change = change_for(plan, "Stream", n.stream)
    assert change.action is Action.REPLACE, change.diff
    assert change.reason is Reason.CANNOT_UPDATE
    assert change.destructive
    assert case.field in change.replace_paths
    assert change.loss is not None and change.loss["messages"] == MESSAGES
    consumer_change = change_for(plan, "Consumer", CONSUMER)
    assert consumer_change.action is Action.REPLACE
    assert consumer_change.reason is Reason.STREAM_REPLACED
    assert consumer_change.loss is not None
    assert consumer_change.loss["num_ack_pending"] == FETCHED
    assert plan.summary["replace"] == 2

    # 3. without allow_replace: refused, nothing written
    with JsWriteCounter(url) as counter, pytest.raises(ApplyRefused) as refused:
        project.apply()
    assert counter.writes == []
    assert re.search(rf"\b{MESSAGES} messages\b|\bmessages {MESSAGES}\b", str(refused.value))
    still = stream_info(url, n.stream)
    assert still["state"]["messages"] == MESSAGES
    assert still["config"] == before["config"]
    assert still["created"] == before["created"]
    still_consumer = consumer_info(url, n.stream, CONSUMER)
    assert still_consumer["created"] == before_consumer["created"]
    assert still_consumer["num_ack_pending"] == FETCHED

    # 4. with allow_replace: recreated with the new config, messages gone, consumer back
    _, result = project.apply(allow_replace=True)
    assert result is not None and result.ok
    after = stream_info(url, n.stream)
    want = canonical_stream({"name": n.stream, **case.new(n)})
    assert canonical_stream(after["config"])[case.field] == want[case.field]
    if not case.mirror:  # a new mirror may already have copied the origin's messages again
        assert after["state"]["messages"] == 0
    assert after["created"] != before["created"]
    recreated = consumer_info(url, n.stream, CONSUMER)
    assert recreated["created"] != before_consumer["created"]
    assert recreated["num_ack_pending"] == 0
    assert_all_noop(project.plan())


# ---------------------------------------------------------------- consumers: refused in place


@dataclass(frozen=True)
class ConsumerCase:
    """A consumer change the server refuses: ``old`` -> ``new`` (specs, API units)."""

    field: str
    old: Spec
    new: Spec
    message: str
    err_code: int = ErrCode.CONSUMER_CREATE
    raw_extra: dict[str, Any] = field(default_factory=dict)  # also sent in the raw update


def _pull(**extra: Any) -> Spec:
    return lambda n: {"ack_policy": "explicit", **extra}


def _push(**extra: Any) -> Spec:
    return lambda n: {"deliver_subject": f"deliver.{n.subj}", **extra}


CONSUMER_REFUSED = [
    pytest.param(
        ConsumerCase(
            "deliver_policy",
            _pull(),
            _pull(deliver_policy="new"),
            "deliver policy can not be updated",
        ),
        id="deliver_policy",
    ),
    pytest.param(
        ConsumerCase(
            "opt_start_seq",
            _pull(deliver_policy="by_start_sequence", opt_start_seq=1),
            _pull(deliver_policy="by_start_sequence", opt_start_seq=2),
            "start sequence can not be updated",
        ),
        id="opt_start_seq",
    ),
    pytest.param(
        ConsumerCase(
            "opt_start_time",
            _pull(deliver_policy="by_start_time", opt_start_time="2024-01-01T00:00:00Z"),
            _pull(deliver_policy="by_start_time", opt_start_time="2025-01-01T00:00:00Z"),
            "start time can not be updated",
        ),
        id="opt_start_time",
    ),
    pytest.param(
        ConsumerCase(
            "ack_policy", _pull(), _pull(ack_policy="all"), "ack policy can not be updated"
        ),
        id="ack_policy",
    ),
    pytest.param(
        ConsumerCase(
            "replay_policy",
            _pull(),
            _pull(replay_policy="original"),
            "replay policy can not be updated",
        ),
        id="replay_policy",
    ),
    pytest.param(
        ConsumerCase(
            "idle_heartbeat",
            _push(idle_heartbeat=SECOND),
            _push(idle_heartbeat=2 * SECOND),
            "heart beats can not be updated",
        ),
        id="idle_heartbeat",
    ),
    pytest.param(
        ConsumerCase(
            "flow_control",
            _push(idle_heartbeat=SECOND),
            _push(idle_heartbeat=SECOND, flow_control=True),
            "flow control can not be updated",
        ),
        id="flow_control",
    ),
    pytest.param(
        ConsumerCase(
            "max_waiting", _pull(), _pull(max_waiting=100), "max waiting can not be updated"
        ),
        id="max_waiting",
    ),
    pytest.param(
        ConsumerCase(
            "deliver_subject",
            _pull(),
            lambda n: {"ack_policy": "explicit", "deliver_subject": f"deliver.{n.subj}"},
            "can not update pull consumer to push based",
            raw_extra={"max_waiting": None},  # else 10080: push mode can not set max waiting
        ),
        id="pull-to-push",
    ),
    pytest.param(
        ConsumerCase(
            "deliver_subject",
            lambda n: {"ack_policy": "explicit", "deliver_subject": f"deliver.{n.subj}"},
            _pull(),
            "can not update push consumer to pull based",
        ),
        id="push-to-pull",
    ),
    pytest.param(
        ConsumerCase(
            "mem_storage", _pull(), _pull(mem_storage=True), "storage type can not be updated"
        ),
        id="mem_storage",
    ),
]


def _consumer_project_text(n: Names, spec: dict[str, Any]) -> str:
    return manifests(stream_doc(n.stream, _base(n)), consumer_doc(CONSUMER, n.stream, spec))


@pytest.mark.parametrize("case", CONSUMER_REFUSED)
def test_consumer_change_refused_in_place_is_a_replace(
    nats_server: SingleServer,
    project: TestProject,
    names: Names,
    case: ConsumerCase,
    target: Target,
) -> None:
    url, n = nats_server.url, names
    old, new = case.old(n), case.new(n)
    _refused_here(target, "Consumer", case.field, old, new, {"durable_name": CONSUMER})
    project.write("streams.yaml", _consumer_project_text(n, old))
    _, result = project.apply()
    assert result is not None and result.ok
    publish(url, f"{n.subj}.x")
    pull = not old.get("deliver_subject")
    if pull:
        fetch_unacked(url, n.stream, CONSUMER)
    before = consumer_info(url, n.stream, CONSUMER)
    assert before["num_ack_pending"] == (FETCHED if pull else 0)
    assert_all_noop(project.plan())

    # 1. the server refuses the change in place
    changes = {**spec_changes(old, new), **case.raw_extra}
    reply = raw_consumer_update(url, n.stream, CONSUMER, changes)
    assert "error" in reply, reply
    assert reply["error"]["err_code"] == case.err_code, reply["error"]
    assert case.message in reply["error"]["description"], reply["error"]

    # 2. jsops plans a destructive replace of the consumer only
    project.write("streams.yaml", _consumer_project_text(n, new))
    plan = project.plan()
    assert change_for(plan, "Stream", n.stream).action is Action.NOOP
    change = change_for(plan, "Consumer", CONSUMER)
    assert change.action is Action.REPLACE, change.diff
    assert change.reason is Reason.CANNOT_UPDATE
    assert change.destructive
    assert case.field in change.replace_paths
    assert change.loss is not None
    assert {k: change.loss[k] for k in ("num_pending", "num_ack_pending", "num_redelivered")} == {
        "num_pending": before["num_pending"],
        "num_ack_pending": before["num_ack_pending"],
        "num_redelivered": before["num_redelivered"],
    }
    # delivery restarts: nothing was acknowledged here, so nothing is processed twice
    assert change.loss.get("redelivered", 0) == 0

    # 3. without allow_replace: refused, nothing written
    with JsWriteCounter(url) as counter, pytest.raises(ApplyRefused):
        project.apply()
    assert counter.writes == []
    still = consumer_info(url, n.stream, CONSUMER)
    assert still["config"] == before["config"]
    assert still["created"] == before["created"]
    assert still["num_ack_pending"] == before["num_ack_pending"]
    assert still["delivered"]["stream_seq"] == before["delivered"]["stream_seq"]

    # 4. with allow_replace: a new consumer with the new config; the stream keeps its messages
    _, result = project.apply(allow_replace=True)
    assert result is not None and result.ok
    after = consumer_info(url, n.stream, CONSUMER)
    want = canonical_consumer({"durable_name": CONSUMER, **new})
    assert canonical_consumer(after["config"])[case.field] == want[case.field]
    assert after["created"] != before["created"]
    assert after["num_ack_pending"] == 0
    assert messages(url, n.stream) == MESSAGES
    assert_all_noop(project.plan())


# ---------------------------------------------------------------- allowed in place


@dataclass(frozen=True)
class InPlaceCase:
    """A change the server allows in place: ``old`` -> ``new`` for the stream or consumer."""

    stream_old: Spec
    stream_new: Spec
    consumer_old: Spec
    consumer_new: Spec | None = None  # None: the same as consumer_old
    kind: str = "Stream"  # which resource the plan updates


def _stream(old: Spec, new: Spec) -> InPlaceCase:
    return InPlaceCase(old, new, _pull())


def _consumer(old: Spec, new: Spec) -> InPlaceCase:
    return InPlaceCase(_base, _base, old, new, kind="Consumer")


IN_PLACE = [
    pytest.param(_stream(_base, lambda n: _base(n, max_age=3600 * SECOND)), id="max_age"),
    pytest.param(
        _stream(_base, lambda n: {"subjects": [*n.subjects, f"more.{n.subj}"]}), id="subjects-add"
    ),
    pytest.param(_stream(_base, lambda n: _base(n, description="new words")), id="description"),
    pytest.param(
        _stream(_base, lambda n: _base(n, retention="interest")), id="retention-limits-to-interest"
    ),
    pytest.param(
        _stream(lambda n: _base(n, retention="interest"), _base), id="retention-interest-to-limits"
    ),
    pytest.param(_stream(_base, lambda n: _base(n, deny_delete=True)), id="deny_delete-on"),
    pytest.param(_stream(_base, lambda n: _base(n, deny_purge=True)), id="deny_purge-on"),
    pytest.param(_stream(_base, lambda n: _base(n, allow_msg_ttl=True)), id="allow_msg_ttl-on"),
    pytest.param(
        _stream(_base, lambda n: _base(n, allow_msg_schedules=True)), id="allow_msg_schedules-on"
    ),
    pytest.param(_stream(_base, lambda n: _base(n, sealed=True)), id="sealed-on"),
    pytest.param(_stream(_base, lambda n: _base(n, max_consumers=10)), id="max_consumers"),
    pytest.param(_stream(_base, lambda n: _base(n, compression="s2")), id="compression"),
    pytest.param(
        _stream(_base, lambda n: _base(n, discard="new", max_msgs=100)), id="discard-max_msgs"
    ),
    pytest.param(_consumer(_pull(max_deliver=5), _pull(max_deliver=10)), id="max_deliver"),
    pytest.param(_consumer(_pull(), _pull(ack_wait=60 * SECOND)), id="ack_wait"),
    pytest.param(
        _consumer(_pull(max_deliver=5), _pull(max_deliver=5, backoff=[SECOND, 2 * SECOND])),
        id="backoff",
    ),
    pytest.param(
        _consumer(
            lambda n: {"ack_policy": "explicit", "filter_subjects": [f"{n.subj}.x"]},
            lambda n: {"ack_policy": "explicit", "filter_subjects": [f"{n.subj}.x", f"{n.subj}.y"]},
        ),
        id="filter_subjects",
    ),
    pytest.param(_consumer(_pull(), _pull(max_ack_pending=50)), id="max_ack_pending"),
    pytest.param(_consumer(_pull(), _pull(description="new words")), id="consumer-description"),
    pytest.param(
        _consumer(_pull(), _pull(inactive_threshold=3600 * SECOND)), id="inactive_threshold"
    ),
    pytest.param(
        _consumer(_pull(), _pull(max_batch=10, max_expires=30 * SECOND)), id="max_batch-max_expires"
    ),
    pytest.param(_consumer(_pull(), _pull(metadata={"team": "b"})), id="consumer-metadata"),
    # probes beyond the brief's list
    pytest.param(_stream(_base, lambda n: _base(n, allow_atomic=True)), id="allow_atomic-on"),
    pytest.param(_stream(lambda n: _base(n, allow_atomic=True), _base), id="allow_atomic-off"),
    pytest.param(_stream(_base, lambda n: _base(n, allow_batched=True)), id="allow_batched-on"),
    pytest.param(_stream(lambda n: _base(n, allow_batched=True), _base), id="allow_batched-off"),
    pytest.param(
        _stream(_base, lambda n: _base(n, allow_rollup_hdrs=True)), id="allow_rollup_hdrs-on"
    ),
    pytest.param(
        _stream(lambda n: _base(n, allow_rollup_hdrs=True), _base), id="allow_rollup_hdrs-off"
    ),
    pytest.param(_stream(lambda n: _base(n, allow_direct=True), _base), id="allow_direct-off"),
    pytest.param(_stream(_base, lambda n: _base(n, no_ack=True)), id="no_ack-on"),
    pytest.param(
        _stream(
            _base,
            lambda n: _base(
                n, discard="new", max_msgs_per_subject=10, discard_new_per_subject=True
            ),
        ),
        id="discard_new_per_subject",
    ),
    pytest.param(
        _stream(_base, lambda n: _base(n, republish={"src": ">", "dest": f"re.{n.subj}.>"})),
        id="republish",
    ),
    pytest.param(
        _stream(
            _base,
            lambda n: _base(n, subject_transform={"src": f"{n.subj}.z", "dest": f"{n.subj}.zz"}),
        ),
        id="subject_transform",
    ),
    pytest.param(
        _stream(_base, lambda n: _base(n, consumer_limits={"inactive_threshold": 3600 * SECOND})),
        id="consumer_limits",
    ),
    pytest.param(
        _stream(
            _base,
            lambda n: _base(
                n, consumer_limits={"inactive_threshold": 3600 * SECOND, "max_ack_pending": 1000}
            ),
        ),
        id="consumer_limits-both",
    ),
    pytest.param(
        _stream(_base, lambda n: _base(n, subject_delete_marker_ttl=60 * SECOND)),
        id="subject_delete_marker_ttl-on",
    ),
    pytest.param(
        _stream(
            lambda n: _base(n, subject_delete_marker_ttl=60 * SECOND),
            lambda n: _base(n, allow_msg_ttl=True, allow_rollup_hdrs=True),
        ),
        id="subject_delete_marker_ttl-off",
    ),
    pytest.param(_stream(_base, lambda n: _base(n, max_consumers=1)), id="max_consumers-at-count"),
    pytest.param(_stream(_base, lambda n: _base(n, duplicate_window=10 * SECOND)), id="dup_window"),
    pytest.param(_stream(_base, lambda n: _base(n, metadata={"team": "b"})), id="metadata"),
    pytest.param(_stream(_base, lambda n: _base(n, first_seq=100)), id="first_seq"),
    pytest.param(
        _consumer(_pull(max_deliver=5, backoff=[SECOND]), _pull(max_deliver=5)), id="backoff-off"
    ),
    pytest.param(
        _consumer(
            lambda n: {"ack_policy": "explicit", "filter_subject": f"{n.subj}.x"},
            lambda n: {"ack_policy": "explicit", "filter_subjects": [f"{n.subj}.x", f"{n.subj}.y"]},
        ),
        id="filter_subject-to-filter_subjects",
    ),
    pytest.param(_consumer(_pull(), _pull(headers_only=True)), id="headers_only"),
    pytest.param(_consumer(_pull(), _pull(sample_freq="50%")), id="sample_freq"),
    pytest.param(_consumer(_pull(), _pull(max_bytes=1024 * 1024)), id="consumer-max_bytes"),
    pytest.param(
        _consumer(_pull(), _pull(priority_groups=["jobs"], priority_policy="pinned_client")),
        id="priority-pinned",
    ),
    pytest.param(
        _consumer(_pull(), _pull(priority_groups=["jobs"], priority_policy="overflow")),
        id="priority-overflow",
    ),
    pytest.param(
        _consumer(_push(), lambda n: {"deliver_subject": f"elsewhere.{n.subj}"}),
        id="push-deliver_subject",
    ),
    pytest.param(
        _consumer(_push(), _push(deliver_group="g", rate_limit_bps=1_000_000)),
        id="push-deliver_group-rate_limit",
    ),
]


@pytest.mark.parametrize("case", IN_PLACE)
def test_change_allowed_in_place_is_an_update_that_keeps_the_consumer(
    nats_server: SingleServer,
    project: TestProject,
    names: Names,
    case: InPlaceCase,
    target: Target,
) -> None:
    url, n = nats_server.url, names
    consumer_new = case.consumer_new or case.consumer_old
    target.require("Stream", case.stream_old(n), case.stream_new(n))
    target.require("Consumer", case.consumer_old(n), consumer_new(n))
    limits = case.stream_new(n).get("consumer_limits") or {}
    if len(limits) == 1 and not _checks_only_set_limits(target.version):
        # before v2.12.12 / v2.14.3 the server compares every consumer with both limits,
        # an unset one as 0, and refuses the update (10069 "change to limits violates")
        pytest.skip(f"nats-server {target.version} refuses setting one consumer limit alone")
    for kind, old, new, extra in (
        ("Stream", case.stream_old(n), case.stream_new(n), {"name": n.stream}),
        ("Consumer", case.consumer_old(n), consumer_new(n), {"durable_name": CONSUMER}),
    ):
        refused = target.replace_fields(
            kind, _canonical(kind, old, extra), _canonical(kind, new, extra)
        )
        if refused:
            pytest.skip(f"refused in place on nats-server {target.version}: {refused[0][1]}")

    def text(stream: Spec, consumer: Spec) -> str:
        return manifests(
            stream_doc(n.stream, stream(n)), consumer_doc(CONSUMER, n.stream, consumer(n))
        )

    project.write("streams.yaml", text(case.stream_old, case.consumer_old))
    _, result = project.apply()
    assert result is not None and result.ok
    publish(url, f"{n.subj}.x")
    pull = not case.consumer_old(n).get("deliver_subject")
    if pull:
        fetch_unacked(url, n.stream, CONSUMER)
    before_stream = stream_info(url, n.stream)
    before = consumer_info(url, n.stream, CONSUMER)
    assert before["delivered"]["stream_seq"] == (FETCHED if pull else 0)

    project.write("streams.yaml", text(case.stream_new, consumer_new))
    plan = project.plan()
    kind_name = n.stream if case.kind == "Stream" else CONSUMER
    change = change_for(plan, case.kind, kind_name)
    assert change.action is Action.UPDATE, (change.action, change.replace_paths, change.diff)
    assert not change.destructive
    assert not change.replace_paths
    assert not [c for c in plan.changes if c.action is Action.REPLACE]

    _, result = project.apply()
    assert result is not None and result.ok
    after_stream = stream_info(url, n.stream)
    after = consumer_info(url, n.stream, CONSUMER)
    assert after_stream["created"] == before_stream["created"]
    assert after_stream["state"]["messages"] == MESSAGES
    assert after["created"] == before["created"]
    assert after["delivered"]["stream_seq"] == before["delivered"]["stream_seq"]
    assert after["num_ack_pending"] == before["num_ack_pending"]
    if case.kind == "Stream":
        want = canonical_stream({"name": n.stream, **case.stream_new(n)})
        got = canonical_stream(after_stream["config"])
    else:
        want = canonical_consumer({"durable_name": CONSUMER, **consumer_new(n)})
        got = canonical_consumer(after["config"])
    assert {d.path.split(".")[0] for d in change.diff} <= set(got)
    for path in {d.path.split(".")[0] for d in change.diff} - {"metadata"}:
        assert got[path] == want[path], path
    assert_all_noop(project.plan())


@pytest.mark.parametrize("own_subjects", [True, False], ids=["with-subjects", "default-subject"])
def test_removing_a_mirror_is_an_in_place_promotion(
    nats_server: SingleServer,
    project: TestProject,
    names: Names,
    own_subjects: bool,
    target: Target,
) -> None:
    """From 2.12 the server promotes a mirror to a normal stream, keeping its messages.

    Without subjects in the manifest the promoted stream takes its name as its subject.
    """
    url, n = nats_server.url, names
    if target.api_level < 2:
        pytest.skip(f"nats-server {target.version} refuses removing a mirror (before 2.12)")
    old = {"mirror": {"name": n.origin_a}}
    new = {"subjects": n.subjects} if own_subjects else {}
    project.write("streams.yaml", _stream_project_text(n, old))
    _, result = project.apply()
    assert result is not None and result.ok
    publish(url, f"{n.origin_a.lower()}.x")
    wait_messages(url, n.stream, MESSAGES)
    fetch_unacked(url, n.stream, CONSUMER)
    before_stream = stream_info(url, n.stream)
    before = consumer_info(url, n.stream, CONSUMER)

    project.write("streams.yaml", _stream_project_text(n, new))
    plan = project.plan()
    change = change_for(plan, "Stream", n.stream)
    assert change.action is Action.UPDATE, (change.replace_paths, change.diff)
    assert not change.destructive
    assert "mirror" in {d.path.split(".")[0] for d in change.diff}
    assert plan.api_level >= 2

    _, result = project.apply()
    assert result is not None and result.ok
    after_stream = stream_info(url, n.stream)
    assert "mirror" not in after_stream["config"] or not after_stream["config"]["mirror"]
    assert after_stream["created"] == before_stream["created"]
    assert after_stream["state"]["messages"] == MESSAGES
    after = consumer_info(url, n.stream, CONSUMER)
    assert after["created"] == before["created"]
    assert after["delivered"]["stream_seq"] == before["delivered"]["stream_seq"]
    # a normal stream now: it takes its own subjects
    publish(url, f"{n.subj}.y" if own_subjects else n.stream, 1)
    assert messages(url, n.stream) == MESSAGES + 1
    assert_all_noop(project.plan())


def test_every_row_for_this_server_has_a_live_case(nats_server: SingleServer) -> None:
    """Each row that holds on the test server is shown by a live case above."""
    info = js_request_sync(nats_server.url, f"{API}.INFO")
    level = (info.get("api") or {}).get("level") or 0  # 2.10 has no API level

    async def version() -> str:
        nc = await nats.connect(nats_server.url)
        try:
            return str(server_info(nc).get("version", ""))
        finally:
            await nc.close()

    server_version = asyncio.run(version())
    stream_fields = {p.values[0].field for p in STREAM_REFUSED}
    consumer_fields = {p.values[0].field for p in CONSUMER_REFUSED}
    for rule in STREAM_REPLACE_RULES:
        if rule.applies(level, server_version):
            assert rule.field in stream_fields, rule
    for rule in CONSUMER_REPLACE_RULES:
        if rule.applies(level, server_version):
            assert rule.field in consumer_fields, rule


def test_a_sealed_stream_is_never_planned_as_a_create(
    nats_server: SingleServer, project: TestProject, names: Names
) -> None:
    """The server refuses to create a stream sealed (checked here, on this release): a
    new stream with ``sealed: true``, or a replace of a sealed one (a delete, then that
    create), is a located plan error and nothing is written; sealing one that exists
    is an update."""
    url, n = nats_server.url, names
    refused = js_request_sync(
        url,
        f"{API}.STREAM.CREATE.{n.origin_a}",
        {"name": n.origin_a, "subjects": [f"{n.subj}.raw"], "sealed": True, "storage": "file"},
    )
    assert "error" in refused, refused  # if a release allowed it, this check could go

    def write(spec: str) -> None:
        project.write(
            "s.yaml",
            f"""
            apiVersion: jsops/v1
            kind: Stream
            metadata: {{name: {n.stream}}}
            spec: {{subjects: ["{n.subj}.>"], {spec}}}
            """,
        )

    write("sealed: true")
    code, _, err = project.cli("plan")
    assert code == 1
    assert "s.yaml:4:" in err and "sealed: true: a new stream cannot be created sealed" in err
    code, _, err = project.cli("apply", "--auto-approve")
    assert code == 1
    assert "error" in js_request_sync(url, f"{API}.STREAM.INFO.{n.stream}")  # not made

    write("sealed: false")
    _, result = project.apply()
    assert result is not None and result.ok
    publish(url, f"{n.subj}.x", 3)
    write("sealed: true")
    _, result = project.apply()
    assert result is not None and result.ok
    assert stream_info(url, n.stream)["config"]["sealed"] is True

    write("sealed: true, storage: memory")  # storage cannot change: a replace
    code, _, err = project.cli("apply", "--auto-approve", "--allow-replace")
    assert code == 1 and "whose new copy cannot be created sealed" in err
    assert messages(url, n.stream) == 3  # not deleted


# consumer_limits before -> after (manifest units), and whether a consumer no manifest
# declares (max_ack_pending 1000) sits on the stream
LIMIT_CHANGES = [
    pytest.param(None, {"inactive_threshold": "1h"}, id="inactive_threshold-set-alone"),
    pytest.param(None, {"max_ack_pending": 2000}, id="max_ack_pending-set-alone"),
    pytest.param({"inactive_threshold": "1h", "max_ack_pending": 2000}, None, id="removed"),
    pytest.param({"max_ack_pending": 2000}, {"max_ack_pending": 500}, id="below-a-consumer"),
]


@pytest.mark.parametrize(("before", "after"), LIMIT_CHANGES)
def test_a_consumer_limits_change_the_server_refuses_is_a_plan_error_exactly_where_refused(
    nats_server: SingleServer,
    tmp_path: Path,
    target: Target,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> None:
    """The server refuses a stream update of consumer_limits that a consumer exceeds as
    it is when the update arrives; before 2.12.12 and 2.14.3 every change is checked and
    an unset limit counts as 0, so setting inactive_threshold alone or removing the limits
    is refused while an ack consumer holds max_ack_pending 1000. The plan is a located
    error exactly when a raw update of the stream is refused, and otherwise applies."""
    url = nats_server.url
    name = unique_name("CLIM")
    project = make_project(tmp_path, url)

    def text(limits: dict[str, Any] | None) -> str:
        spec: dict[str, Any] = {"subjects": [f"{name.lower()}.>"]}
        if limits:
            spec["consumer_limits"] = limits
        return (
            f"apiVersion: jsops/v1\nkind: Stream\nmetadata: {{name: {name}}}\n"
            f"spec: {json.dumps(spec)}\n---\napiVersion: jsops/v1\nkind: Consumer\n"
            f"metadata: {{name: c, stream: {name}}}\nspec: {{ack_policy: explicit}}\n"
        )

    project.write("s.yaml", text(before))
    _, result = project.apply()
    assert result is not None and result.ok
    undeclared = {"durable_name": "u", "ack_policy": "explicit", "max_ack_pending": 1000}
    made = js_request_sync(
        url, f"{API}.CONSUMER.CREATE.{name}.u", {"stream_name": name, "config": undeclared}
    )
    assert "error" not in made, made
    project.write("s.yaml", text(after))
    code, out, err = project.cli("plan")
    if code == 0:  # planned: the server takes it
        _, result = project.apply()
        assert result is not None and result.ok
        assert all(c.action is Action.NOOP for c in project.plan().changes)
        return
    assert code == 1 and out == "", (out, err)
    assert "manifests/s.yaml:" in err and "consumer_limits:" in err, err
    assert f"nats-server {target.version} refuses" in err, err
    live = js_request_sync(url, f"{API}.STREAM.INFO.{name}")["config"]
    api = {"1h": 3600 * SECOND}
    limits = {k: api.get(v, v) for k, v in (after or {}).items()}
    refused = js_request_sync(
        url, f"{API}.STREAM.UPDATE.{name}", {**live, "consumer_limits": limits}
    )
    assert "change to limits violates consumers" in refused.get("error", {}).get(
        "description", ""
    ), refused
    # the consumers named are the server's, less one whose manifest lowers it first
    named = set(re.findall(r"\b([cu]) \(", err))
    assert named and named <= set(re.findall(r"\b([cu])\b", refused["error"]["description"]))
