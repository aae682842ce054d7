"""KeyValue and ObjectStore buckets: built as the NATS clients build them, planned and
shown in bucket terms, on real servers, used through nats-py's bucket APIs."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nats
import pytest
from harness.project import make_project
from harness.servers import JsWriteCounter, SingleServer, js_request_sync, unique_name

from reconciler.plan import Action

if TYPE_CHECKING:
    from harness.project import TestProject


def bucket_doc(kind: str, name: str, meta: dict[str, Any] | None = None, **spec: Any) -> str:
    metadata = {"name": name, **(meta or {})}
    return (
        f"apiVersion: jsops/v1\nkind: {kind}\n"
        f"metadata: {json.dumps(metadata)}\nspec: {json.dumps(spec)}\n"
    )


def kv_doc(name: str, **spec: Any) -> str:
    return bucket_doc("KeyValue", name, **spec)


def stream_config(url: str, name: str) -> dict[str, Any] | None:
    reply = js_request_sync(url, f"$JS.API.STREAM.INFO.{name}")
    return None if "error" in reply else reply["config"]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def project(tmp_path: Path, nats_server: SingleServer) -> TestProject:
    return make_project(tmp_path, nats_server.url)


def apply_ok(project: TestProject, **kwargs: Any) -> Any:
    the_plan, result = project.apply(**kwargs)
    assert result is None or result.ok
    return the_plan


def test_key_value_manifest_works_with_the_client(project: TestProject, nats_server) -> None:
    name = unique_name("cfg")
    project.write("kv.yaml", kv_doc(name, history=3, ttl="2s", max_value_size="1KiB"))
    first = apply_ok(project)
    assert [(c.action, c.address.target) for c in first.changes] == [
        (Action.CREATE, f"KeyValue/{name}")
    ]
    assert [d.path for d in first.changes[0].diff] == [
        "history",
        "ttl",
        "max_value_size",
        "metadata",
    ]
    config = stream_config(nats_server.url, f"KV_{name}")
    assert config is not None
    assert config["subjects"] == [f"$KV.{name}.>"]
    assert config["max_msgs_per_subject"] == 3
    assert config["deny_delete"] and config["allow_rollup_hdrs"] and config["allow_direct"]
    assert config["discard"] == "new" and config["duplicate_window"] == 2 * 10**9
    assert config["max_msg_size"] == 1024

    async def use() -> tuple[list[bytes], bytes | None, bool]:
        nc = await nats.connect(nats_server.url)
        try:
            kv = await nc.jetstream().key_value(name)
            for i in range(5):
                await kv.put("feature.x", f"v{i}".encode())
            latest = (await kv.get("feature.x")).value or b""
            history = [e.value or b"" for e in await kv.history("feature.x")]
            # ttl 2s: the values expire. The server removes expired messages on a timer
            # that runs late on a loaded machine, so wait for it (a bucket whose ttl was
            # not applied never expires, and fails here).
            deadline = asyncio.get_running_loop().time() + 20
            expired = False
            while not expired and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.5)
                try:
                    await kv.get("feature.x")
                except nats.js.errors.KeyNotFoundError:
                    expired = True
            return history, latest, expired
        finally:
            await nc.close()

    history, latest, expired = run(use())
    assert latest == b"v4"
    assert history == [b"v2", b"v3", b"v4"]  # kept to history: 3
    assert expired

    again = project.plan()
    assert not again.has_changes
    with JsWriteCounter(nats_server.url) as counter:
        apply_ok(project)
    assert counter.writes == []


def test_object_store_manifest_works_with_the_client(project: TestProject, nats_server) -> None:
    name = unique_name("art")
    project.write("obj.yaml", bucket_doc("ObjectStore", name, max_bytes="16MiB"))
    apply_ok(project)
    config = stream_config(nats_server.url, f"OBJ_{name}")
    assert config is not None
    assert sorted(config["subjects"]) == sorted([f"$O.{name}.C.>", f"$O.{name}.M.>"])
    blob = bytes(range(256)) * 2048  # 512KiB: four chunks of nats-py's 128KiB

    async def use() -> bytes:
        nc = await nats.connect(nats_server.url)
        try:
            obs = await nc.jetstream().object_store(name)
            info = await obs.put("blob.bin", blob)
            assert info.chunks is not None and info.chunks > 1
            return (await obs.get("blob.bin")).data or b""
        finally:
            await nc.close()

    assert run(use()) == blob
    assert not project.plan().has_changes


def test_history_change_is_one_update_in_bucket_terms(project: TestProject) -> None:
    name = unique_name("cfg")
    project.write("kv.yaml", kv_doc(name, history=5))
    apply_ok(project)
    project.write("kv.yaml", kv_doc(name, history=10))
    plan = project.plan()
    pending = plan.pending()
    assert len(pending) == 1
    change = pending[0]
    assert change.action is Action.UPDATE
    assert change.address.target == f"KeyValue/{name}"
    assert [(d.path, d.before, d.after) for d in change.diff] == [("history", 5, 10)]
    code, out, err = project.cli("plan", "--target", f"KeyValue/{name}")
    assert code == 0, err
    assert f"~ KeyValue {name}" in out and "history: 5 -> 10" in out
    assert "KV_" not in out
    code, _, err = project.cli("plan", "--out", "plan.json")
    assert code == 0, err
    saved = json.loads((project.root / "plan.json").read_text())
    (entry,) = [c for c in saved["changes"] if c["action"] != "noop"]
    assert (entry["kind"], entry["name"]) == ("KeyValue", name)
    assert entry["diff"] == [{"path": "history", "before": 5, "after": 10}]
    code, _, err = project.cli("apply", "plan.json")
    assert code == 0, err
    assert not project.plan().has_changes


def test_storage_change_is_a_replace_in_bucket_terms(project: TestProject) -> None:
    name = unique_name("cfg")
    project.write("kv.yaml", kv_doc(name))
    apply_ok(project)
    project.write("kv.yaml", kv_doc(name, storage="memory"))
    change = project.plan().pending()[0]
    assert change.action is Action.REPLACE
    assert change.replace_paths == ("storage",)
    assert [d.path for d in change.diff] == ["storage"]
    code, _, err = project.cli("apply", "--auto-approve")
    assert code == 1
    assert f"KeyValue {name}" in err and "KV_" not in err


def _wait(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


# ------------------------------------------------------------------ offline: validation, policy


BUCKET_TENANTS = """
project: p
tenants:
  acme:
    prefix: tenant.acme
    bucket_pattern: "acme-[a-z-]+"
    quota: {max_streams: 2, max_bytes: 1GiB, max_replicas: 1}
"""


def _policy_lines(text: str) -> list[str]:
    from test_policy import config, lines, resources

    from reconciler.policy import check_policy

    return lines(check_policy(resources(text), config(BUCKET_TENANTS), "dev"))


def test_bucket_manifest_errors_are_located(tmp_path: Path) -> None:
    from harness.project import run_cli

    path = tmp_path / "kv.yaml"
    path.write_text(
        "apiVersion: jsops/v1\nkind: KeyValue\nmetadata: {name: a.b}\n"
        "spec: {history: 65, histroy: 2}\n"
        "---\napiVersion: jsops/v1\nkind: ObjectStore\nmetadata: {name: art}\n"
        "spec: {max_value_size: 1KiB}\n"
    )
    code, _, err = run_cli(["validate", str(path)], cwd=tmp_path)
    assert code == 1
    assert 'kv.yaml:3:18: metadata.name: bucket name "a.b" may only contain' in err
    assert "kv.yaml:4:17: spec.history: must be at most 64, got 65" in err
    assert 'kv.yaml:4:21: unknown field "histroy" in spec (did you mean "history"?)' in err
    assert 'kv.yaml:9:8: unknown field "max_value_size" in spec' in err


def test_tenants_quotas_and_names_apply_to_buckets() -> None:
    text = """
    apiVersion: jsops/v1
    kind: KeyValue
    metadata: {name: acme-config, tenant: acme}
    spec: {max_bytes: 600MiB, republish: {src: "$KV.acme-config.x", dest: "other.x"}}
    ---
    apiVersion: jsops/v1
    kind: ObjectStore
    metadata: {name: Artifacts, tenant: acme}
    spec: {max_bytes: 600MiB, replicas: 3}
    ---
    apiVersion: jsops/v1
    kind: KeyValue
    metadata: {name: acme-sessions, tenant: acme}
    spec: {}
    """
    found = _policy_lines(text)
    joined = "\n".join(found)
    assert 'spec.republish.dest: subject "other.x" is not under the prefix "tenant.acme"' in joined
    assert 'metadata.name: bucket name "Artifacts" does not match the pattern' in joined
    assert "spec.replicas: 3 replicas, over the quota of 1" in joined
    assert 'tenant "acme" declares 3 streams, over its quota of 2' in joined
    assert 'bucket "acme-sessions" has no max_bytes limit' in joined
    assert (
        'tenant "acme" streams reserve 2400MiB (max_bytes x num_replicas), over its quota' in joined
    )


# ------------------------------------------------------------------ export / adoption


def test_client_made_buckets_export_as_buckets_and_adopt(
    tmp_path: Path, nats_server, server_version
) -> None:
    from nats.js.api import KeyValueConfig, StorageType

    kv_py, kv_go, obj = unique_name("kvpy"), unique_name("kvgo"), unique_name("obj")

    async def make() -> None:
        nc = await nats.connect(nats_server.url)
        try:
            js = nc.jetstream()
            config = KeyValueConfig(
                bucket=kv_py, history=7, ttl=3600, max_value_size=4096, storage=StorageType.FILE
            )
            await js.create_key_value(config)
            await js.create_object_store(obj)
        finally:
            await nc.close()

    run(make())
    # what nats.go's jetstream.CreateKeyValue sends (limit marker TTL, compression, metadata)
    go_config = {
        "name": f"KV_{kv_go}",
        "subjects": [f"$KV.{kv_go}.>"],
        "max_msgs_per_subject": 3,
        "max_bytes": 1024**2,
        "max_age": 0,
        "max_msg_size": -1,
        "storage": "file",
        "num_replicas": 1,
        "allow_rollup_hdrs": True,
        "deny_delete": True,
        "duplicate_window": 120 * 10**9,
        "max_msgs": -1,
        "max_consumers": -1,
        "allow_direct": True,
        "compression": "s2",
        "discard": "new",
        "allow_msg_ttl": True,
        "subject_delete_marker_ttl": 300 * 10**9,
        "metadata": {"team": "platform"},
    }
    marker = server_version >= (2, 11, 0)  # limit_marker_ttl needs API level 1
    if not marker:
        del go_config["allow_msg_ttl"], go_config["subject_delete_marker_ttl"]
    reply = js_request_sync(nats_server.url, f"$JS.API.STREAM.CREATE.KV_{kv_go}", go_config)
    assert "error" not in reply, reply

    project = make_project(tmp_path, nats_server.url)
    code, _out, err = project.cli("export", "--out", "manifests")
    assert code == 0, err
    mine = {project.root / "manifests" / f"{s}.yaml" for s in (f"KV_{kv_py}", f"KV_{kv_go}")}
    mine.add(project.root / "manifests" / f"OBJ_{obj}.yaml")
    for other in (project.root / "manifests").glob("*.yaml"):
        if other not in mine:
            other.unlink()
    py_text = (project.root / "manifests" / f"KV_{kv_py}.yaml").read_text()
    assert "kind: KeyValue" in py_text and f"name: {kv_py}" in py_text
    assert "history: 7" in py_text and "ttl: 1h" in py_text and "max_value_size: 4KiB" in py_text
    go_text = (project.root / "manifests" / f"KV_{kv_go}.yaml").read_text()
    assert ("limit_marker_ttl: 5m" in go_text) is marker and "compression: s2" in go_text
    assert "team: platform" in go_text and "max_bytes: 1MiB" in go_text
    assert "kind: ObjectStore" in (project.root / "manifests" / f"OBJ_{obj}.yaml").read_text()
    assert "KV_" not in py_text.split("kind:")[1] and "subjects" not in py_text

    plan = project.plan()
    assert sorted(c.address.target for c in plan.changes) == sorted(
        [f"KeyValue/{kv_py}", f"KeyValue/{kv_go}", f"ObjectStore/{obj}"]
    )
    for change in plan.changes:
        assert change.action is Action.UPDATE, change
        assert [d.path for d in change.diff] == ["metadata.jsops.owner"], change.diff
    apply_ok(project)
    assert not project.plan().has_changes


# ------------------------------------------------------------------ domains, promote


def _hub_leaf_project(tmp_path: Path, hub_and_leaf: Any) -> TestProject:
    return make_project(
        tmp_path,
        hub_and_leaf.hub.url,
        envs={
            "dev": {"servers": [hub_and_leaf.leaf.url], "domain": "leaf"},
            "prod": {"servers": [hub_and_leaf.hub.url], "domain": "hub"},
        },
    )


def test_leaf_bucket_promoted_as_a_hub_mirror_receives_puts(tmp_path: Path, hub_and_leaf) -> None:
    project = _hub_leaf_project(tmp_path, hub_and_leaf)
    name = unique_name("flags")
    project.write(
        "flags.yaml",
        bucket_doc("KeyValue", name, {"environments": ["dev"]}, history=2, ttl="1d")
        + "---\n"
        + bucket_doc("ObjectStore", name, {"environments": ["dev"]}),
    )
    apply_ok(project, env="dev")
    out = project.root / "manifests" / "promoted"
    promote = ("promote", "--from", "dev", "--to", "prod", "--select", name, "--out", str(out))
    code, _out, err = project.cli(*promote)
    assert code == 0, err
    # the ObjectStore has no mirror in the clients' config: mirror mode leaves it out
    assert [f.name for f in out.iterdir()] == [f"{name}.keyvalue.yaml"]
    text = (out / f"{name}.keyvalue.yaml").read_text()
    assert "kind: KeyValue" in text and "domain: leaf" in text
    assert "history: 2" in text and "ttl: 1d" in text and "environments:\n    - prod" in text

    prod = apply_ok(project, env="prod")
    assert [c.address.target for c in prod.changes] == [f"KeyValue/{name}"]
    assert prod.changes[0].external_refs == (f"KeyValue {name} (domain leaf)",)
    mirror = stream_config(hub_and_leaf.hub.url, f"KV_{name}")
    assert mirror is not None
    assert mirror["mirror"]["name"] == f"KV_{name}"
    assert mirror["mirror"]["external"]["api"] == "$JS.leaf.API"
    assert mirror["mirror_direct"] and not mirror.get("subjects")

    async def put_on_leaf() -> None:
        nc = await nats.connect(hub_and_leaf.leaf.url)
        try:
            kv = await nc.jetstream(domain="leaf").key_value(name)
            await kv.put("beta", b"on")
        finally:
            await nc.close()

    async def get_on_hub() -> bytes | None:
        nc = await nats.connect(hub_and_leaf.hub.url)
        try:
            kv = await nc.jetstream(domain="hub").key_value(name)
            try:
                return (await kv.get("beta")).value
            except nats.js.errors.KeyNotFoundError:
                return None
        finally:
            await nc.close()

    run(put_on_leaf())
    assert _wait(lambda: run(get_on_hub()) == b"on")
    for env in ("dev", "prod"):
        assert not project.plan(env=env).has_changes, env


# ------------------------------------------------------------------ sources, limit markers


def test_bucket_sourcing_another_gets_its_keys(project: TestProject, nats_server) -> None:
    origin, merged = unique_name("orig"), unique_name("merged")
    project.write(
        "kv.yaml",
        kv_doc(origin) + "---\n" + kv_doc(merged, history=2, sources=[{"name": origin}]),
    )
    first = apply_ok(project)
    change = next(c for c in first.changes if c.address.name == merged)
    assert change.depends_on == (f"KeyValue {origin}",)
    config = stream_config(nats_server.url, f"KV_{merged}")
    assert config is not None and config["subjects"] == [f"$KV.{merged}.>"]
    assert config["sources"][0]["name"] == f"KV_{origin}"
    assert config["sources"][0]["subject_transforms"] == [
        {"src": f"$KV.{origin}.>", "dest": f"$KV.{merged}.>"}
    ]

    async def put() -> None:
        nc = await nats.connect(nats_server.url)
        try:
            await (await nc.jetstream().key_value(origin)).put("k", b"v")
        finally:
            await nc.close()

    async def get() -> bytes | None:
        nc = await nats.connect(nats_server.url)
        try:
            return (await (await nc.jetstream().key_value(merged)).get("k")).value
        except nats.js.errors.KeyNotFoundError:
            return None
        finally:
            await nc.close()

    run(put())
    assert _wait(lambda: run(get()) == b"v")
    assert not project.plan().has_changes


def test_limit_marker_ttl_needs_api_level_1(project: TestProject, nats_server, server_version):
    name = unique_name("cfg")
    project.write("kv.yaml", kv_doc(name, limit_marker_ttl="5m"))
    if server_version < (2, 11, 0):
        code, out, err = project.cli("plan")
        assert code == 1 and out == ""
        assert "kv.yaml:4:8: limit_marker_ttl needs nats-server 2.11 or newer" in err
        return
    apply_ok(project)
    config = stream_config(nats_server.url, f"KV_{name}")
    assert config is not None
    assert config["allow_msg_ttl"] is True
    assert config["subject_delete_marker_ttl"] == 300 * 10**9
    with JsWriteCounter(nats_server.url) as counter:
        assert not project.plan().has_changes
        apply_ok(project)
    assert counter.writes == []


# ------------------------------------------------------------------ prune, prevent_destroy


def test_prune_deletes_owned_buckets_in_bucket_terms(project: TestProject, nats_server) -> None:
    keep, kv, obj = unique_name("keep"), unique_name("gone"), unique_name("gone")
    project.write("keep.yaml", kv_doc(keep))
    project.write("kv.yaml", kv_doc(kv))
    project.write("obj.yaml", bucket_doc("ObjectStore", obj))
    apply_ok(project)
    project.remove("kv.yaml")
    project.remove("obj.yaml")
    plan = project.plan()
    assert set(plan.unmanaged) == {f"KeyValue {kv}", f"ObjectStore {obj}"}
    pruning = project.plan(prune=True)
    assert sorted((c.action, c.address.target) for c in pruning.pending()) == [
        (Action.DELETE, f"KeyValue/{kv}"),
        (Action.DELETE, f"ObjectStore/{obj}"),
    ]
    code, _, err = project.cli("apply", "--auto-approve", "--prune")
    assert code == 0, err
    assert stream_config(nats_server.url, f"KV_{kv}") is None
    assert stream_config(nats_server.url, f"OBJ_{obj}") is None
    assert stream_config(nats_server.url, f"KV_{keep}") is not None


def test_prevent_destroy_protects_a_bucket(project: TestProject, nats_server) -> None:
    keep, name = unique_name("keep"), unique_name("safe")
    project.write("keep.yaml", kv_doc(keep))
    project.write("kv.yaml", bucket_doc("KeyValue", name, {"prevent_destroy": True}))
    apply_ok(project)
    project.write(
        "kv.yaml", bucket_doc("KeyValue", name, {"prevent_destroy": True}, storage="memory")
    )
    code, _, err = project.cli("apply", "--auto-approve", "--allow-replace")
    assert code == 1
    assert f"KeyValue {name}" in err and "prevent_destroy" in err and "KV_" not in err
    project.remove("kv.yaml")
    code, _, err = project.cli("apply", "--auto-approve", "--prune")
    assert code == 1
    assert f"KeyValue {name}" in err and "prevent_destroy" in err
    assert stream_config(nats_server.url, f"KV_{name}") is not None


def test_more_replicas_than_servers_is_a_plan_error_in_bucket_terms(project: TestProject):
    project.write("kv.yaml", kv_doc(unique_name("cfg"), replicas=3))
    code, out, err = project.cli("plan")
    assert code == 1 and out == ""
    assert "kv.yaml:4:8: replicas 3: the server is not clustered" in err


def test_a_stream_named_like_a_buckets_stream_is_a_duplicate(tmp_path: Path) -> None:
    from harness.project import run_cli

    (tmp_path / "m.yaml").write_text(
        kv_doc("config")
        + "---\napiVersion: jsops/v1\nkind: Stream\nmetadata: {name: KV_config}\nspec: {}\n"
    )
    code, _, err = run_cli(["validate", "m.yaml"], cwd=tmp_path)
    assert code == 1
    assert (
        "m.yaml:3:12: KeyValue config is the stream KV_config, which is declared at m.yaml:8:12"
        in err
    )


def test_out_of_band_changes_show_in_bucket_terms(project: TestProject, nats_server) -> None:
    name = unique_name("cfg")
    project.write("kv.yaml", kv_doc(name, history=4))
    apply_ok(project)
    config = stream_config(nats_server.url, f"KV_{name}")
    assert config is not None
    config.update(max_msgs_per_subject=9, max_msgs=100)
    reply = js_request_sync(nats_server.url, f"$JS.API.STREAM.UPDATE.KV_{name}", config)
    assert "error" not in reply, reply
    change = project.plan().pending()[0]
    assert change.action is Action.UPDATE and change.drift
    assert [(d.path, d.before, d.after) for d in change.diff] == [
        ("history", 9, 4),
        ("stream.max_msgs", 100, -1),
    ]
    code, out, _ = project.cli("plan", "--format", "json")
    assert code == 0
    (entry,) = [c for c in json.loads(out)["changes"] if c["name"] == name]
    assert entry["kind"] == "KeyValue" and entry["drift"] is True
    apply_ok(project)
    assert not project.plan().has_changes


def test_r3_buckets_on_a_cluster(nats_cluster, tmp_path: Path) -> None:
    project = make_project(tmp_path, nats_cluster.url)
    kv, obj = unique_name("cfg"), unique_name("art")
    project.write(
        "b.yaml",
        kv_doc(kv, history=2, replicas=1, placement={"cluster": "c1"})
        + "---\n"
        + bucket_doc("ObjectStore", obj, replicas=1),
    )
    apply_ok(project)
    project.write(
        "b.yaml",
        kv_doc(kv, history=2, replicas=3, placement={"cluster": "c1"})
        + "---\n"
        + bucket_doc("ObjectStore", obj, replicas=3),
    )
    pending = project.plan().pending()
    assert [(c.address.target, c.action) for c in pending] == [
        (f"KeyValue/{kv}", Action.UPDATE),
        (f"ObjectStore/{obj}", Action.UPDATE),
    ]
    for change in pending:
        assert [(d.path, d.before, d.after) for d in change.diff] == [("replicas", 1, 3)]

    def scaled() -> bool:  # a fresh cluster may report a peer offline for a while (2.10, 2.12)
        code, _, _err = project.cli("apply", "--auto-approve")
        return code == 0

    assert _wait(scaled, timeout=60)
    config = stream_config(nats_cluster.url, f"KV_{kv}")
    assert config is not None and config["num_replicas"] == 3

    async def use() -> bytes | None:
        nc = await nats.connect(nats_cluster.url)
        try:
            kv_store = await nc.jetstream().key_value(kv)
            await kv_store.put("a", b"1")
            return (await kv_store.get("a")).value
        except nats.errors.Error:  # right after scaling up, the new peers may still elect
            return None
        finally:
            await nc.close()

    assert _wait(lambda: run(use()) == b"1", timeout=30)
    with JsWriteCounter(nats_cluster.url) as counter:
        assert not project.plan().has_changes
        apply_ok(project)
    assert counter.writes == []


def test_mirror_in_one_domain_follows_the_origins_direct(project: TestProject, nats_server):
    origin, direct, plain = unique_name("orig"), unique_name("mdir"), unique_name("mplain")
    indirect = unique_name("orig")
    project.write(
        "kv.yaml",
        kv_doc(origin)
        + "---\n"
        + kv_doc(indirect, direct=False)
        + "---\n"
        + kv_doc(direct, mirror={"name": origin})
        + "---\n"
        + kv_doc(plain, mirror={"name": f"KV_{indirect}"}),
    )
    apply_ok(project)
    for name, expected in ((direct, True), (plain, False)):
        config = stream_config(nats_server.url, f"KV_{name}")
        assert config is not None and bool(config.get("mirror_direct")) is expected, name
    assert not project.plan().has_changes


def test_a_durable_consumer_of_a_buckets_stream(project: TestProject, nats_server) -> None:
    name = unique_name("cfg")
    consumer = (
        "apiVersion: jsops/v1\nkind: Consumer\n"
        f"metadata: {{name: watcher, stream: KV_{name}}}\n"
        f'spec: {{ack_policy: explicit, filter_subject: "$KV.{name}.feature.>"}}\n'
    )
    project.write("kv.yaml", kv_doc(name) + "---\n" + consumer)
    first = apply_ok(project)
    (watcher,) = [c for c in first.changes if c.address.kind == "Consumer"]
    assert watcher.depends_on == (f"KeyValue {name}",)
    reply = js_request_sync(nats_server.url, f"$JS.API.CONSUMER.INFO.KV_{name}.watcher")
    assert reply["config"]["filter_subject"] == f"$KV.{name}.feature.>"
    assert not project.plan().has_changes
    project.write("kv.yaml", kv_doc(name) + "---\n" + consumer.replace(".feature.>", ".x"))
    code, _, err = project.cli("validate")
    assert code == 0, err
    project.write("kv.yaml", kv_doc(name) + "---\n" + consumer.replace(f"$KV.{name}.", "other."))
    code, _, err = project.cli("validate")
    assert code == 1 and 'filter "other.feature.>" is not covered' in err
