"""Backups: ``jsops backup`` / ``restore`` / ``backup verify``, and ``apply --backup-dir``.

1. backup -> delete -> restore brings back every message and the durable consumer, in
   the nats CLI layout (``DIR/<STREAM>/backup.json`` with ``config`` and ``state``, and
   ``stream.tar.s2``: the shape jsm.go ``snapshots.go`` writes and reads);
2. a restore onto an existing stream is refused and loses nothing; a broken folder is
   refused before any request;
3. ``backup verify`` passes on a good archive and fails on a truncated one;
4. buckets are backed up by bucket name, and into another environment's Object Store;
5. ``apply --allow-replace --backup-dir`` snapshots what a replace destroys, and a
   failed snapshot fails that change and skips its dependents.

Every test has its own names on the shared server.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import nats
import pytest
from harness.manifests import consumer_doc, stream_doc
from harness.project import TestProject, make_project
from harness.servers import SingleServer, js_request_sync, unique_name

from reconciler import backup


def publish(url: str, subject: str, count: int, size: int = 200) -> None:
    async def run() -> None:
        nc = await nats.connect(url)
        try:
            for i in range(count):
                body = f"message {i} ".encode() * (size // 10)
                reply = await nc.request(subject, body, timeout=5)
                assert "error" not in json.loads(reply.data)
        finally:
            await nc.close()

    asyncio.run(run())


def info(url: str, stream: str) -> dict[str, Any]:
    return js_request_sync(url, f"$JS.API.STREAM.INFO.{stream}")


def delete(url: str, stream: str) -> None:
    assert js_request_sync(url, f"$JS.API.STREAM.DELETE.{stream}").get("success")


def project_with_stream(
    tmp_path: Path, url: str, count: int = 50, size: int = 200
) -> tuple[TestProject, str]:
    name = unique_name("BK")
    project = make_project(tmp_path, url)
    project.write(
        "s.yaml",
        stream_doc(name) + "---\n" + consumer_doc(name, "worker", ack_policy="explicit"),
    )
    code, _out, err = project.cli("apply", "--auto-approve")
    assert code == 0, err
    publish(url, f"{name.lower()}.new", count, size)
    return project, name


def test_backup_delete_restore_brings_back_every_message_and_the_consumer(
    nats_server: SingleServer, tmp_path: Path
) -> None:
    url = nats_server.url
    project, name = project_with_stream(tmp_path, url)
    before = info(url, name)
    out = tmp_path / "backups"

    code, _out, err = project.cli("backup", name, "--out", str(out))
    assert code == 0, err
    assert f"backed up stream {name}" in err and "50 message(s)" in err

    # the nats CLI layout, as jsm.go SnapshotToDirectory writes it
    folder = out / name
    assert sorted(p.name for p in folder.iterdir()) == ["backup.json", "stream.tar.s2"]
    meta = json.loads((folder / "backup.json").read_text())
    assert list(meta) == ["config", "state"]
    assert meta["config"]["name"] == name and meta["config"]["subjects"] == [f"{name.lower()}.>"]
    assert meta["state"]["messages"] == 50 and meta["state"]["last_seq"] == 50
    assert (folder / "stream.tar.s2").read_bytes().startswith(b"\xff\x06\x00\x00S2sTwO")

    delete(url, name)
    code, _out, err = project.cli("restore", str(folder))
    assert code == 0, err
    assert f"restored stream {name}: 50 messages (last sequence 50), 1 consumer" in err
    assert "as in the backup" in err
    after = info(url, name)
    assert after["state"]["messages"] == 50 and after["state"]["last_seq"] == 50
    assert after["config"]["subjects"] == before["config"]["subjects"]
    consumer = js_request_sync(url, f"$JS.API.CONSUMER.INFO.{name}.worker")
    assert consumer["config"]["durable_name"] == "worker" and consumer["num_pending"] == 50
    code, _out, err = project.cli("plan", "--detailed-exitcode")
    assert code == 0, err  # restored as jsops had made it: nothing to change


def test_restore_onto_an_existing_stream_is_refused_and_loses_nothing(
    nats_server: SingleServer, tmp_path: Path
) -> None:
    url = nats_server.url
    project, name = project_with_stream(tmp_path, url, count=10)
    out = tmp_path / "b"
    assert project.cli("backup", name, "--out", str(out))[0] == 0
    publish(url, f"{name.lower()}.new", 5)  # newer than the backup

    code, _out, err = project.cli("restore", str(out / name))
    assert code == 1
    assert f"stream {name} already exists" in err and "nothing was changed" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert info(url, name)["state"]["messages"] == 15


def _backup_claiming(
    tmp_path: Path, url: str, count: int, **claimed: int
) -> tuple[TestProject, str, Path]:
    """A backup of a stream of ``count`` messages whose backup.json claims other state."""
    project, name = project_with_stream(tmp_path, url, count=count)
    out = tmp_path / "b"
    assert project.cli("backup", name, "--out", str(out))[0] == 0
    meta_file = out / name / "backup.json"
    meta = json.loads(meta_file.read_text())
    meta["state"].update(claimed)
    meta_file.write_text(json.dumps(meta))
    return project, name, out / name


def test_a_restore_that_brings_back_less_than_the_backup_says_exits_1(
    nats_server: SingleServer, tmp_path: Path
) -> None:
    """backup.json says 12 messages, the archive holds 10: the stream is restored, and
    the restore says what it got against what the backup says, with exit 1."""
    url = nats_server.url
    project, name, folder = _backup_claiming(tmp_path, url, 10, messages=12, last_seq=12)
    delete(url, name)
    code, _out, err = project.cli("restore", str(folder))
    assert code == 1, err
    assert f"restore incomplete: restored stream {name}: 10 messages (last sequence 10)" in err
    assert "the backup has 12 messages (last sequence 12)" in err
    assert info(url, name)["state"]["messages"] == 10


@pytest.mark.parametrize(
    ("damage", "expect"),
    [
        pytest.param(lambda f: (f / "backup.json").unlink(), "no backup.json", id="no backup.json"),
        pytest.param(
            lambda f: (f / "backup.json").write_text("{not json"),
            "not a readable backup description",
            id="backup.json does not parse",
        ),
        pytest.param(
            lambda f: (f / "backup.json").write_text('{"config": {}, "state": {}}'),
            "config.name is not a stream name",
            id="backup.json names no stream",
        ),
        pytest.param(
            lambda f: (f / "stream.tar.s2").write_bytes(b""), "empty", id="empty data file"
        ),
        pytest.param(
            lambda f: (f / "stream.tar.s2").unlink(), "no stream.tar.s2", id="no data file"
        ),
        pytest.param(
            lambda f: (f / "stream.tar.s2").write_bytes((f / "stream.tar.s2").read_bytes()[:-100]),
            "truncated",
            id="truncated data file",
        ),
    ],
)
def test_a_broken_backup_folder_is_refused_before_any_request(
    nats_server: SingleServer, tmp_path: Path, damage: Any, expect: str
) -> None:
    url = nats_server.url
    project, name = project_with_stream(tmp_path, url, count=20)
    out = tmp_path / "b"
    assert project.cli("backup", name, "--out", str(out))[0] == 0
    delete(url, name)
    damage(out / name)
    code, _out, err = project.cli("restore", str(out / name))
    assert code == 1 and expect in err, err
    assert "Traceback" not in err
    assert info(url, name).get("error", {}).get("err_code") == 10059  # still absent


def test_backup_verify_passes_on_a_good_archive_and_fails_on_a_truncated_one(
    nats_server: SingleServer, tmp_path: Path, server_version: tuple[int, int, int]
) -> None:
    url = nats_server.url
    project, name = project_with_stream(tmp_path, url, count=200, size=10_000)  # 2MB: 2+ chunks
    out = tmp_path / "b"
    assert project.cli("backup", name, "--out", str(out))[0] == 0
    folder = out / name

    code, _out, err = project.cli("backup", "verify", str(folder))
    assert code == 0, err
    assert f"ok, restored stream {name}: 200 messages (last sequence 200)" in err

    # cut at a chunk boundary, so that only a restore can tell
    data = folder / "stream.tar.s2"
    whole = data.read_bytes()
    data.write_bytes(whole[: _first_chunk_end(whole)])
    code, _out, err = project.cli("backup", "verify", str(folder))
    assert code == 1 and "verify failed" in err, err
    assert "Traceback" not in err
    # a real restore of it fails too, and leaves no half-restored stream behind (2.15
    # keeps what it read before the error: jsops deletes it; 2.10 keeps nothing)
    delete(url, name)
    code, _out, err = project.cli("restore", str(folder))
    assert code == 1 and "restore failed" in err, err
    if server_version >= (2, 15, 0):
        assert "the partly restored stream was deleted" in err, err
    assert info(url, name).get("error", {}).get("err_code") == 10059

    # cut anywhere: the archive check refuses it at once
    data.write_bytes(whole[: len(whole) // 2 + 3])
    code, _out, err = project.cli("backup", "verify", str(folder))
    assert code == 1 and "truncated" in err, err


def _first_chunk_end(data: bytes) -> int:
    """The offset just past the first data chunk of an S2 stream."""
    offset = 10  # the stream identifier chunk
    length = int.from_bytes(data[offset + 1 : offset + 4], "little")
    return offset + 4 + length


def test_backup_verify_fails_when_backup_json_disagrees_with_the_data(
    nats_server: SingleServer, tmp_path: Path
) -> None:
    project, _name, folder = _backup_claiming(tmp_path, nats_server.url, 5, messages=6)
    code, _out, err = project.cli("backup", "verify", str(folder))
    assert code == 1
    assert "verify failed" in err and "the backup has 6 messages" in err, err


def test_a_bucket_is_backed_up_by_its_bucket_name(
    nats_server: SingleServer, tmp_path: Path
) -> None:
    url = nats_server.url
    bucket = unique_name("cfg").lower()
    project = make_project(tmp_path, url)
    project.write(
        "kv.yaml",
        "apiVersion: jsops/v1\nkind: KeyValue\n"
        f"metadata: {{name: {bucket}}}\nspec: {{history: 2}}\n",
    )
    assert project.cli("apply", "--auto-approve")[0] == 0

    async def put() -> None:
        nc = await nats.connect(url)
        kv = await nc.jetstream().key_value(bucket)
        for i in range(7):
            await kv.put(f"key{i}", b"v")
        await nc.close()

    asyncio.run(put())
    out = tmp_path / "b"
    code, _out, err = project.cli("backup", bucket, "--out", str(out))
    assert code == 0, err
    assert (out / f"KV_{bucket}" / "backup.json").is_file()
    code, _out, err = project.cli("backup", f"KeyValue/{bucket}", "--out", str(tmp_path / "c"))
    assert code == 0, err
    delete(url, f"KV_{bucket}")
    code, _out, err = project.cli("restore", str(out / f"KV_{bucket}"))
    assert code == 0 and "7 messages" in err, err

    code, _out, err = project.cli("backup", "NO_SUCH_THING", "--out", str(out))
    assert code == 1 and "no stream or bucket named NO_SUCH_THING" in err


def test_backup_into_another_environment_s_object_store_and_back(
    nats_server: SingleServer, tmp_path: Path
) -> None:
    """--to-env ENV --bucket NAME: the backup lands as objects <STREAM>/backup.json and
    <STREAM>/stream.tar.s2; restore --from-env reads it back from there."""
    url = nats_server.url
    project, name = project_with_stream(tmp_path, url, count=30)
    vault = unique_name("vault").lower()
    other = make_project(tmp_path, url)
    other.write(
        "obj.yaml", f"apiVersion: jsops/v1\nkind: ObjectStore\nmetadata: {{name: {vault}}}\n"
    )
    assert other.cli("apply", "--auto-approve")[0] == 0
    # the same server plays the other environment: a second environment in jsops.yaml
    text = (project.root / "jsops.yaml").read_text()
    (project.root / "jsops.yaml").write_text(text + f"  vault:\n    servers: [{url}]\n")

    code, _out, err = project.cli(
        "-e", "test", "backup", name, "--to-env", "vault", "--bucket", vault
    )
    assert code == 0, err
    assert f"uploaded 1 backup(s) to bucket {vault} of environment vault" in err

    async def names() -> list[str]:
        nc = await nats.connect(url)
        store = await nc.jetstream().object_store(vault)
        listed = sorted(o.name for o in await store.list())
        await nc.close()
        return listed

    assert asyncio.run(names()) == [f"{name}/backup.json", f"{name}/stream.tar.s2"]

    delete(url, name)
    code, _out, err = project.cli(
        "-e", "test", "restore", name, "--from-env", "vault", "--bucket", vault
    )
    assert code == 0, err
    assert info(url, name)["state"]["messages"] == 30

    code, _out, err = project.cli(
        "-e", "test", "backup", name, "--to-env", "vault", "--bucket", "nope"
    )
    assert code == 1 and "no object store bucket nope" in err, err


def test_library_snapshot_failure_leaves_no_archive(
    nats_server: SingleServer, tmp_path: Path
) -> None:
    from reconciler.connection import ConnectSettings

    with pytest.raises(backup.BackupError, match="no such stream"):
        backup.backup_streams(
            ConnectSettings(servers=[nats_server.url]), ["Stream/NOT_THERE"], tmp_path
        )
    assert not (tmp_path / "NOT_THERE" / "backup.json").exists()
    assert not list((tmp_path / "NOT_THERE").glob("*.partial"))


# -- apply --backup-dir ------------------------------------------------------------------


def test_apply_backup_dir_snapshots_a_replaced_stream_and_the_backup_restores(
    nats_server: SingleServer, tmp_path: Path
) -> None:
    """limits -> workqueue cannot be changed in place: the replace loses the messages,
    so --backup-dir snapshots the stream first (old config, its messages); deleting the
    new stream and restoring brings the old one back whole."""
    url = nats_server.url
    project, name = project_with_stream(tmp_path, url, count=40)
    project.write(
        "s.yaml",
        stream_doc(name, retention="workqueue")
        + "---\n"
        + consumer_doc(name, "worker", ack_policy="explicit"),
    )
    out = tmp_path / "pre-replace"

    code, plan_text, err = project.cli(
        "apply", "--auto-approve", "--allow-replace", "--backup-dir", str(out)
    )
    assert code == 0, err
    assert f"-/+ Stream {name}" in plan_text
    assert f"snapshot to {out / name} first" in plan_text
    assert f"Stream {name}: snapshot before the replace saved to {out / name}" in err
    assert "(40 message(s), last sequence 40)" in err

    meta = json.loads((out / name / "backup.json").read_text())
    assert meta["config"]["retention"] == "limits"  # the config before the replace
    assert meta["state"]["messages"] == 40
    now = info(url, name)
    assert now["config"]["retention"] == "workqueue" and now["state"]["messages"] == 0

    delete(url, name)
    code, _out, err = project.cli("restore", str(out / name))
    assert code == 0, err
    assert "40 messages (last sequence 40), 1 consumer, as in the backup" in err
    back = info(url, name)
    assert back["config"]["retention"] == "limits" and back["state"]["messages"] == 40


def test_without_messages_nothing_is_snapshotted(nats_server: SingleServer, tmp_path: Path) -> None:
    url = nats_server.url
    project, name = project_with_stream(tmp_path, url, count=0)
    project.write("s.yaml", stream_doc(name, retention="workqueue"))
    out = tmp_path / "b"
    code, plan_text, err = project.cli(
        "apply", "--auto-approve", "--allow-replace", "--prune", "--backup-dir", str(out)
    )
    assert code == 0, err
    assert "snapshot" not in plan_text + err
    assert not out.exists()


def test_a_failed_snapshot_fails_the_change_and_skips_its_dependents(
    nats_server: SingleServer, tmp_path: Path
) -> None:
    """The backup folder cannot be written (a file is in its way): the stream is not
    replaced, its consumer's replace is skipped, nothing is lost."""
    url = nats_server.url
    project, name = project_with_stream(tmp_path, url, count=12)
    project.write(
        "s.yaml",
        stream_doc(name, retention="workqueue")
        + "---\n"
        + consumer_doc(name, "worker", ack_policy="explicit"),
    )
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("in the way")

    code, _out, err = project.cli(
        "apply", "--auto-approve", "--allow-replace", "--backup-dir", str(blocker)
    )
    assert code == 1
    assert f"Stream {name}: replace failed: not replaced: the snapshot before it failed" in err
    assert f"Consumer {name}/worker: replace skipped: Stream {name} did not complete" in err
    assert "apply incomplete: 0 done, 1 failed, 1 skipped" in err
    assert "Traceback" not in err
    still = info(url, name)
    assert still["config"]["retention"] == "limits" and still["state"]["messages"] == 12
    assert js_request_sync(url, f"$JS.API.CONSUMER.INFO.{name}.worker")["num_pending"] == 12


def test_a_pruned_bucket_is_snapshotted_by_its_stream_name(
    nats_server: SingleServer, tmp_path: Path
) -> None:
    url = nats_server.url
    bucket = unique_name("kv").lower()
    project = make_project(tmp_path, url)
    project.write(
        "kv.yaml", f"apiVersion: jsops/v1\nkind: KeyValue\nmetadata: {{name: {bucket}}}\n"
    )
    assert project.cli("apply", "--auto-approve")[0] == 0
    publish(url, f"$KV.{bucket}.a", 1)
    project.remove("kv.yaml")
    project.write("other.yaml", stream_doc(unique_name("KEEP")))
    out = tmp_path / "b"
    code, plan_text, err = project.cli(
        "apply", "--auto-approve", "--prune", "--backup-dir", str(out)
    )
    assert code == 0, err
    assert f"  - KeyValue {bucket}  (not in manifests; loses 1 message" in plan_text
    assert f"snapshot to {out / ('KV_' + bucket)} first" in plan_text
    assert json.loads((out / f"KV_{bucket}" / "backup.json").read_text())["state"]["messages"] == 1


def test_backup_and_restore_across_a_jetstream_domain(hub_and_leaf: Any, tmp_path: Path) -> None:
    """Connected to the hub, with the environment's domain ``leaf``: the snapshot and
    restore requests go to $JS.leaf.API, and the chunks and their acks cross the leaf
    node connection."""
    hub, leaf = hub_and_leaf.hub, hub_and_leaf.leaf
    name = unique_name("DOM")
    project = make_project(
        tmp_path, hub.url, envs={"edge": {"servers": [hub.url], "domain": "leaf"}}
    )
    project.write("s.yaml", stream_doc(name))
    code, _out, err = project.cli("apply", "--auto-approve")
    assert code == 0, err
    publish(leaf.url, f"{name.lower()}.x", 300, size=2_000)
    out = tmp_path / "b"

    code, _out, err = project.cli("backup", name, "--out", str(out))
    assert code == 0, err
    assert "300 message(s)" in err
    assert info(leaf.url, name)["state"]["messages"] == 300  # it is the leaf's stream
    delete(leaf.url, name)
    code, _out, err = project.cli("restore", str(out / name))
    assert code == 0, err
    assert "300 messages (last sequence 300)" in err
    assert info(leaf.url, name)["state"]["messages"] == 300


def test_backup_and_restore_of_a_replicated_stream_in_a_cluster(
    nats_cluster: Any, tmp_path: Path
) -> None:
    url = nats_cluster.url
    name = unique_name("R3")
    project = make_project(tmp_path, url)
    project.write("s.yaml", stream_doc(name, num_replicas=3))
    code, _out, err = project.cli("apply", "--auto-approve")
    assert code == 0, err
    publish(url, f"{name.lower()}.x", 100)
    out = tmp_path / "b"
    code, _out, err = project.cli("backup", name, "--out", str(out))
    assert code == 0, err
    delete(url, name)
    code, _out, err = project.cli("restore", str(out / name))
    assert code == 0, err
    assert "100 messages (last sequence 100)" in err
    restored = info(url, name)
    assert restored["config"]["num_replicas"] == 3 and restored["state"]["messages"] == 100
    code, _out, err = project.cli("backup", "verify", str(out / name))  # as R1, alone
    assert code == 0, err


def test_a_memory_stream_is_backed_up_where_the_server_can(
    nats_server: SingleServer, tmp_path: Path, server_version: tuple[int, int, int]
) -> None:
    """2.15 snapshots and restores memory streams; before it the server cannot, and
    jsops says so in one line (the nats CLI refuses memory streams on any release)."""
    url = nats_server.url
    name = unique_name("MEM")
    project = make_project(tmp_path, url)
    project.write("s.yaml", stream_doc(name, storage="memory"))
    assert project.cli("apply", "--auto-approve")[0] == 0
    publish(url, f"{name.lower()}.x", 25)
    out = tmp_path / "b"
    code, _out, err = project.cli("backup", name, "--out", str(out))
    if server_version < (2, 15, 0):
        assert code == 1
        assert "this server cannot snapshot a memory stream (2.15 and later can)" in err
        assert len(err.strip().splitlines()) == 1 and not (out / name / "backup.json").exists()
        return
    assert code == 0, err
    delete(url, name)
    code, _out, err = project.cli("restore", str(out / name))
    assert code == 0 and "25 messages" in err, err
    assert info(url, name)["config"]["storage"] == "memory"


def test_a_bucket_too_small_for_the_backup_fails_in_one_line(
    nats_server: SingleServer, tmp_path: Path
) -> None:
    url = nats_server.url
    project, name = project_with_stream(tmp_path, url, count=100, size=2_000)
    tiny = unique_name("tiny").lower()
    project.write(
        "obj.yaml",
        f"apiVersion: jsops/v1\nkind: ObjectStore\nmetadata: {{name: {tiny}}}\n"
        "spec: {max_bytes: 4KiB}\n",
    )
    assert project.cli("apply", "--auto-approve")[0] == 0
    code, _out, err = project.cli("backup", name, "--to-env", "test", "--bucket", tiny)
    assert code == 1
    assert f"upload of the backup of {name} to bucket {tiny} failed" in err, err
    assert len(err.strip().splitlines()) == 2 and "Traceback" not in err  # backed up, failed
