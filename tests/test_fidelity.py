"""Fidelity corpus: on every supported release (``make test-matrix``), each configuration

1. applies, every config written valid against jsm.go's JetStream API schemas and
   complete (nothing left to a server default);
2. plans ``noop`` right after;
3. re-applies with zero JetStream write requests;
4. exported from the live state, re-plans ``noop``.

A configuration that uses a field the release does not know is a plan error naming the
field and the release that introduced it (checked), then the case is skipped.
Placeholders: ``{S}`` the case's main stream, ``{A}``/``{B}`` two origin streams,
``{p}``/``{a}``/``{b}`` their subject prefixes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from harness import jsm_schema
from harness.project import TestProject, make_project
from harness.releases import Target
from harness.servers import HubAndLeaf, JsWriteCounter, SingleServer, js_request_sync, unique_name

from reconciler.errors import ManifestError
from reconciler.plan import Action

ORIGINS = "{A}: {subjects: ['{a}.>']}\n{B}: {subjects: ['{b}.>'], allow_direct: true}"


@dataclass(frozen=True)
class Case:
    stream: str  # the main stream's spec (YAML flow)
    consumers: tuple[str, ...] = ()
    origins: bool = False  # also declare origin streams {A} and {B}
    extra: dict[str, str] = field(default_factory=dict)


def c(stream: str, *consumers: str, origins: bool = False) -> Case:
    return Case(stream, consumers, origins)


SUBJ = "subjects: ['{p}.>']"
CORPUS = {
    # streams: storage, retention, limits
    "defaults-only": c("{}"),
    "subjects-set": c("{subjects: ['{p}.z', '{p}.a', '{p}.m.*']}"),
    "memory": c(f"{{{SUBJ}, storage: memory}}"),
    "memory-discard-new": c(f"{{{SUBJ}, storage: memory, discard: new, max_msgs: 100}}"),
    "workqueue": c(
        f"{{{SUBJ}, retention: workqueue}}",
        "{ack_policy: explicit, filter_subject: '{p}.a'}",
        "{ack_policy: explicit, filter_subjects: ['{p}.c', '{p}.b']}",
    ),
    "interest": c(
        f"{{{SUBJ}, retention: interest}}",
        "{ack_policy: explicit}",
        "{deliver_subject: 'dlv.{p}', ack_policy: explicit}",
    ),
    "limits": c(
        f"{{{SUBJ}, max_consumers: 10, max_msgs: 1000, max_bytes: 10MiB, "
        "max_msgs_per_subject: 5, max_msg_size: 64KiB}"
    ),
    "short-max-age": c(f"{{{SUBJ}, max_age: 1s}}"),
    "max-age-below-2m": c(f"{{{SUBJ}, max_age: 90s, duplicate_window: 30s}}"),
    "max-age-7d-dupes-5m": c(f"{{{SUBJ}, max_age: 7d, duplicate_window: 5m}}"),
    "discard-new-per-subject": c(
        f"{{{SUBJ}, discard: new, max_msgs_per_subject: 3, discard_new_per_subject: true}}"
    ),
    "compression-direct-rollup": c(
        f"{{{SUBJ}, compression: s2, allow_direct: true, allow_rollup_hdrs: true}}"
    ),
    "deny-delete-purge": c(f"{{{SUBJ}, deny_delete: true, deny_purge: true}}"),
    "no-ack-first-seq": c(f"{{{SUBJ}, no_ack: true, first_seq: 100}}"),
    "description-metadata": c(f"{{{SUBJ}, description: orders, metadata: {{team: a, tier: b}}}}"),
    "explicit-defaults": c(f"{{{SUBJ}, num_replicas: 1, max_bytes: -1, max_msgs: 0}}"),
    # transforms and republish
    "subject-transform": c(
        "{subjects: ['{p}.in.>'], subject_transform: {src: '{p}.in.>', dest: '{p}.out.>'}}"
    ),
    "republish": c(f"{{{SUBJ}, republish: {{dest: 'rp.{{p}}.>'}}}}"),
    "republish-headers-only": c(
        f"{{{SUBJ}, republish: {{src: '{{p}}.>', dest: 'rp.{{p}}.>', headers_only: true}}}}"
    ),
    "consumer-limits": c(
        f"{{{SUBJ}, consumer_limits: {{inactive_threshold: 1h, max_ack_pending: 200}}}}",
        "{ack_policy: explicit}",
        "{ack_policy: explicit, max_ack_pending: 50}",
    ),
    # sources and mirrors
    "sourced": c("{sources: [{name: '{A}'}, {name: '{B}'}]}", origins=True),
    "sourced-with-subjects": c(f"{{{SUBJ}, sources: [{{name: '{{A}}'}}]}}", origins=True),
    "sourced-filtered": c(
        "{sources: [{name: '{A}', filter_subject: '{a}.x'}, {name: '{B}'}]}", origins=True
    ),
    "sourced-transformed": c(
        "{sources: [{name: '{A}', subject_transforms: [{src: '{a}.>', dest: 'moved.{a}.>'}]}]}",
        origins=True,
    ),
    "sourced-start-seq": c("{sources: [{name: '{A}', opt_start_seq: 1}]}", origins=True),
    "sourced-dupes": c("{sources: [{name: '{A}'}], duplicate_window: 1m}", origins=True),
    "sourced-short-max-age": c("{sources: [{name: '{A}'}], max_age: 30s}", origins=True),
    "mirror": c("{mirror: {name: '{A}'}}", "{ack_policy: explicit}", origins=True),
    "mirror-filtered": c("{mirror: {name: '{A}', filter_subject: '{a}.x'}}", origins=True),
    "mirror-of-direct": c("{mirror: {name: '{B}'}}", origins=True),
    # newer stream fields
    "msg-ttl": c(f"{{{SUBJ}, allow_msg_ttl: true}}"),
    "delete-marker-ttl": c(f"{{{SUBJ}, subject_delete_marker_ttl: 5m}}"),
    "counter": c(f"{{{SUBJ}, allow_msg_counter: true}}"),
    "atomic": c(f"{{{SUBJ}, allow_atomic: true}}"),
    "batched": c(f"{{{SUBJ}, allow_batched: true}}"),
    "schedules": c(f"{{{SUBJ}, allow_msg_schedules: true}}"),
    "persist-async": c(f"{{{SUBJ}, persist_mode: async}}"),
    # consumers
    "consumer-ack-policies": c(
        f"{{{SUBJ}}}", "{}", "{ack_policy: explicit}", "{ack_policy: all, ack_wait: 1m}"
    ),
    "consumer-backoff": c(
        f"{{{SUBJ}}}",
        "{ack_policy: explicit, max_deliver: 5, backoff: [1s, 5s, 30s]}",
        "{ack_policy: explicit, ack_wait: 10s, max_deliver: 3}",
    ),
    "consumer-filters-set": c(
        f"{{{SUBJ}}}",
        "{filter_subject: '{p}.a'}",
        "{filter_subjects: ['{p}.c', '{p}.a', '{p}.b']}",
    ),
    "consumer-deliver-policies": c(
        f"{{{SUBJ}}}",
        "{deliver_policy: last}",
        "{deliver_policy: new}",
        "{deliver_policy: last_per_subject, filter_subject: '{p}.a'}",
        "{deliver_policy: by_start_sequence, opt_start_seq: 10}",
        "{deliver_policy: by_start_time, opt_start_time: '2026-01-02T03:04:05+01:00'}",
    ),
    "consumer-push": c(
        f"{{{SUBJ}}}",
        "{deliver_subject: 'dlv.{p}.a', ack_policy: explicit, idle_heartbeat: 5s, "
        "flow_control: true}",
        "{deliver_subject: 'dlv.{p}.b', deliver_group: workers, rate_limit_bps: 1000000, "
        "headers_only: true, replay_policy: original}",
        "{deliver_subject: 'dlv.{p}.c'}",
    ),
    "consumer-pull-limits": c(
        f"{{{SUBJ}}}",
        "{max_waiting: 16, max_batch: 100, max_expires: 30s, max_bytes: 1MiB}",
        "{inactive_threshold: 1h, description: scaled, sample_freq: '50%'}",
        "{mem_storage: true, num_replicas: 1, metadata: {owner: team-a}}",
    ),
    "consumer-memory-stream": c(
        f"{{{SUBJ}, storage: memory}}", "{ack_policy: explicit, max_ack_pending: -1}"
    ),
    "consumer-pinned": c(
        f"{{{SUBJ}}}",
        "{ack_policy: explicit, priority_groups: [jobs], priority_policy: pinned_client}",
    ),
    "consumer-overflow": c(
        f"{{{SUBJ}}}", "{ack_policy: explicit, priority_groups: [spill], priority_policy: overflow}"
    ),
    "consumer-prioritized": c(
        f"{{{SUBJ}}}",
        "{ack_policy: explicit, priority_groups: [jobs], priority_policy: prioritized}",
    ),
    "consumer-paused": c(f"{{{SUBJ}}}", "{pause_until: '2099-01-01T00:00:00Z'}"),
}


def _names() -> dict[str, str]:
    main, a, b = unique_name("FID"), unique_name("FIDA"), unique_name("FIDB")
    return {"S": main, "A": a, "B": b, "p": main.lower(), "a": a.lower(), "b": b.lower()}


def _fill(text: str, names: dict[str, str]) -> str:
    return re.sub(r"\{([SABpab])\}", lambda m: names[m.group(1)], text)


def _doc(kind: str, metadata: str, spec: str) -> str:
    return f"apiVersion: jsops/v1\nkind: {kind}\nmetadata: {metadata}\nspec: {spec}\n"


def _manifests(case: Case, names: dict[str, str]) -> str:
    docs = []
    if case.origins:
        for line in ORIGINS.splitlines():
            name, _, spec = line.partition(": ")
            docs.append(_doc("Stream", f"{{name: {name}}}", spec))
    docs.append(_doc("Stream", "{name: {S}}", case.stream))
    for i, spec in enumerate(case.consumers):
        docs.append(_doc("Consumer", f"{{name: c{i}, stream: {{S}}}}", spec))
    return _fill("---\n".join(docs), names)


def _client_writes(counter: JsWriteCounter) -> list[str]:
    """Writes, without the server's own: a sourcing or mirroring stream (re)creates its
    consumers on the origins: unnamed, or named ``JS_SRC_*``/``JS_MIRROR_*`` (2.14+),
    ``src-*``/``mirror-*`` (before)."""
    internal = re.compile(r"\.API\.CONSUMER\.CREATE\.[^.]+($|\.(JS_SRC_|JS_MIRROR_|src-|mirror-))")
    return [w for w in counter.writes if not internal.search(w)]


def _round_trip(
    project: TestProject, url: str, streams: list[str], target: Target, tmp_path: Path
) -> None:
    plan = target.plan_or_skip(project.plan)
    assert all(c.action is Action.CREATE for c in plan.changes)
    with JsWriteCounter(url) as counter:
        _plan, result = project.apply()
    assert result is not None and result.ok, result
    assert counter.writes, "nothing was written"
    assert jsm_schema.write_problems(counter) == []

    again = project.plan()
    assert [(str(c.address), c.diff) for c in again.changes if c.action is not Action.NOOP] == []

    with JsWriteCounter(url) as counter:
        _plan, result = project.apply()
    assert result is None
    assert _client_writes(counter) == []

    # export of the live state re-plans noop (the same project: same owner tag)
    code, _out, err = project.cli("export", "--out", "exported", "--include-declared")
    assert code == 0, err
    readopt = make_project(tmp_path / "readopt", url, name=project.name)
    for stream in streams:
        readopt.write(f"{stream}.yaml", (project.root / "exported" / f"{stream}.yaml").read_text())
    replan = readopt.plan()
    assert [(str(c.address), c.diff) for c in replan.changes if c.action is not Action.NOOP] == []
    assert len(replan.changes) == len(plan.changes)


@pytest.mark.parametrize("case", list(CORPUS.values()), ids=list(CORPUS))
def test_corpus_round_trip(
    nats_server: SingleServer, tmp_path: Path, target: Target, case: Case
) -> None:
    names = _names()
    project = make_project(tmp_path, nats_server.url)
    project.write("corpus.yaml", _manifests(case, names))
    streams = [names["S"]] + ([names["A"], names["B"]] if case.origins else [])
    try:
        _round_trip(project, nats_server.url, streams, target, tmp_path)
    finally:
        for stream in streams:
            js_request_sync(nats_server.url, f"$JS.API.STREAM.DELETE.{stream}")


CROSS_DOMAIN = {
    "leaf-sources-hub": "{sources: [{name: '{A}', domain: hub}]}",
    "leaf-mirrors-hub": "{mirror: {name: '{A}', domain: hub}}",
    "leaf-sources-hub-filtered": (
        "{subjects: ['{p}.>'], sources: [{name: '{A}', domain: hub, filter_subject: '{a}.x'}]}"
    ),
}


@pytest.mark.parametrize("spec", list(CROSS_DOMAIN.values()), ids=list(CROSS_DOMAIN))
def test_cross_domain_round_trip(
    hub_and_leaf: HubAndLeaf, tmp_path: Path, target: Target, spec: str
) -> None:
    """A leaf stream reading a hub stream through the hub's domain."""
    names = _names()
    hub, leaf = hub_and_leaf.hub.url, hub_and_leaf.leaf.url
    origin = make_project(tmp_path / "hub", hub)
    origin.write("a.yaml", _fill(_doc("Stream", "{name: {A}}", "{subjects: ['{a}.>']}"), names))
    _plan, result = origin.apply()
    assert result is not None and result.ok
    project = make_project(tmp_path / "leaf", leaf)
    project.write("leaf.yaml", _fill(_doc("Stream", "{name: {S}}", spec), names))
    try:
        _round_trip(project, leaf, [names["S"]], target, tmp_path)
    finally:
        js_request_sync(leaf, f"$JS.API.STREAM.DELETE.{names['S']}")
        js_request_sync(hub, f"$JS.API.STREAM.DELETE.{names['A']}")


def test_corpus_is_large_and_varied() -> None:
    assert len(CORPUS) + len(CROSS_DOMAIN) >= 40


# ---------------------------------------------------------------- release-dependent rows


def test_sourced_stream_duplicate_window_follows_the_release(
    nats_server: SingleServer, tmp_path: Path, target: Target
) -> None:
    """VERSIONED_DEFAULTS row: a stream with sources and no duplicate_window derives 0
    from 2.14 and 2m before; either way apply, then plan is noop, then nothing is sent."""
    names = _names()
    project = make_project(tmp_path, nats_server.url)
    project.write(
        "s.yaml", _manifests(c("{sources: [{name: '{A}'}, {name: '{B}'}]}", origins=True), names)
    )
    try:
        _plan, result = project.apply()
        assert result is not None and result.ok
        live = js_request_sync(nats_server.url, f"$JS.API.STREAM.INFO.{names['S']}")["config"]
        derived = 0 if target.api_level >= 4 else 120 * 10**9
        assert live.get("duplicate_window", 0) == derived
        again = project.plan()
        assert [(str(c.address), c.diff) for c in again.changes if c.diff] == []
        with JsWriteCounter(nats_server.url) as counter:
            _plan, result = project.apply()
        assert result is None and _client_writes(counter) == []
    finally:
        for stream in (names["S"], names["A"], names["B"]):
            js_request_sync(nats_server.url, f"$JS.API.STREAM.DELETE.{stream}")


def test_a_sourced_stream_made_before_2_14_keeps_its_duplicate_window(
    nats_server: SingleServer, tmp_path: Path, target: Target
) -> None:
    """A sourced stream a 2.12 server made holds the 2m window it derived, and an upgrade
    to 2.14 keeps it (the server derives defaults only on create). Its manifest leaves
    duplicate_window unset: the plan is a noop on every release, where on 2.14+ it
    planned 2m -> 0 and switched deduplication off. (The stream is made here with the
    2m a 2.12 server stores.)"""
    names = _names()
    url = nats_server.url
    for origin in (names["A"], names["B"]):
        js_request_sync(
            url, f"$JS.API.STREAM.CREATE.{origin}", {"name": origin, "subjects": [f"{origin}.>"]}
        )
    made = js_request_sync(
        url,
        f"$JS.API.STREAM.CREATE.{names['S']}",
        {
            "name": names["S"],
            "sources": [{"name": names["A"]}, {"name": names["B"]}],
            "duplicate_window": 120 * 10**9,
        },
    )
    assert "error" not in made, made
    project = make_project(tmp_path, url)
    manifests = _manifests(c("{sources: [{name: '{A}'}, {name: '{B}'}]}"), names)
    project.write("s.yaml", manifests.replace("spec: {", "spec: {max_age: 1d, ", 1))
    try:
        plan = project.plan()
        [change] = [c for c in plan.changes if c.address.name == names["S"]]
        assert "duplicate_window" not in {d.path for d in change.diff}, change.diff
        _plan, result = project.apply()
        assert result is not None and result.ok
        live = js_request_sync(url, f"$JS.API.STREAM.INFO.{names['S']}")["config"]
        assert live["duplicate_window"] == 120 * 10**9  # deduplication still on
        assert not project.plan().has_changes
    finally:
        for stream in (names["S"], names["A"], names["B"]):
            js_request_sync(url, f"$JS.API.STREAM.DELETE.{stream}")


# One manifest per FIELD_API_LEVELS row: a plan error naming the release below it,
# planned (no error) from it on.
FIELD_ROWS = {
    "Stream": {
        "allow_msg_ttl": "{subjects: ['{p}.>'], allow_msg_ttl: true}",
        "subject_delete_marker_ttl": "{subjects: ['{p}.>'], subject_delete_marker_ttl: 1m}",
        "allow_msg_counter": "{subjects: ['{p}.>'], allow_msg_counter: true}",
        "allow_atomic": "{subjects: ['{p}.>'], allow_atomic: true}",
        "allow_msg_schedules": "{subjects: ['{p}.>'], allow_msg_schedules: true}",
        "persist_mode": "{subjects: ['{p}.>'], persist_mode: async}",
        "allow_batched": "{subjects: ['{p}.>'], allow_batched: true}",
        "mirror.consumer": (
            "{mirror: {name: '{A}', consumer: {name: feed, deliver_subject: d.{p}}}}"
        ),
        "sources.consumer": (
            "{sources: [{name: '{A}', consumer: {name: feed, deliver_subject: d.{p}}}]}"
        ),
    },
    "KeyValue": {"limit_marker_ttl": "{history: 1, limit_marker_ttl: 5m}"},
    "Consumer": {
        "pause_until": "{pause_until: '2099-01-01T00:00:00Z'}",
        "priority_groups": "{priority_groups: [g], priority_policy: overflow}",
        "priority_policy": "{priority_groups: [g], priority_policy: pinned_client}",
        "priority_timeout": (
            "{priority_groups: [g], priority_policy: pinned_client, priority_timeout: 1m}"
        ),
        "priority_policy=prioritized": "{priority_groups: [g], priority_policy: prioritized}",
        "ack_policy=flow_control": "{ack_policy: flow_control, deliver_subject: 'dlv.{p}'}",
    },
}


def _field_rows() -> list[Any]:
    from reconciler.mutability import FIELD_API_LEVELS, release_of

    rows = []
    for kind, levels in FIELD_API_LEVELS.items():
        for key, level in levels.items():
            rows.append(pytest.param(kind, key, level, release_of(level), id=f"{kind}-{key}"))
    return rows


@pytest.mark.parametrize(("kind", "key", "level", "release"), _field_rows())
def test_field_newer_than_the_server_is_a_plan_error_naming_its_release(
    nats_server: SingleServer,
    tmp_path: Path,
    target: Target,
    kind: str,
    key: str,
    level: int,
    release: str,
) -> None:
    names = _names()
    spec = FIELD_ROWS[kind][key]  # every row has a manifest (KeyError otherwise)
    project = make_project(tmp_path, nats_server.url)
    if kind == "KeyValue":
        project.write("s.yaml", _fill(_doc("KeyValue", "{name: {p}}", spec), names))
    else:
        stream_case = c(spec, origins="{A}" in spec)
        case = stream_case if kind == "Stream" else c("{subjects: ['{p}.>']}", spec)
        project.write("s.yaml", _manifests(case, names))
    if target.api_level >= level:
        project.plan()  # no error: the field is known here
        return
    with pytest.raises(ManifestError) as caught:
        project.plan()
    name = key.replace("=", ": ")
    messages = [d.message for d in caught.value.diagnostics]
    assert any(
        m.startswith(f"{name} needs nats-server {release} or newer (JetStream API level {level})")
        for m in messages
    ), messages


def test_schema_check_catches_a_minimal_config() -> None:
    """The jsm.go schemas require what a minimal payload leaves to server defaults."""
    assert jsm_schema.problems("Stream", {"name": "X", "subjects": ["x"]})
    assert jsm_schema.problems("Consumer", {"durable_name": "c", "deliver_subject": "d"})
    assert jsm_schema.problems("Stream", {"name": "X", "retention": "sometimes"})


def test_an_adopted_mirror_with_an_offset_start_time_updates_in_place(
    tmp_path: Path, nats_server: SingleServer
) -> None:
    """A mirror another client made with ``opt_start_time`` at an offset (``+01:00``):
    the manifest names the same instant in UTC, and changing ``max_age`` is an update
    the server takes (it compares mirrors with reflect.DeepEqual, and refused jsops's
    ``Z`` spelling of the same instant: 10055). The mirror is left as it was."""
    url = nats_server.url
    origin, mirror = unique_name("ORIG"), unique_name("MIRR")
    start = "2026-01-02T03:04:05+01:00"
    for name, config in (
        (origin, {"subjects": [f"{origin.lower()}.>"]}),
        (mirror, {"mirror": {"name": origin, "opt_start_time": start}}),
    ):
        made = js_request_sync(url, f"$JS.API.STREAM.CREATE.{name}", {"name": name, **config})
        assert "error" not in made, made
    project = make_project(tmp_path, url)
    project.write(
        "s.yaml",
        f"apiVersion: jsops/v1\nkind: Stream\nmetadata: {{name: {origin}}}\n"
        f"spec: {{subjects: ['{origin.lower()}.>']}}\n---\n"
        f"apiVersion: jsops/v1\nkind: Stream\nmetadata: {{name: {mirror}}}\n"
        f"spec: {{mirror: {{name: {origin}, opt_start_time: '2026-01-02T02:04:05Z'}},"
        " max_age: 1d}\n",
    )
    try:
        plan = project.plan()
        assert [c.action for c in plan.changes if c.address.name == mirror] == [Action.UPDATE]
        code, _out, err = project.cli("apply", "--auto-approve")
        assert code == 0, err
        info = js_request_sync(url, f"$JS.API.STREAM.INFO.{mirror}")
        assert info["config"]["max_age"] == 24 * 3600 * 10**9
        assert info["config"]["mirror"]["opt_start_time"] == start
        assert project.plan().has_changes is False
    finally:  # a mirror's own consumer creates would show in other tests' counters
        for name in (mirror, origin):
            js_request_sync(url, f"$JS.API.STREAM.DELETE.{name}")


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({"allow_msg_schedules": True, "discard": "new"}, id="schedules-discard-new"),
        pytest.param({"allow_msg_schedules": True, "allow_msg_counter": True}, id="counter"),
    ],
)
def test_a_combination_later_releases_refuse_is_a_plan_error_exactly_where_refused(
    nats_server: SingleServer, tmp_path: Path, target: Target, spec: dict[str, Any]
) -> None:
    """nats-server refuses these settings together only from 2.12.10 and 2.14.2: the
    plan is an error, located at the field, on the releases that refuse a raw create of
    them, and a create on the releases that take it (jsops refused them everywhere)."""
    target.require("Stream", spec)
    url = nats_server.url
    raw = unique_name("RAWC")
    made = js_request_sync(
        url,
        f"$JS.API.STREAM.CREATE.{raw}",
        {"name": raw, "subjects": [f"{raw.lower()}.>"], **spec},
    )
    refused = "error" in made
    js_request_sync(url, f"$JS.API.STREAM.DELETE.{raw}")
    name = unique_name("COMB")
    project = make_project(tmp_path, url)
    project.write("s.yaml", _doc("Stream", f"{{name: {name}}}", json.dumps(spec)))
    code, out, err = project.cli("plan")
    if refused:
        assert code == 1 and out == "", (made, out)
        assert "manifests/s.yaml:4:" in err and "rules out" in err, err
        assert f"nats-server {target.version} refuses it" in err
    else:
        assert code == 0, err
        assert f"+ Stream {name}" in out


@pytest.mark.parametrize("origin_direct", [False, True], ids=["origin-no-direct", "origin-direct"])
def test_a_mirror_direct_contradicting_its_origin_is_a_plan_error(
    nats_server: SingleServer, tmp_path: Path, origin_direct: bool
) -> None:
    """A mirror's mirror_direct is its origin's allow_direct: a raw create asking for the
    other value is refused (2.11+, pedantic) or stored as the origin's (2.10), so a
    manifest asking for it is a located plan error; the origin's own value applies and
    then plans noop."""
    url = nats_server.url
    origin, raw = unique_name("ORIG"), unique_name("RAWM")
    made = js_request_sync(
        url,
        f"$JS.API.STREAM.CREATE.{origin}",
        {"name": origin, "subjects": [f"{origin.lower()}.>"], "allow_direct": origin_direct},
    )
    assert "error" not in made, made
    asked = not origin_direct
    made = js_request_sync(
        url,
        f"$JS.API.STREAM.CREATE.{raw}",
        {"name": raw, "mirror": {"name": origin}, "mirror_direct": asked, "pedantic": True},
    )
    # the server never keeps what was asked
    assert "error" in made or made["config"].get("mirror_direct", False) != asked, made
    js_request_sync(url, f"$JS.API.STREAM.DELETE.{raw}")
    project = make_project(tmp_path, url)
    mirror = unique_name("MIRR")

    def text(direct: bool) -> str:
        subjects = f"['{origin.lower()}.>']"
        return (
            f"apiVersion: jsops/v1\nkind: Stream\nmetadata: {{name: {origin}}}\n"
            f"spec: {{subjects: {subjects}, allow_direct: {json.dumps(origin_direct)}}}\n"
            f"---\napiVersion: jsops/v1\nkind: Stream\nmetadata: {{name: {mirror}}}\n"
            f"spec: {{mirror: {{name: {origin}}}, mirror_direct: {json.dumps(direct)}}}\n"
        )

    try:
        project.write("s.yaml", text(asked))
        code, out, err = project.cli("plan")
        assert code == 1 and out == "", (out, err)
        assert "manifests/s.yaml:9:" in err and "contradicts allow_direct" in err, err
        project.write("s.yaml", text(origin_direct))
        code, _out, err = project.cli("apply", "--auto-approve")
        assert code == 0, err
        info = js_request_sync(url, f"$JS.API.STREAM.INFO.{mirror}")
        assert info["config"].get("mirror_direct", False) == origin_direct
        assert project.plan().has_changes is False
    finally:
        for name in (mirror, origin):
            js_request_sync(url, f"$JS.API.STREAM.DELETE.{name}")
