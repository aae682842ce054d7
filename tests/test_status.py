"""``jsops status``: the live health of the declared resources, and the ``monitoring:``
block (thresholds kept as the ``io.nats.monitor.*`` metadata ``nats server check``
reads) with ``status --check`` evaluating them, on real servers."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats
import pytest
from harness.manifests import fetch_and_ack
from harness.project import TestProject, make_project
from harness.servers import js_request_sync, unique_name

from reconciler.models.monitoring import CONSUMER_MONITOR_KEYS, STREAM_MONITOR_KEYS
from reconciler.plan import Action
from reconciler.status import parse_threshold


def publish(url: str, subject: str, count: int) -> None:
    async def run() -> None:
        nc = await nats.connect(url)
        try:
            for i in range(count):
                reply = await nc.request(subject, f"m{i}".encode(), timeout=5)
                assert "error" not in json.loads(reply.data)
        finally:
            await nc.close()

    asyncio.run(run())


def stream_and_consumer(name: str, monitoring: str = "", consumer_monitoring: str = "") -> str:
    return f"""
        apiVersion: jsops/v1
        kind: Stream
        metadata: {{name: {name}}}
        spec:
          subjects: ["{name.lower()}.>"]
          {monitoring}
        ---
        apiVersion: jsops/v1
        kind: Consumer
        metadata: {{name: worker, stream: {name}}}
        spec:
          ack_policy: explicit
          {consumer_monitoring}
    """


def status_json(project: TestProject, *args: str) -> tuple[int, dict[str, Any], str]:
    code, out, err = project.cli("status", "--format", "json", *args)
    assert "Traceback" not in err
    return code, (json.loads(out) if out else {}), err


def entry(report: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    return next(r for r in report["resources"] if r["kind"] == kind and r["name"] == name)


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_status_reports_messages_and_pending_in_json_and_text(nats_server, tmp_path) -> None:
    project = make_project(tmp_path, nats_server.url)
    name = unique_name("ST")
    project.write("s.yaml", stream_and_consumer(name))
    _plan, result = project.apply()
    assert result is not None and result.ok
    publish(nats_server.url, f"{name.lower()}.a", 7)
    fetch_and_ack(nats_server.url, name, "worker", 2)

    code, report, err = status_json(project)
    assert code == 0, err
    assert report["format_version"] == 1 and report["environment"] == "test"
    stream = entry(report, "Stream", name)
    assert stream["status"] == "ok" and stream["stream_name"] == name
    assert (stream["messages"], stream["first_seq"], stream["last_seq"]) == (7, 1, 7)
    assert stream["consumer_count"] == 1 and stream["replicas"] == 1 and stream["bytes"] > 0
    consumer = entry(report, "Consumer", "worker")
    assert consumer["stream"] == name
    assert (consumer["num_pending"], consumer["num_ack_pending"]) == (5, 0)
    assert consumer["num_redelivered"] == 0 and consumer["num_waiting"] == 0
    assert consumer["delivered"]["stream_seq"] == 2 and consumer["delivered"]["last_active"]
    assert consumer["ack_floor"]["stream_seq"] == 2
    assert report["healthy"] is True and report["summary"]["ok"] == 2
    assert "2 ok" in err

    code, out, err = project.cli("status")
    assert code == 0, err
    lines = out.splitlines()
    row = next(line.split() for line in lines if line.startswith(f"Stream/{name} "))
    assert row[1:6] == ["7", row[2], "1", "7", "1"] and row[6] == "1"
    row = next(line.split() for line in lines if line.startswith(f"{name}/worker "))
    assert row[1:5] == ["5", "0", "0", "0"]
    assert "\x1b[" not in out  # no colour without a terminal
    js_request_sync(nats_server.url, f"$JS.API.STREAM.DELETE.{name}")


def test_check_exits_1_when_a_threshold_is_breached(nats_server, tmp_path) -> None:
    project = make_project(tmp_path, nats_server.url)
    name = unique_name("CK")
    project.write(
        "s.yaml",
        stream_and_consumer(
            name,
            monitoring="monitoring: {msgs_critical: 5, msgs_warn: 8}",
            consumer_monitoring="monitoring: {unprocessed_critical: 12}",
        ),
    )
    _plan, result = project.apply()
    assert result is not None and result.ok

    publish(nats_server.url, f"{name.lower()}.a", 3)
    code, out, err = project.cli("status", "--check")
    assert code == 1, err
    assert f"Stream/{name}: 3 messages (at or below 5) [io.nats.monitor.msgs-critical]" in out
    assert "1 critical, 0 warning" in err
    assert project.cli("status")[0] == 0  # without --check it only reports

    publish(nats_server.url, f"{name.lower()}.a", 4)  # 7: above critical, at most warn
    code, report, _ = status_json(project, "--check")
    assert code == 1
    assert [b["severity"] for b in entry(report, "Stream", name)["breaches"]] == ["warning"]

    publish(nats_server.url, f"{name.lower()}.a", 3)  # 10 messages, 10 pending
    code, report, err = status_json(project, "--check")
    assert code == 0, err
    assert report["healthy"] is True
    assert "all checks pass" in err

    publish(nats_server.url, f"{name.lower()}.a", 2)  # 12 pending: the consumer's threshold
    code, report, _ = status_json(project, "--check")
    assert code == 1
    (breach,) = entry(report, "Consumer", "worker")["breaches"]
    assert breach == {
        "severity": "critical",
        "check": "io.nats.monitor.unprocessed-critical",
        "message": "12 messages not yet delivered (at or above 12)",
    }
    js_request_sync(nats_server.url, f"$JS.API.STREAM.DELETE.{name}")


def test_monitoring_block_round_trips_as_metadata(nats_server, tmp_path) -> None:
    project = make_project(tmp_path, nats_server.url)
    name = unique_name("MON")
    project.write(
        "s.yaml",
        stream_and_consumer(
            name,
            monitoring="monitoring: {msgs_warn: 100, seen_critical: 5m, peer_expect: 1, "
            "enabled: true}\n          metadata: {team: core}",
            consumer_monitoring="monitoring: {last_ack_critical: 1h30m, waiting_critical: 20}",
        ),
    )
    _plan, result = project.apply()
    assert result is not None and result.ok
    info = js_request_sync(nats_server.url, f"$JS.API.STREAM.INFO.{name}")
    meta = info["config"]["metadata"]
    assert {k: v for k, v in meta.items() if k.startswith("io.nats.")} == {
        "io.nats.monitor.enabled": "true",
        "io.nats.monitor.msgs-warn": "100",
        "io.nats.monitor.seen-critical": "5m",
        "io.nats.monitor.peer-expect": "1",
    }
    assert meta["team"] == "core" and meta["jsops.owner"] == project.name
    info = js_request_sync(nats_server.url, f"$JS.API.CONSUMER.INFO.{name}.worker")
    meta = info["config"]["metadata"]
    assert meta["io.nats.monitor.last-ack-critical"] == "1h30m"
    assert meta["io.nats.monitor.waiting-critical"] == "20"
    assert all(c.action is Action.NOOP for c in project.plan().changes)

    # a changed threshold is a metadata diff, in the io.nats.monitor.* key
    project.write(
        "s.yaml",
        stream_and_consumer(
            name,
            monitoring="monitoring: {msgs_warn: 50, seen_critical: 5m, peer_expect: 1, "
            "enabled: true}\n          metadata: {team: core}",
            consumer_monitoring="monitoring: {last_ack_critical: 1h30m, waiting_critical: 20}",
        ),
    )
    (change,) = [c for c in project.plan().changes if c.action is not Action.NOOP]
    assert [(d.path, d.before, d.after) for d in change.diff] == [
        ("metadata.io.nats.monitor.msgs-warn", "100", "50")
    ]

    # export brings the block back; the exported manifests plan noop
    other = make_project(tmp_path / "exported", nats_server.url, name=project.name)
    code, _out, err = other.cli("export", "--out", "manifests")
    assert code == 0, err
    exported = other.root / "manifests" / f"{name}.yaml"
    text = exported.read_text()
    for file in (other.root / "manifests").glob("*.yaml"):
        if file != exported:
            file.unlink()
    assert "io.nats.monitor" not in text
    assert (
        "monitoring:" in text and "seen_critical: 5m" in text and "last_ack_critical: 1h30m" in text
    )
    assert all(c.action is Action.NOOP for c in other.plan().changes)
    js_request_sync(nats_server.url, f"$JS.API.STREAM.DELETE.{name}")


def test_cluster_health_shows_leader_and_replicas(nats_cluster, tmp_path) -> None:
    project = make_project(tmp_path, nats_cluster.url)
    name = unique_name("CLS")
    project.write(
        "s.yaml",
        f"""
        apiVersion: jsops/v1
        kind: Stream
        metadata: {{name: {name}}}
        spec:
          subjects: ["{name.lower()}.>"]
          num_replicas: 3
          monitoring: {{peer_expect: 3, peer_lag_critical: 1000}}
        """,
    )
    _plan, result = project.apply()
    assert result is not None and result.ok
    publish(nats_cluster.url, f"{name.lower()}.a", 3)

    def current() -> dict[str, Any] | None:
        _code, report, _ = status_json(project)
        stream = entry(report, "Stream", name)
        peers = (stream["cluster"] or {}).get("replicas") or []
        return stream if len(peers) == 2 and all(p["current"] for p in peers) else None

    stream = wait_for(current)
    assert stream is not None
    names = {"n1", "n2", "n3"}
    cluster = stream["cluster"]
    assert stream["replicas"] == 3 and cluster["leader"] in names
    assert {p["name"] for p in cluster["replicas"]} == names - {cluster["leader"]}
    assert all(p["state"] == "current" and not p["offline"] for p in cluster["replicas"])
    assert stream["messages"] == 3

    code, out, err = project.cli("status", "--check")
    assert code == 0, err
    row = next(line for line in out.splitlines() if line.startswith(f"Stream/{name} "))
    assert f"leader {cluster['leader']}" in row and row.count(" current") == 2

    project.write(
        "s.yaml",
        f"""
        apiVersion: jsops/v1
        kind: Stream
        metadata: {{name: {name}}}
        spec:
          subjects: ["{name.lower()}.>"]
          num_replicas: 3
          monitoring: {{peer_expect: 5}}
        """,
    )
    _plan, result = project.apply()
    assert result is not None and result.ok
    code, out, _ = project.cli("status", "--check")
    assert code == 1 and "expected 5 peers, got 3 [io.nats.monitor.peer-expect]" in out
    js_request_sync(nats_cluster.url, f"$JS.API.STREAM.DELETE.{name}")


def test_key_value_bucket_is_shown_by_bucket_name(nats_server, tmp_path) -> None:
    project = make_project(tmp_path, nats_server.url)
    bucket = unique_name("cfg").lower()
    project.write(
        "kv.yaml",
        f"""
        apiVersion: jsops/v1
        kind: KeyValue
        metadata: {{name: {bucket}}}
        spec: {{history: 2, monitoring: {{msgs_critical: 1}}}}
        """,
    )
    _plan, result = project.apply()
    assert result is not None and result.ok
    info = js_request_sync(nats_server.url, f"$JS.API.STREAM.INFO.KV_{bucket}")
    assert info["config"]["metadata"]["io.nats.monitor.msgs-critical"] == "1"
    assert all(c.action is Action.NOOP for c in project.plan().changes)
    publish(nats_server.url, f"$KV.{bucket}.a", 1)
    publish(nats_server.url, f"$KV.{bucket}.b", 1)

    code, report, err = status_json(project, "--target", f"KeyValue/{bucket}", "--check")
    assert code == 0, err
    (only,) = report["resources"]
    assert (only["kind"], only["name"], only["stream_name"]) == ("KeyValue", bucket, f"KV_{bucket}")
    assert only["messages"] == 2
    code, out, _ = project.cli("status")
    assert f"KeyValue/{bucket} " in out and f"KV_{bucket}" not in out

    code, _out, err = project.cli("status", "--target", f"Stream/KV_{bucket}")
    assert code == 1 and f'did you mean "KeyValue/{bucket}"?' in err

    other = make_project(tmp_path / "exported", nats_server.url, name=project.name)
    code, _out, err = other.cli("export", "--out", "manifests")
    assert code == 0, err
    exported = other.root / "manifests" / f"KV_{bucket}.yaml"
    for file in (other.root / "manifests").glob("*.yaml"):
        if file != exported:
            file.unlink()
    text = exported.read_text()
    assert "kind: KeyValue" in text and "msgs_critical: 1" in text
    assert "io.nats.monitor" not in text
    assert all(c.action is Action.NOOP for c in other.plan().changes)
    js_request_sync(nats_server.url, f"$JS.API.STREAM.DELETE.KV_{bucket}")


def test_mirror_lag_and_activity_are_shown(nats_server, tmp_path) -> None:
    project = make_project(tmp_path, nats_server.url)
    origin, mirror = unique_name("ORG"), unique_name("MIR")
    project.write(
        "m.yaml",
        f"""
        apiVersion: jsops/v1
        kind: Stream
        metadata: {{name: {origin}}}
        spec: {{subjects: ["{origin.lower()}.>"]}}
        ---
        apiVersion: jsops/v1
        kind: Stream
        metadata: {{name: {mirror}}}
        spec:
          mirror: {{name: {origin}}}
          monitoring: {{lag_critical: 100, seen_critical: 1m}}
        """,
    )
    _plan, result = project.apply()
    assert result is not None and result.ok
    publish(nats_server.url, f"{origin.lower()}.a", 4)

    def synced() -> dict[str, Any] | None:
        _code, report, _ = status_json(project)
        stream = entry(report, "Stream", mirror)
        return stream if stream["messages"] == 4 and stream["mirror"]["active"] >= 0 else None

    stream = wait_for(synced)
    assert stream is not None
    assert stream["mirror"]["name"] == origin and stream["mirror"]["lag"] == 0
    assert stream["sources"] == [] and stream["breaches"] == []
    code, out, err = project.cli("status", "--check", "--target", f"Stream/{mirror}")
    assert code == 0, err
    assert f"mirror {origin}: lag 0, active " in out
    js_request_sync(nats_server.url, f"$JS.API.STREAM.DELETE.{mirror}")
    js_request_sync(nats_server.url, f"$JS.API.STREAM.DELETE.{origin}")


def test_missing_resources_are_reported_not_a_crash(nats_server, tmp_path) -> None:
    project = make_project(tmp_path, nats_server.url)
    name = unique_name("MISS")
    project.write("s.yaml", stream_and_consumer(name))
    project.write(
        "kv.yaml",
        f"apiVersion: jsops/v1\nkind: KeyValue\nmetadata: {{name: {name.lower()}}}\n",
    )
    code, report, err = status_json(project)
    assert code == 0, err
    assert [(r["kind"], r["status"]) for r in report["resources"]] == [
        ("KeyValue", "missing"),  # kv.yaml is read before s.yaml
        ("Stream", "missing"),
        ("Consumer", "missing"),
    ]
    assert entry(report, "Stream", name)["messages"] is None
    assert report["healthy"] is False and report["summary"]["missing"] == 3
    code, out, err = project.cli("status", "--check")
    assert code == 1 and "3 missing" in err
    row = next(line.split() for line in out.splitlines() if line.startswith(f"Stream/{name} "))
    assert row[1] == "missing" and "apply creates it" in " ".join(row)


def test_unreachable_server_is_one_line(tmp_path) -> None:
    project = make_project(tmp_path, "nats://127.0.0.1:1")
    project.write("s.yaml", stream_and_consumer(unique_name("X")))
    code, out, err = project.cli("status")
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("monitoring", "expected"),
    [
        pytest.param(
            "{seen_critical: 5 minutes}",
            'spec.monitoring.seen_critical: invalid duration "5 minutes"',
            id="bad duration",
        ),
        pytest.param(
            "{msgs_warn: -1}",
            "spec.monitoring.msgs_warn: ",
            id="negative count",
        ),
        pytest.param(
            "{subjects_warn: 10}",
            "spec.monitoring: subjects_warn and subjects_critical go together",
            id="subjects warn alone",
        ),
        pytest.param(
            "{msgs_warning: 10}",
            'did you mean "msgs_warn"',
            id="unknown field",
        ),
    ],
)
def test_monitoring_block_is_validated(tmp_path, monitoring: str, expected: str) -> None:
    project = make_project(tmp_path, "nats://127.0.0.1:1")
    project.write(
        "s.yaml",
        f"apiVersion: jsops/v1\nkind: Stream\nmetadata: {{name: V}}\n"
        f"spec: {{subjects: [v.>], monitoring: {monitoring}}}\n",
    )
    code, _out, err = project.cli("validate")
    assert code == 1 and expected in err, err
    assert err.startswith("manifests/s.yaml:4:")


def test_metadata_and_monitoring_must_not_both_set_a_key(tmp_path) -> None:
    project = make_project(tmp_path, "nats://127.0.0.1:1")
    project.write(
        "s.yaml",
        """
        apiVersion: jsops/v1
        kind: Consumer
        metadata: {name: c, stream: S}
        spec:
          metadata: {io.nats.monitor.waiting-critical: "5"}
          monitoring: {waiting_critical: 5, pinned: true}
        """,
    )
    code, _out, err = project.cli("validate")
    assert code == 1
    assert "which metadata sets too" in err and "pinned requires priority_policy" in err


@pytest.mark.parametrize(
    ("field", "text", "value"),
    [
        pytest.param("seen_critical", "5m", 300 * 10**9, id="minutes"),
        pytest.param("seen_critical", "1w", 7 * 86400 * 10**9, id="jsm weeks"),
        pytest.param("seen_critical", "1h30m", 5400 * 10**9, id="combined"),
        pytest.param("seen_critical", "0", 0, id="zero"),
        pytest.param("msgs_warn", "100", 100, id="uint"),
        pytest.param("min_sources", "-1", -1, id="atoi sign"),
        pytest.param("enabled", "T", True, id="go bool"),
    ],
)
def test_thresholds_parse_as_jsm_go_does(field: str, text: str, value: Any) -> None:
    spec = next(k for k in STREAM_MONITOR_KEYS if k.field == field)
    assert parse_threshold(spec, text) == value


@pytest.mark.parametrize(
    ("field", "text"),
    [("msgs_warn", "-1"), ("msgs_warn", "1k"), ("enabled", "yes"), ("seen_critical", "5x")],
)
def test_thresholds_jsm_go_refuses_are_refused(field: str, text: str) -> None:
    spec = next(k for k in (*STREAM_MONITOR_KEYS, *CONSUMER_MONITOR_KEYS) if k.field == field)
    with pytest.raises(ValueError):
        parse_threshold(spec, text)


def test_json_structure_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("**Status JSON.**", 1)[1].split("\n\n", 1)[0]
    for key in ("format_version", "healthy", "num_pending", "stream_name", "breaches"):
        assert f"`{key}`" in section


def test_streams_whose_servers_are_down_are_unavailable(tmp_path: Path) -> None:
    import signal

    from harness.servers import start_cluster

    cluster = start_cluster(tmp_path / "cluster")
    try:
        small = [f"SMALL{i}" for i in range(4)]
        docs = [
            "apiVersion: jsops/v1\nkind: Stream\nmetadata: {name: BIG}\n"
            "spec: {subjects: [big.>], num_replicas: 3, "
            "monitoring: {peer_expect: 3, peer_seen_critical: 5s}}\n",
            *(
                f"apiVersion: jsops/v1\nkind: Stream\nmetadata: {{name: {n}}}\n"
                f"spec: {{subjects: [{n.lower()}.>]}}\n"
                for n in small
            ),
        ]
        # start_cluster returns a ready cluster; the timeout is for the server's real
        # work: an R3 create's reply waits for the new stream's Raft group to elect a
        # leader, which a loaded 2-core CI machine has kept waiting over jsops's 5 s
        project = make_project(
            tmp_path, cluster.url, envs={"test": {"servers": cluster.urls, "timeout": 30}}
        )
        project.write("streams.yaml", "---\n".join(docs))
        _plan, result = project.apply()
        assert result is not None and result.ok
        leaders = {
            n: js_request_sync(cluster.url, f"$JS.API.STREAM.INFO.{n}")["cluster"]["leader"]
            for n in small
        }
        victim = max(cluster.servers, key=lambda s: sum(v == s.name for v in leaders.values()))
        down = sorted(n for n, leader in leaders.items() if leader == victim.name)
        survivors = [s for s in cluster.servers if s is not victim]

        # a killed leader's successor reports it with no last-seen time (active 0): the
        # victim must be a follower of BIG for peer_seen_critical to see it go
        def big_leader() -> str:
            info = js_request_sync(cluster.url, "$JS.API.STREAM.INFO.BIG")
            return str((info.get("cluster") or {}).get("leader") or "")

        if big_leader() == victim.name:
            js_request_sync(cluster.url, "$JS.API.STREAM.LEADER.STEPDOWN.BIG")
            assert wait_for(lambda: big_leader() not in ("", victim.name), timeout=20)
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait()
        (project.root / "jsops.yaml").write_text(
            (project.root / "jsops.yaml")
            .read_text()
            .replace(json.dumps(cluster.urls), json.dumps([s.url for s in survivors]))
        )

        def settled() -> dict[str, Any] | None:
            code, report, _ = status_json(project, "--check")
            if not report:
                return None
            big = entry(report, "Stream", "BIG")
            inactive = [b for b in big["breaches"] if b["check"].endswith("peer-seen-critical")]
            return report if code == 1 and big["status"] == "ok" and inactive else None

        # the killed peer stops being current, then is not seen for longer than 5s
        report = wait_for(settled, timeout=60)
        assert report is not None, "the killed peer never breached peer_seen_critical"
        for name in small:
            want = "unavailable" if name in down else "ok"
            assert entry(report, "Stream", name)["status"] == want, name
        big = entry(report, "Stream", "BIG")
        peers = {p["name"]: p for p in big["cluster"]["replicas"]}
        # Whether the leader still calls the dead peer "current" when it has not been
        # seen for 5s depends on the release and on timing (2.10 and 2.12 were seen to);
        # its last-seen time is what peer_seen_critical reads, and what is shown
        assert peers[victim.name]["state"] in ("lagging", "offline", "current")
        assert peers[victim.name]["active"] > 5 * 10**9
        assert f"{victim.name} " in big["breaches"][-1]["message"]
        assert report["summary"]["unavailable"] == len(down) > 0
    finally:
        cluster.stop()


def test_text_is_coloured_only_when_asked() -> None:
    from datetime import UTC, datetime

    from reconciler.models import Address, Kind
    from reconciler.status import StatusReport, render_text, stream_status

    info = {
        "config": {"name": "S", "metadata": {"io.nats.monitor.msgs-critical": "5"}},
        "state": {"messages": 2, "bytes": 2048, "first_seq": 1, "last_seq": 2},
    }
    report = StatusReport(
        "dev", (stream_status(Address(Kind.STREAM, "S"), info, datetime.now(UTC)),)
    )
    plain = render_text(report)
    assert "\x1b[" not in plain and "2.0KiB" in plain
    assert "CRITICAL Stream/S: 2 messages (at or below 5)" in plain
    coloured = render_text(report, color=True)
    assert "\x1b[31m" in coloured and click_unstyle(coloured) == plain


def click_unstyle(text: str) -> str:
    import click

    return click.unstyle(text)


def test_an_environment_pinned_to_other_servers_shows_no_status(nats_server, tmp_path) -> None:
    url = nats_server.url
    envs = {"prod": {"servers": [url], "expect": {"cluster": "prod"}}}
    project = make_project(tmp_path, url, envs=envs)
    project.write("s.yaml", stream_and_consumer(unique_name("PIN")))
    code, out, err = project.cli("status")
    assert code == 1 and out == ""
    assert err.strip().endswith("refusing to run there (environments.prod.expect in jsops.yaml)")


def test_streams_in_accounts_operator_mode(tmp_path: Path) -> None:
    from harness.operator import start_operator_server
    from harness.project import run_cli

    code, _out, err = run_cli(["auth", "init", "--dir", str(tmp_path / "auth")])
    assert code == 0, err
    op = start_operator_server(tmp_path, auth_dir=tmp_path / "auth")
    try:
        envs = {"ops": {"servers": [op.url], "auth_dir": str(op.store.root)}}
        project = make_project(tmp_path, op.url, envs=envs)
        account = unique_name("ACME")
        project.write(
            "acme.yaml",
            f"""
            apiVersion: jsops/v1
            kind: Account
            metadata: {{name: {account}}}
            spec: {{jetstream: {{max_memory: 64MiB, max_storage: 64MiB}}}}
            ---
            apiVersion: jsops/v1
            kind: Stream
            metadata: {{name: ORDERS, account: {account}}}
            spec: {{subjects: [orders.>], max_bytes: 1MiB, monitoring: {{msgs_warn: 1}}}}
            """,
        )
        code, report, err = status_json(project)
        assert code == 0, err
        (only,) = report["resources"]  # the Account itself is not a status resource
        assert (only["account"], only["status"]) == (account, "missing")
        assert f"account {account} does not exist" in only["reason"]

        _plan, result = project.apply()
        assert result is not None and result.ok
        code, report, err = status_json(project, "--check")
        assert code == 1, err
        (only,) = report["resources"]
        assert (only["account"], only["status"], only["messages"]) == (account, "ok", 0)
        assert [b["check"] for b in only["breaches"]] == ["io.nats.monitor.msgs-warn"]
        code, out, _ = project.cli("status")
        assert f"{account}:Stream/ORDERS " in out
    finally:
        op.stop()


def test_json_written_a_line_at_a_time_is_the_json_document() -> None:
    import io
    from datetime import UTC, datetime

    from reconciler.models import Address, Kind
    from reconciler.status import StatusReport, render_json, stream_status, write_json

    now = datetime.now(UTC)
    info = {"config": {"name": "S"}, "state": {"messages": 2, "bytes": 2048}}
    statuses = [stream_status(Address(Kind.STREAM, n), info, now) for n in ("S", "T")]
    for report in (StatusReport("dev", tuple(statuses)), StatusReport("dev", ())):
        out = io.StringIO()
        write_json(report, out)
        assert out.getvalue() == render_json(report)
        assert json.loads(out.getvalue()) == report.to_json()
        assert [r["name"] for r in json.loads(out.getvalue())["resources"]] == [
            r.address.name for r in report.resources
        ]
