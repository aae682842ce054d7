"""The fixtures start real, working topologies, and the helpers count what they claim."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from harness import releases
from harness.servers import (
    Cluster,
    HubAndLeaf,
    JsWriteCounter,
    SingleServer,
    api_op,
    is_write_request,
    js_request_sync,
    monitor_json,
    start_cluster,
    start_single,
    unique_name,
)

from reconciler.errors import JsopsError
from reconciler.server import (
    PortInUse,
    cluster_status,
    ephemeral_port_start,
    free_port,
    meta_outsiders,
    port_open,
    retry_port_clash,
    start_server,
    wait_cluster_ready,
)


def _stream(name: str, **extra: object) -> dict[str, object]:
    return {"name": name, "subjects": [f"{name.lower()}.>"], **extra}


def test_single_server_answers_info(
    nats_server: SingleServer, server_version: tuple[int, int, int]
) -> None:
    info = js_request_sync(nats_server.url, "$JS.API.INFO")
    assert "error" not in info
    assert info["api"].get("level", 0) >= 1 or server_version < (2, 11, 0)  # none on 2.10
    assert nats_server.domain is None
    assert nats_server.urls == [nats_server.url]
    assert nats_server.url.startswith("nats://127.0.0.1:")
    assert (nats_server.store_dir / "jetstream").is_dir()


def test_cluster_has_three_peers_and_places_r3_streams(nats_cluster: Cluster) -> None:
    assert len(nats_cluster.urls) == 3
    assert [s.name for s in nats_cluster.servers] == ["n1", "n2", "n3"]
    meta = monitor_json(nats_cluster.servers[0], "/jsz")["meta_cluster"]
    assert meta["cluster_size"] == 3
    assert meta["leader"] in {"n1", "n2", "n3"}

    name = unique_name("R3")
    created = js_request_sync(
        nats_cluster.urls[1],
        f"$JS.API.STREAM.CREATE.{name}",
        _stream(name, num_replicas=3),
    )
    try:
        assert "error" not in created, created
        assert created["cluster"]["name"] == "c1"
        assert len(created["cluster"]["replicas"]) == 2
    finally:
        deleted = js_request_sync(nats_cluster.url, f"$JS.API.STREAM.DELETE.{name}")
    assert deleted.get("success") is True


def test_hub_reaches_leaf_jetstream_by_domain(hub_and_leaf: HubAndLeaf) -> None:
    hub, leaf = hub_and_leaf.hub, hub_and_leaf.leaf
    assert (hub.domain, leaf.domain) == ("hub", "leaf")
    name = unique_name("LEAF")
    created = js_request_sync(hub.url, f"$JS.leaf.API.STREAM.CREATE.{name}", _stream(name))
    try:
        assert "error" not in created, created
        assert created["config"]["name"] == name
        on_leaf = js_request_sync(leaf.url, "$JS.API.STREAM.NAMES")
        assert name in on_leaf["streams"]
        on_hub = js_request_sync(hub.url, "$JS.API.STREAM.NAMES")
        assert name not in (on_hub.get("streams") or [])
        # and the other way round: the leaf reaches the hub's JetStream by domain
        assert js_request_sync(leaf.url, "$JS.hub.API.INFO")["domain"] == "hub"
    finally:
        js_request_sync(hub.url, f"$JS.leaf.API.STREAM.DELETE.{name}")


def test_write_counter_counts_create_but_not_info(nats_server: SingleServer) -> None:
    name = unique_name("CNT")
    with JsWriteCounter(nats_server.url) as counter:
        js_request_sync(nats_server.url, "$JS.API.INFO")
    assert counter.writes == []
    assert counter.reads == ["$JS.API.INFO"]

    with JsWriteCounter(nats_server.url) as counter:
        js_request_sync(nats_server.url, f"$JS.API.STREAM.CREATE.{name}", _stream(name))
        js_request_sync(nats_server.url, f"$JS.API.STREAM.INFO.{name}")
    assert counter.writes == [f"$JS.API.STREAM.CREATE.{name}"]
    assert counter.reads == [f"$JS.API.STREAM.INFO.{name}"]

    with JsWriteCounter(nats_server.url) as counter:
        js_request_sync(nats_server.url, f"$JS.API.STREAM.DELETE.{name}")
    assert counter.writes == [f"$JS.API.STREAM.DELETE.{name}"]


def test_write_counter_on_leaf_sees_domain_requests_once(hub_and_leaf: HubAndLeaf) -> None:
    hub, leaf = hub_and_leaf.hub, hub_and_leaf.leaf
    name = unique_name("CNTL")
    with JsWriteCounter(leaf.url, domain="leaf") as counter:
        js_request_sync(hub.url, f"$JS.leaf.API.STREAM.CREATE.{name}", _stream(name))
        js_request_sync(leaf.url, "$JS.leaf.API.INFO")
        js_request_sync(hub.url, f"$JS.leaf.API.STREAM.DELETE.{name}")
    # the leaf rewrites $JS.leaf.API.X to $JS.API.X, so each request is seen once
    assert counter.writes == [
        f"$JS.API.STREAM.CREATE.{name}",
        f"$JS.API.STREAM.DELETE.{name}",
    ]
    assert counter.reads == ["$JS.API.INFO"]


@pytest.mark.parametrize(
    ("subject", "write"),
    [
        ("$JS.API.STREAM.CREATE.S", True),
        ("$JS.API.STREAM.UPDATE.S", True),
        ("$JS.API.STREAM.DELETE.S", True),
        ("$JS.API.STREAM.PURGE.S", True),
        ("$JS.API.CONSUMER.CREATE.S", True),
        ("$JS.API.CONSUMER.CREATE.S.C", True),
        ("$JS.API.CONSUMER.CREATE.S.C.orders.>", True),
        ("$JS.API.CONSUMER.DURABLE.CREATE.S.C", True),
        ("$JS.API.CONSUMER.DELETE.S.C", True),
        ("$JS.API.CONSUMER.PAUSE.S.C", True),
        ("$JS.hub.API.STREAM.UPDATE.S", True),
        ("$JS.API.INFO", False),
        ("$JS.API.STREAM.INFO.S", False),
        ("$JS.API.STREAM.NAMES", False),
        ("$JS.API.STREAM.LIST", False),
        ("$JS.API.CONSUMER.INFO.S.C", False),
        ("$JS.API.CONSUMER.MSG.NEXT.S.C", False),
        ("$JS.leaf.API.CONSUMER.NAMES.S", False),
        ("orders.created", False),
    ],
)
def test_write_classification(subject: str, write: bool) -> None:
    assert is_write_request(subject) is write


def test_api_op_strips_prefix_and_domain() -> None:
    assert api_op("$JS.API.STREAM.INFO.S") == "STREAM.INFO.S"
    assert api_op("$JS.hub.API.STREAM.INFO.S") == "STREAM.INFO.S"
    assert api_op("$KV.b.k") is None


def test_unique_name() -> None:
    names = {unique_name("ORDERS") for _ in range(50)}
    assert len(names) == 50
    name = names.pop()
    assert name.startswith("ORDERS_")
    assert name.removeprefix("ORDERS_").isupper()
    assert "." not in name


def test_environment_is_isolated() -> None:
    assert "NATS_URL" not in os.environ
    assert "NATS_CREDS" not in os.environ
    assert "NATS_CONTEXT" not in os.environ
    home = Path(os.environ["HOME"])
    assert home.is_dir()
    assert not any(home.iterdir())


def test_builder_server_stops_by_pid(tmp_path: Path) -> None:
    handle = start_single(tmp_path, name="own", monitoring=False)
    port, proc = handle.server.port, handle.server.proc
    assert port_open("127.0.0.1", port)
    handle.stop()
    assert proc.poll() is not None
    assert not port_open("127.0.0.1", port)


def test_failed_start_reports_log_tail(tmp_path: Path) -> None:
    with pytest.raises(JsopsError) as err:
        start_server(store_dir=tmp_path / "store", config_text="jetstream { bogus_key: [ }\n")
    assert "exited with code" in str(err.value)
    assert "log tail" in str(err.value)


def test_free_ports_are_below_the_ephemeral_range_and_never_repeat() -> None:
    """A port the OS picks for port 0 is an ephemeral one, which a client connection's
    local port can take before nats-server binds it (seen in CI)."""
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(1024 < p < ephemeral_port_start() for p in ports), ports


def test_a_port_taken_before_the_server_listens_is_picked_again(tmp_path: Path) -> None:
    """nats-server exits on "address already in use": PortInUse, and a builder that picks
    its ports itself boots again on new ones."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        with pytest.raises(PortInUse, match="exited with code"):
            start_server(store_dir=tmp_path / "clash", port=taken)
        ports = iter([taken, free_port()])
        srv = retry_port_clash(lambda: start_server(store_dir=tmp_path / "store", port=next(ports)))
        try:
            assert srv.port != taken and port_open("127.0.0.1", srv.port)
            assert js_request_sync(srv.url, "$JS.API.INFO").get("type")
        finally:
            srv.stop()
        with pytest.raises(PortInUse):  # a port that stays taken fails after the attempts
            retry_port_clash(lambda: start_server(store_dir=tmp_path / "s2", port=taken), 2)


def test_cluster_readiness_names_what_is_missing_and_a_restart_keeps_the_node(
    tmp_path: Path,
) -> None:
    """cluster_status (what start_cluster and `jsops server --cluster` wait for) holds on
    a ready cluster and says why not with a node down; restart() brings the same node back
    (ports, store) and the cluster is ready again."""
    cluster = start_cluster(tmp_path)
    try:
        assert cluster_status(cluster.servers) is None
        assert meta_outsiders(cluster.servers) == []
        node = cluster.servers[2]
        port, store = node.port, node.store_dir
        node.stop()
        assert cluster_status(cluster.servers) is not None  # n3's /jsz does not answer
        node.restart()
        assert node.running and (node.port, node.store_dir) == (port, store)
        wait_cluster_ready(cluster.servers, 60, "the cluster after a restart")
    finally:
        cluster.stop()


def test_fixture_servers_run_the_selected_release(
    nats_server: SingleServer, server_version: tuple[int, int, int]
) -> None:
    """`--nats-server-version` / $JSOPS_NATS_SERVER reach every fixture's server."""
    reported = monitor_json(nats_server.server, "/varz")["version"]
    assert releases.parse_version(reported) == server_version


def test_binary_selection_by_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binary = releases.ensure(releases.OLDEST)
    monkeypatch.setenv(releases.ENV_VAR, str(binary))
    srv = start_single(tmp_path).server
    try:
        assert monitor_json(srv, "/varz")["version"] == releases.OLDEST
    finally:
        srv.stop()
    monkeypatch.setenv(releases.ENV_VAR, str(tmp_path / "missing"))
    with pytest.raises(JsopsError, match=r"JSOPS_NATS_SERVER=.* is not an executable file"):
        start_single(tmp_path / "again")
