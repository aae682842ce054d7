"""Capacity: a plan that does not fit the account's JetStream limits fails at plan time,
naming the shortfall, with nothing written; an apply that meets a run of identical
failures (limits jsops cannot see) stops early and counts what it did not attempt.

Private servers with config-file accounts (``jetstream`` limits per account).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.manifests import stream_doc
from harness.project import make_project, run_cli
from harness.servers import (
    JsWriteCounter,
    SingleServer,
    js_request_sync,
    start_single,
    unique_name,
)

MIB = 1024 * 1024


def consumer_doc(stream: str, name: str) -> str:
    return (
        "apiVersion: jsops/v1\nkind: Consumer\n"
        f"metadata: {{name: {name}, stream: {stream}}}\nspec: {{ack_policy: explicit}}\n"
    )


def _url(server: SingleServer, user: str) -> str:
    return server.url.replace("nats://", f"nats://{user}:{user}@")


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SingleServer]:
    """Account CAP: 10 MiB of file storage, 2 consumers per stream, 30 streams.
    Account SRV: unlimited, on a server whose own file store is 8 MiB."""
    config = (
        "jetstream { max_file: 40MB }\n"
        "accounts {\n"
        "  CAP: { jetstream: { max_file: 10MiB, max_streams: 30, max_consumers: 2 },"
        " users: [ {user: cap, password: cap} ] }\n"
        "  SRV: { jetstream: enabled, users: [ {user: srv, password: srv} ] }\n"
        "}\n"
    )
    handle = start_single(tmp_path_factory.mktemp("capacity"), config_extra=config)
    yield handle
    handle.stop()


def streams(url: str) -> list[str]:
    return js_request_sync(url, "$JS.API.STREAM.NAMES", {}).get("streams") or []


def test_streams_that_do_not_fit_the_storage_limit_fail_the_plan(
    tmp_path: Path, limited: SingleServer
) -> None:
    url = _url(limited, "cap")
    project = make_project(tmp_path, url)
    project.write(
        "s.yaml", "---\n".join(stream_doc(f"FIT{i:02d}", max_bytes=MIB) for i in range(20))
    )
    # apply first makes its lock bucket (1MiB of file storage) in this account: counted
    lock = "jsops's apply lock, the bucket KV_jsops_lock, reserves 1MiB of file storage"
    code, out, err = project.cli("plan")
    assert code == 1 and out == ""
    assert "file streams would reserve 21MiB (max_bytes x num_replicas)" in err
    assert "over the account's max_storage of 10MiB: short by 11MiB" in err
    assert lock in err
    assert "manifests/s.yaml:" in err and "Traceback" not in err
    with JsWriteCounter(url) as counter:
        code, _, err = project.cli("apply", "--auto-approve")
    assert code == 1 and "short by 11MiB" in err
    assert [w for w in counter.writes if "FIT" in w] == []
    assert [s for s in streams(url) if s.startswith("FIT")] == []

    # nine fit exactly next to the lock; the tenth does not, whether the lock bucket
    # exists yet or not (it does after this apply)
    project.write(
        "s.yaml", "---\n".join(stream_doc(f"FIT{i:02d}", max_bytes=MIB) for i in range(9))
    )
    code, _, err = project.cli("apply", "--auto-approve")
    assert code == 0, err
    project.write(
        "s.yaml", "---\n".join(stream_doc(f"FIT{i:02d}", max_bytes=MIB) for i in range(10))
    )
    code, _, err = project.cli("plan")
    assert code == 1 and "short by 1MiB (10MiB reserved now" in err and lock in err


def test_counts_over_the_account_limits_fail_the_plan(
    tmp_path: Path, limited: SingleServer
) -> None:
    url = _url(limited, "cap")
    for name in streams(url):  # the account is this module's: start from empty
        js_request_sync(url, f"$JS.API.STREAM.DELETE.{name}")
    project = make_project(tmp_path, url)
    docs = [stream_doc("CONS", max_bytes=1024)]
    docs += [consumer_doc("CONS", f"c{i}") for i in range(3)]
    project.write("s.yaml", "---\n".join(docs))
    code, _, err = project.cli("plan")
    assert code == 1
    assert "stream CONS would have 3 consumers after this plan" in err
    assert "over the account's max_consumers of 2 (per stream; 0 now)" in err

    # 30 streams and jsops's lock bucket, which apply makes first: one over
    project.write(
        "s.yaml", "---\n".join(stream_doc(f"MANY{i:02d}", max_bytes=1024) for i in range(30))
    )
    code, _, err = project.cli("plan")
    assert code == 1 and "would have 31 streams" in err and "over its max_streams of 30" in err
    assert "short by 1)" in err and "KV_jsops_lock" in err


def test_consumers_already_on_the_server_count_against_the_per_stream_limit(
    tmp_path: Path, limited: SingleServer
) -> None:
    """Declared consumers that exist count too (a plan compares them as it reads them
    and keeps no info of theirs, but still counts them)."""
    url = _url(limited, "cap")
    for name in streams(url):  # the account is this module's: start from empty
        js_request_sync(url, f"$JS.API.STREAM.DELETE.{name}")
    project = make_project(tmp_path, url)
    docs = [stream_doc("HELD", max_bytes=1024)]
    project.write("s.yaml", "---\n".join([*docs, consumer_doc("HELD", "c0")]))
    code, _, err = project.cli("apply", "--auto-approve")
    assert code == 0, err
    project.write("s.yaml", "---\n".join([*docs, *(consumer_doc("HELD", c) for c in ["c0", "c1"])]))
    assert project.cli("plan")[0] == 0
    project.write(
        "s.yaml", "---\n".join([*docs, *(consumer_doc("HELD", f"c{i}") for i in range(3))])
    )
    code, _, err = project.cli("plan")
    assert code == 1
    assert "stream HELD would have 3 consumers after this plan" in err
    assert "(per stream; 1 now)" in err


def test_a_run_of_identical_failures_stops_the_apply(tmp_path: Path, limited: SingleServer) -> None:
    """The server's own store (not visible to the account) fills up: the apply stops
    after a run of the same error and says how many changes it did not attempt."""
    url = _url(limited, "srv")
    project = make_project(tmp_path, url)
    total = 300
    project.write(
        "s.yaml", "---\n".join(stream_doc(f"SRV{i:03d}", max_bytes=MIB) for i in range(total))
    )
    code, _, err = project.cli("apply", "--auto-approve")
    assert code == 1
    lines = err.strip().splitlines()
    not_attempted = next(line for line in lines if "not attempted: the apply stopped" in line)
    count = int(not_attempted.split()[0])
    assert count > 0
    assert "failures in a row with the same error" in not_attempted
    failed = [line for line in lines if " failed: " in line and not line.startswith("...")]
    assert len(failed) <= 3  # identical errors are counted, not repeated
    assert sum("failed: insufficient storage" in line for line in lines) == 4, err  # 3 + count
    made = len(streams(url))
    assert made < 60  # 40MB of server store: ~38 streams of 1MiB
    assert f"{count} not attempted" in lines[-1]


def test_server_wide_storage_is_checked_through_the_system_account(tmp_path: Path) -> None:
    """Operator mode: the account is unlimited, the server's own store only 1GB; the
    servers' limits come from $SYS.REQ.SERVER.PING.JSZ (the auth store's system user)."""
    from harness.operator import start_operator_server

    code, _, err = run_cli(["auth", "init", "--dir", str(tmp_path / "auth")])
    assert code == 0, err
    op = start_operator_server(tmp_path, auth_dir=tmp_path / "auth")
    try:
        name = unique_name("BIG")
        project = make_project(
            tmp_path,
            op.url,
            envs={"ops": {"servers": [op.url], "auth_dir": str(op.store.root)}},
        )
        account = (
            "apiVersion: jsops/v1\nkind: Account\n"
            f"metadata: {{name: {name}}}\n"
            "spec: {jetstream: {max_storage: -1, max_memory: -1}}\n"
        )
        project.write("a.yaml", account)
        code, _, err = project.cli("apply", "--auto-approve")
        assert code == 0, err
        docs = [
            stream_doc(f"S{i:02d}", max_bytes=100 * MIB).replace(
                "metadata: {name: ", f"metadata: {{account: {name}, name: "
            )
            for i in range(12)
        ]
        project.write("s.yaml", "---\n".join(docs))
        code, out, err = project.cli("plan")
        assert code == 1 and out == ""
        assert "the plan reserves 1200MiB more file storage" in err, err
        assert "than the servers have free" in err and "short by" in err
        code, _, err = project.cli("apply", "--auto-approve")
        assert code == 1 and "short by" in err
        # four fit
        project.write("s.yaml", "---\n".join(docs[:4]))
        code, _, err = project.cli("apply", "--auto-approve")
        assert code == 0, err
    finally:
        op.stop()
