"""The apply lock: one apply per environment at a time, with real `jsops apply`
processes (one stopped with SIGSTOP mid-apply, one killed with SIGKILL), `jsops unlock`,
a JetStream domain and operator mode."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import jsm_schema
from harness.project import TestProject, make_project
from harness.servers import (
    JsWriteCounter,
    SingleServer,
    api_op,
    js_request_sync,
    start_single,
    unique_name,
)
from nats.js.errors import KeyNotFoundError

from reconciler import lock
from reconciler.buckets import live_address
from reconciler.connection import ConnectSettings, connect
from reconciler.errors import ConnectionFailed
from reconciler.live import LOCK_STREAM, JetStreamClient
from reconciler.models import Address, Kind

STREAMS = 300  # enough that an apply is still writing when it is stopped


# A progress summary line after every change (reconciler.progress): what the tests wait
# for to catch an apply in the middle of its writes.
SUMMARY_EVERY_CHANGE = {"JSOPS_PROGRESS_INTERVAL": "0"}
MID_APPLY = "apply: "


class Apply:
    """A `jsops apply` process, its stderr read line by line as it comes."""

    def __init__(self, project: TestProject, *args: str, ttl: float = 30.0) -> None:
        env = {
            **os.environ,
            **SUMMARY_EVERY_CHANGE,
            lock.TTL_ENV: str(ttl),
            "PYTHONUNBUFFERED": "1",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "apply", "--auto-approve", *args],
            cwd=project.root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not any(text in line for line in self.lines):
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no {text!r} in the stderr of apply:\n{self.stderr}")
                self._changed.wait(min(left, 0.5))

    def finish(self, timeout: float = 120.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(10)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
        self.finish()


@pytest.fixture
def applies() -> Iterator[list[Apply]]:
    started: list[Apply] = []
    yield started
    for one in started:  # never leave a stopped process behind
        one.kill()


def _streams(project: TestProject, tag: str, max_age: str, count: int = STREAMS) -> None:
    docs = [
        f"apiVersion: jsops/v1\nkind: Stream\nmetadata: {{name: {tag}_{i}}}\n"
        f'spec: {{subjects: ["{tag.lower()}.{i}.>"], storage: memory, max_age: {max_age}}}\n'
        for i in range(count)
    ]
    project.write("streams.yaml", "---\n".join(docs))


def _project(tmp_path: Path, url: str) -> TestProject:
    # a request timeout longer than any stop: the requests a stopped apply had in flight
    # are answered while it is stopped and read when it resumes (not timed out)
    return make_project(tmp_path, url, envs={"test": {"servers": [url], "timeout": 120}})


def _twin(project: TestProject, tmp_path: Path) -> TestProject:
    """The same project and environment from another checkout (another merge)."""
    other = tmp_path / "checkout-2"
    (other / "manifests").mkdir(parents=True)
    (other / "jsops.yaml").write_text((project.root / "jsops.yaml").read_text())
    return TestProject(other, project.name, project.url)


def _max_ages(url: str, tag: str) -> dict[int, int]:
    """max_age of each stream of the test, by age (in hours)."""
    ages: dict[int, int] = {}
    offset = 0
    while True:
        reply = js_request_sync(url, "$JS.API.STREAM.LIST", {"offset": offset})
        page = reply.get("streams") or []
        for info in page:
            if info["config"]["name"].startswith(tag + "_"):
                hours = info["config"]["max_age"] // (3600 * 10**9)
                ages[hours] = ages.get(hours, 0) + 1
        offset += len(page)
        if not page or offset >= reply.get("total", 0):
            return ages


def _settled_count(url: str, tag: str) -> int:
    """How many streams exist once the requests a stopped apply had sent are answered."""
    count = sum(_max_ages(url, tag).values())
    while True:
        time.sleep(0.3)
        again = sum(_max_ages(url, tag).values())
        if again == count:
            return count
        count = again


def _holder(url: str, project: TestProject, env: str = "test") -> lock.Holder | None:
    async def read() -> lock.Holder | None:
        settings = ConnectSettings(servers=[url])
        nc = await connect(settings)
        try:
            return await lock.read_holder(
                JetStreamClient(nc, settings), lock.lock_key(project.name, env)
            )
        finally:
            await nc.close()

    return asyncio.run(read())


def _stop_mid_apply(first: Apply) -> None:
    first.wait_for(MID_APPLY)
    os.kill(first.proc.pid, signal.SIGSTOP)


def test_second_apply_fails_naming_the_holder_then_waits_for_it(
    nats_server: SingleServer, tmp_path: Path, applies: list[Apply]
) -> None:
    """Two merges applied at once: the second fails at once naming the first (which is
    stopped mid-apply); with --lock-timeout it waits, then applies on top of the first,
    so every stream ends at the second's max_age, not a mix."""
    url = nats_server.url
    tag = unique_name("LK", 6)
    project = _project(tmp_path, url)
    second = _twin(project, tmp_path)
    _streams(project, tag, "1h")
    _streams(second, tag, "2h")

    first = Apply(project)
    applies.append(first)
    _stop_mid_apply(first)
    created = _settled_count(url, tag)
    assert 0 < created < STREAMS, created  # stopped mid-apply

    holder = _holder(url, project)
    assert holder is not None and holder.pid == first.proc.pid

    # fails fast, naming user, host, pid and start time; nothing written
    with JsWriteCounter(url) as counter:
        code, _out, err = second.cli("apply", "--auto-approve")
    assert code == 1
    assert f'environment "test" is locked by another apply: {holder.describe()}' in err
    assert f"pid {first.proc.pid}" in err and holder.host in err and holder.user in err
    assert "jsops unlock" in err and "Traceback" not in err
    assert counter.writes == []
    assert sum(_max_ages(url, tag).values()) == created

    # plan takes no lock
    code, _out, err = second.cli("plan", "--detailed-exitcode")
    assert code == 2, err

    # with --lock-timeout it waits for the first, which then finishes
    waiting = Apply(second, "--lock-timeout", "2m")
    applies.append(waiting)
    waiting.wait_for(f"waiting up to 2m for the lock held by {holder.describe()}")
    assert waiting.proc.poll() is None
    os.kill(first.proc.pid, signal.SIGCONT)
    assert first.finish() == 0, first.stderr
    assert waiting.finish() == 0, waiting.stderr
    assert _max_ages(url, tag) == {2: STREAMS}
    assert _holder(url, project) is None
    code, _out, err = project.cli("plan", "--detailed-exitcode")  # the first's manifests
    assert code == 2 and f"Plan: 0 to create, {STREAMS} to update" in err


def test_a_killed_holder_s_lease_expires(
    nats_server: SingleServer, tmp_path: Path, applies: list[Apply]
) -> None:
    url = nats_server.url
    tag = unique_name("LK", 6)
    project = _project(tmp_path, url)
    _streams(project, tag, "1h")
    first = Apply(project, ttl=6)
    applies.append(first)
    first.wait_for(MID_APPLY)
    first.proc.kill()
    first.finish()
    holder = _holder(url, project)
    assert holder is not None and holder.pid == first.proc.pid  # not released: it died

    started = time.monotonic()
    code, _out, err = project.cli("apply", "--auto-approve", "--lock-timeout", "1m")
    assert code == 0, err
    if "waiting" in err:  # (unless this process started after the lease had expired)
        assert f"held by {holder.describe()}" in err
        assert time.monotonic() - started < 30
    assert _max_ages(url, tag) == {1: STREAMS}
    assert _holder(url, project) is None


def test_unlock_forces_the_lock_and_the_old_holder_stops(
    nats_server: SingleServer, tmp_path: Path, applies: list[Apply]
) -> None:
    url = nats_server.url
    tag = unique_name("LK", 6)
    project = _project(tmp_path, url)
    _streams(project, tag, "1h")
    code, _out, err = project.cli("unlock", "--yes")
    assert code == 0 and 'environment "test" is not locked' in err

    first = Apply(project, ttl=3)
    applies.append(first)
    _stop_mid_apply(first)
    stopped = time.monotonic()
    holder = _holder(url, project)
    assert holder is not None

    code, _out, err = project.cli("unlock")  # no terminal, no --yes: refused
    assert code == 1
    assert holder.describe() in err and "pass --yes" in err
    assert _holder(url, project) is not None

    code, _out, err = project.cli("unlock", "--yes")
    assert code == 0, err
    assert f'environment "test" is locked by {holder.describe()}' in err
    assert 'lock of environment "test" released' in err
    assert _holder(url, project) is None

    # the next apply proceeds at once; the stopped one, resumed, finds its lease gone
    code, _out, err = project.cli("apply", "--auto-approve")
    assert code == 0, err
    time.sleep(max(0.0, stopped + 3.5 - time.monotonic()))  # past the stopped one's lease
    os.kill(first.proc.pid, signal.SIGCONT)
    assert first.finish() == 1
    lost = [line for line in first.lines if "the apply lock was lost" in line]
    assert len(lost) == 1, first.stderr  # one line, saying what was made and what was not
    assert " change(s) made and " in lost[0] and f" of {STREAMS} change(s)" in lost[0]
    assert "Traceback" not in first.stderr


def test_an_unchanged_apply_takes_no_lock_and_the_bucket_stays_out_of_sight(
    nats_server: SingleServer, tmp_path: Path
) -> None:
    url = nats_server.url
    project = _project(tmp_path, url)
    name = unique_name("LKS")
    project.write(
        "s.yaml",
        f"""
        apiVersion: jsops/v1
        kind: Stream
        metadata: {{name: {name}}}
        spec: {{subjects: ["{name.lower()}.>"]}}
        """,
    )
    code, _out, err = project.cli("apply", "--auto-approve")
    assert code == 0, err
    info = js_request_sync(url, f"$JS.API.STREAM.INFO.{LOCK_STREAM}")
    assert info["config"]["max_msgs_per_subject"] == 1  # a KV bucket (history 1)
    # released: the key's last message is a KV delete marker
    last = js_request_sync(
        url,
        f"$JS.API.STREAM.MSG.GET.{LOCK_STREAM}",
        {"last_by_subj": f"$KV.jsops_lock.{lock.lock_key(project.name, 'test')}"},
    )
    assert last["message"]["hdrs"]

    counter = JsWriteCounter(url)
    counter.patterns.append("$KV.>")
    with counter:
        code, _out, err = project.cli("apply", "--auto-approve")
    assert code == 0, err
    assert counter.writes == []
    assert [s for s in counter.requests if s.startswith("$KV.")] == []

    # never planned, pruned or exported
    code, out, err = project.cli("plan", "--prune", "--format", "json")
    assert code == 0, err
    assert LOCK_STREAM not in out and json.loads(out)["changes"] == []
    code, _out, err = project.cli(
        "export", "--out", str(tmp_path / "exported"), "--include-declared"
    )
    assert code == 0, err
    assert not list((tmp_path / "exported").glob(f"{LOCK_STREAM}*"))


def test_two_acquires_at_once_one_wins(nats_server: SingleServer, tmp_path: Path) -> None:
    """Compare-and-set on the key's last sequence: of racing applies exactly one holds it."""
    key = lock.lock_key(unique_name("race").lower(), "test")

    async def race() -> list[Any]:
        settings = ConnectSettings(servers=[nats_server.url])
        conns = [await connect(settings) for _ in range(6)]
        try:
            clients = [JetStreamClient(nc, settings) for nc in conns]
            holders = [lock.Holder("u", "h", i, "now", 30.0) for i in range(6)]
            return await asyncio.gather(
                *(lock.acquire(c, key, h) for c, h in zip(clients, holders, strict=True)),
                return_exceptions=True,
            )
        finally:
            for nc in conns:
                await nc.close()

    outcomes = asyncio.run(race())
    won = [o for o in outcomes if isinstance(o, lock.Lease)]
    lost = [o for o in outcomes if isinstance(o, lock.LockHeld)]
    assert len(won) == 1 and len(lost) == 5, outcomes
    assert {o.holder.pid for o in lost} == {won[0].holder.pid}


def test_a_lock_write_waits_for_a_stream_that_is_not_heard_yet(
    nats_server: SingleServer,
) -> None:
    """In a cluster a new lock bucket's subjects are heard from every server only after a
    moment: a publish meeting "no responders" is sent again for a while, then the subject
    is named in one clear error (seen as a flaky "JetStream is not available" on a
    3-node cluster right after the bucket was created)."""
    name = unique_name("LATE")

    async def scenario() -> tuple[dict[str, Any], str]:
        settings = ConnectSettings(servers=[nats_server.url])
        nc = await connect(settings)
        try:
            client = JetStreamClient(nc, settings)
            write = asyncio.ensure_future(client.publish(f"late.{name}", b"x"))
            await asyncio.sleep(0.5)  # the publish has met no stream for a while
            assert not write.done()
            await client.request(
                f"STREAM.CREATE.{name}",
                {"name": name, "subjects": [f"late.{name}"], "storage": "memory"},
            )
            ack = await write
            with pytest.raises(ConnectionFailed) as never:
                await client.publish(f"nowhere.{name}", b"x")
            return ack, str(never.value)
        finally:
            await nc.close()

    ack, message = asyncio.run(scenario())
    assert ack["stream"] == name and ack["seq"] == 1
    assert f"no stream answers on nowhere.{name}" in message


def _create_body(counter: JsWriteCounter, stream: str) -> dict[str, Any]:
    bodies = [b for s, b in counter.write_bodies if api_op(s) == f"STREAM.CREATE.{stream}"]
    assert len(bodies) == 1, counter.writes
    return bodies[0]


def test_the_lock_bucket_is_created_as_a_key_value_manifest_s_bucket(tmp_path: Path) -> None:
    """On a server without it, the first apply creates the lock bucket with the complete
    config a declared KeyValue bucket gets (nats.go's KV layout, every field the
    server's API level knows, pedantic), valid for jsm.go's schema; nats.py's KV API
    then reads the holder from it like any bucket."""
    server = start_single(tmp_path / "fresh")
    try:
        url = server.url
        project = _project(tmp_path, url)
        twin = unique_name("lkb")
        project.write(
            "kv.yaml",
            f"""
            apiVersion: jsops/v1
            kind: KeyValue
            metadata: {{name: {twin}}}
            spec: {{description: a bucket like the lock's, max_bytes: 1MiB}}
            """,
        )
        with JsWriteCounter(url) as counter:
            code, _out, err = project.cli("apply", "--auto-approve")
        assert code == 0, err
        body = _create_body(counter, LOCK_STREAM)
        assert (
            jsm_schema.problems("Stream", {k: v for k, v in body.items() if k != "pedantic"}) == []
        )
        assert jsm_schema.write_problems(counter) == []
        declared = _create_body(counter, f"KV_{twin}")
        # the same fields and KV semantics; only the bucket's own choices differ
        # (and the lock's 1s duplicate window: valid under a server's cap, test_server_limits)
        own = {"name", "subjects", "description", "metadata", "max_msg_size", "duplicate_window"}
        assert set(body) == set(declared)
        assert {k: v for k, v in body.items() if k not in own} == {
            k: v for k, v in declared.items() if k not in own
        }
        assert body["subjects"] == [f"$KV.{lock.LOCK_BUCKET}.>"]
        assert body["max_msgs_per_subject"] == 1 and body["max_age"] == 0  # history 1, no ttl
        assert body["metadata"] == {"jsops.lock": "true"}  # no jsops.owner: no project's

        info = js_request_sync(url, f"$JS.API.STREAM.INFO.{LOCK_STREAM}")
        assert live_address(LOCK_STREAM, info["config"]) == Address(
            Kind.KEY_VALUE, lock.LOCK_BUCKET
        )
        key = lock.lock_key(project.name, "test")

        async def through_nats_kv() -> None:
            settings = ConnectSettings(servers=[url])
            nc = await connect(settings)
            try:
                kv = await nc.jetstream().key_value(lock.LOCK_BUCKET)
                assert (await kv.status()).history == 1
                with pytest.raises(KeyNotFoundError):  # released: a delete marker
                    await kv.get(key)
                holder = lock.this_holder(project.name, "test", 30.0)
                lease = await lock.acquire(JetStreamClient(nc, settings), key, holder)
                entry = await kv.get(key)
                assert entry.value is not None
                assert lock.Holder.from_bytes(entry.value) == holder
                await lock.release(lease)
            finally:
                await nc.close()

        asyncio.run(through_nats_kv())
    finally:
        server.stop()


RESERVED_DOCS = """\
apiVersion: jsops/v1
kind: Stream
metadata: {name: KV_jsops_lock}
spec: {subjects: ["lk.>"]}
---
apiVersion: jsops/v1
kind: KeyValue
metadata: {name: jsops_lock, account: ANY}
spec: {history: 5}
---
apiVersion: jsops/v1
kind: Consumer
metadata: {name: reader, stream: KV_jsops_lock}
spec: {}
---
apiVersion: jsops/v1
kind: Account
metadata: {name: JSOPS}
spec: {}
---
apiVersion: jsops/v1
kind: Stream
metadata: {name: MINE, account: JSOPS}
spec: {subjects: ["mine.>"]}
"""


def test_a_tenant_cannot_live_in_the_lock_s_account(tmp_path: Path) -> None:
    """jsops.yaml's tenants fill in manifests' accounts after validation, so the lock's
    account is refused there too: located in jsops.yaml, exit 1, before any connection
    (the environment points at a port nothing listens on: a connection attempt would be
    the error instead)."""
    project = make_project(
        tmp_path, "nats://127.0.0.1:1", extra="tenants:\n  acme:\n    account: JSOPS\n"
    )
    project.write("s.yaml", "apiVersion: jsops/v1\nkind: Stream\nmetadata: {name: S}\n")
    for command in ("validate", "plan"):
        code, out, err = project.cli(command)
        assert code == 1 and out == "", err
        assert "jsops.yaml:" in err and "tenants.acme: account JSOPS is jsops's own" in err
        assert "connect" not in err and "Traceback" not in err


def test_manifests_cannot_declare_the_lock_s_names(
    nats_server: SingleServer, tmp_path: Path
) -> None:
    """The lock's bucket (as a Stream or a KeyValue, in any account), a consumer of it and
    jsops' own lock account: each a located error, exit 1, nothing sent to the server."""
    project = _project(tmp_path, nats_server.url)
    project.write("lock.yaml", RESERVED_DOCS)
    lock_is = "is jsops's own apply lock"
    expected = [
        f"manifests/lock.yaml:3:12: Stream KV_jsops_lock {lock_is} (the KV bucket jsops_lock)",
        f"manifests/lock.yaml:8:12: KeyValue jsops_lock {lock_is} (stream KV_jsops_lock)",
        f'manifests/lock.yaml:13:34: stream "KV_jsops_lock" {lock_is}',
        "manifests/lock.yaml:18:12: Account JSOPS is jsops's own (it holds apply locks)",
        "manifests/lock.yaml:23:33: account JSOPS is jsops's own (it holds apply locks)",
    ]
    code, _out, err = project.cli("validate")
    assert code == 1
    lines = err.splitlines()
    assert len(lines) == len(expected), err
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(start), (line, start)
    for args in (["plan"], ["plan", "--prune"], ["apply", "--auto-approve", "--prune"]):
        with JsWriteCounter(nats_server.url) as counter:
            code, _out, err = project.cli(*args)
        assert code == 1 and "Traceback" not in err
        assert expected[0] in err
        assert counter.requests == []


def test_prune_and_export_leave_the_lock_bucket_alone(
    nats_server: SingleServer, tmp_path: Path
) -> None:
    """A prune of everything the project owns (the lock taken for it) deletes the
    project's streams, never the lock bucket; export writes no manifest of the bucket
    (one that validation would refuse)."""
    url = nats_server.url
    project = _project(tmp_path, url)
    name = unique_name("LKP")
    project.write(
        "s.yaml",
        f"""
        apiVersion: jsops/v1
        kind: Stream
        metadata: {{name: {name}}}
        spec: {{subjects: ["{name.lower()}.>"]}}
        """,
    )
    code, _out, err = project.cli("apply", "--auto-approve")
    assert code == 0, err
    assert js_request_sync(url, f"$JS.API.STREAM.INFO.{LOCK_STREAM}")["config"]

    code, _out, err = project.cli(
        "export", "--out", str(tmp_path / "exported"), "--include-declared"
    )
    assert code == 0, err
    exported = {p.name: p.read_text() for p in (tmp_path / "exported").iterdir()}
    assert f"{name}.yaml" in exported
    assert [n for n, text in exported.items() if lock.LOCK_BUCKET in text] == []

    project.remove("s.yaml")
    code, out, err = project.cli("plan", "--prune", "--allow-empty-prune", "--format", "json")
    assert code == 0, err
    planned = [(c["action"], c["kind"], c["name"]) for c in json.loads(out)["changes"]]
    assert planned == [("delete", "Stream", name)]
    with JsWriteCounter(url) as counter:
        code, _out, err = project.cli("apply", "--auto-approve", "--prune", "--allow-empty-prune")
    assert code == 0, err
    assert [w for w in counter.writes if ".STREAM.DELETE." in w] == [
        f"$JS.API.STREAM.DELETE.{name}"
    ]
    info = js_request_sync(url, f"$JS.API.STREAM.INFO.{LOCK_STREAM}")
    assert info["state"]["last_seq"] > 0  # the lock was taken for the prune, and kept
    last = js_request_sync(
        url,
        f"$JS.API.STREAM.MSG.GET.{LOCK_STREAM}",
        {"last_by_subj": f"$KV.jsops_lock.{lock.lock_key(project.name, 'test')}"},
    )
    assert "message" in last, last
