"""The apply lock with a JetStream domain (hub + leaf) and in operator mode."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from harness import jsm_schema
from harness.operator import start_operator_server
from harness.project import make_project
from harness.servers import Cluster, HubAndLeaf, JsWriteCounter, js_request_sync, unique_name

from reconciler import lock
from reconciler.accounts import admin_creds
from reconciler.connection import ConnectSettings, connect
from reconciler.live import LOCK_STREAM, Connections, JetStreamClient

T = TypeVar("T")
HOLDER = lock.Holder("someone", "elsewhere", 4242, "2026-12-02T06:30:00Z", 60.0, command="apply")


def _stream(name: str, account: str | None = None, max_age: str = "1h") -> str:
    where = f", account: {account}" if account else ""
    return (
        f"apiVersion: jsops/v1\nkind: Stream\nmetadata: {{name: {name}{where}}}\n"
        f'spec: {{subjects: ["{name.lower()}.>"], max_age: {max_age}}}\n'
    )


def _with_client(settings: ConnectSettings, body: Callable[[JetStreamClient], Awaitable[T]]) -> T:
    async def run() -> T:
        nc = await connect(settings)
        try:
            return await body(JetStreamClient(nc, settings))
        finally:
            await nc.close()

    return asyncio.run(run())


def test_lock_lives_in_the_environment_s_domain(tmp_path: Path, hub_and_leaf: HubAndLeaf) -> None:
    """Connected to the hub, with `domain: leaf`: the lock is the leaf's, written
    through `$JS.leaf.API.$KV...`, and held there it stops an apply of that environment."""
    hub = hub_and_leaf.hub.url
    project = make_project(tmp_path, hub, envs={"dev": {"servers": [hub], "domain": "leaf"}})
    name = unique_name("LKD")
    project.write("s.yaml", _stream(name))
    code, _out, err = project.cli("apply", "--auto-approve")
    assert code == 0, err
    key = lock.lock_key(project.name, "dev")
    last = js_request_sync(
        hub,
        f"$JS.leaf.API.STREAM.MSG.GET.{LOCK_STREAM}",
        {"last_by_subj": f"$KV.jsops_lock.{key}"},
    )
    assert "message" in last, last  # the leaf's bucket has the key (released)
    on_hub = js_request_sync(
        hub, f"$JS.API.STREAM.MSG.GET.{LOCK_STREAM}", {"last_by_subj": f"$KV.jsops_lock.{key}"}
    )
    assert "error" in on_hub, on_hub  # the hub's JetStream knows nothing of it

    settings = ConnectSettings(servers=[hub], domain="leaf")
    lease = _with_client(settings, lambda c: lock.acquire(c, key, HOLDER))
    project.write("s.yaml", _stream(name, max_age="2h"))
    code, _out, err = project.cli("apply", "--auto-approve")
    assert code == 1
    assert f'environment "dev" is locked by another apply: {HOLDER.describe()}' in err
    code, _out, err = project.cli("unlock", "--yes")
    assert code == 0 and "released" in err, err
    assert lease.seq > 0
    code, _out, err = project.cli("apply", "--auto-approve")
    assert code == 0, err


def test_on_a_cluster_the_lock_bucket_is_r3(tmp_path: Path, nats_cluster: Cluster) -> None:
    """On a cluster of three the first apply makes the lock bucket R3 (it outlives one
    server), with the complete config a KeyValue bucket gets (jsm.go's schema)."""
    url = nats_cluster.url
    js_request_sync(url, f"$JS.API.STREAM.DELETE.{LOCK_STREAM}")  # (this worker's cluster)
    deadline = time.monotonic() + 10  # a clustered delete finishes after its reply
    while "error" not in js_request_sync(url, f"$JS.API.STREAM.INFO.{LOCK_STREAM}"):
        assert time.monotonic() < deadline, "the old lock bucket was never deleted"
        time.sleep(0.1)
    project = make_project(tmp_path, url, envs={"test": {"servers": nats_cluster.urls}})
    project.write("s.yaml", _stream(unique_name("LKC")))
    with JsWriteCounter(url) as counter:
        code, _out, err = project.cli("apply", "--auto-approve")
    assert code == 0, err
    assert f"$JS.API.STREAM.CREATE.{LOCK_STREAM}" in counter.writes
    assert jsm_schema.write_problems(counter) == []
    info = js_request_sync(url, f"$JS.API.STREAM.INFO.{LOCK_STREAM}")
    assert info["config"]["num_replicas"] == 3


def test_operator_mode_keeps_the_lock_in_jsops_own_account(tmp_path: Path) -> None:
    """No credentials of the environment's own (jsops mints admin users per account):
    the lock lives in the account JSOPS, made and pushed on the first apply."""
    op = start_operator_server(tmp_path / "op")
    try:
        account = unique_name("LKA")
        project = make_project(
            tmp_path, op.url, envs={"ops": {"servers": [op.url], "auth_dir": str(op.store.root)}}
        )
        name = unique_name("LKO")
        account_doc = (
            f"apiVersion: jsops/v1\nkind: Account\nmetadata: {{name: {account}}}\n"
            "spec: {jetstream: {max_storage: 64MiB, max_memory: 0}}\n"
        )
        project.write("a.yaml", account_doc + "---\n" + _stream(name, account))
        code, _out, err = project.cli("apply", "--auto-approve")
        assert code == 0, err
        assert op.store.account_jwt(lock.LOCK_ACCOUNT) is not None
        jsops_creds = admin_creds(op.store, lock.LOCK_ACCOUNT)
        settings = ConnectSettings(servers=[op.url], creds_text=jsops_creds)
        info = _with_client(settings, lambda c: c.stream_info(LOCK_STREAM))
        assert info is not None and info["config"]["max_msgs_per_subject"] == 1

        async def hold() -> lock.Lease:
            conns = Connections(ConnectSettings(servers=[op.url]), str(op.store.root))
            try:
                client = await lock.lock_client(conns, True, create=False)
                assert client is not None
                return await lock.acquire(client, lock.lock_key(project.name, "ops"), HOLDER)
            finally:
                await conns.close()

        asyncio.run(hold())
        project.write("a.yaml", account_doc + "---\n" + _stream(name, account, max_age="2h"))
        code, _out, err = project.cli("apply", "--auto-approve")
        assert code == 1
        assert f'environment "ops" is locked by another apply: {HOLDER.describe()}' in err
        code, _out, err = project.cli("unlock", "--yes")
        assert code == 0 and "released" in err, err
        code, _out, err = project.cli("apply", "--auto-approve")
        assert code == 0, err
        # the lock's account and bucket are not the project's: nothing to plan or prune
        code, _out, err = project.cli("plan", "--prune", "--detailed-exitcode")
        assert code == 0, err
    finally:
        op.stop()


def test_on_a_cluster_of_two_the_lock_bucket_is_r1(tmp_path: Path) -> None:
    """Two servers cannot place three replicas: after its R3 tries the first apply makes
    the lock bucket R1, and the apply goes on."""
    from harness.servers import start_cluster

    pair = start_cluster(tmp_path / "pair", size=2, cluster_name="pair")
    try:
        project = make_project(tmp_path, pair.url, envs={"test": {"servers": pair.urls}})
        project.write("s.yaml", _stream(unique_name("LK2")))
        code, _out, err = project.cli("apply", "--auto-approve")
        assert code == 0, err
        info = js_request_sync(pair.url, f"$JS.API.STREAM.INFO.{LOCK_STREAM}")
        assert info["config"]["num_replicas"] == 1
    finally:
        pair.stop()
