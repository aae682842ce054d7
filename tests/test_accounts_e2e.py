"""Accounts through jsops on a real operator-mode server: auth init, Account manifests
with JetStream limits, streams inside accounts, tenant creds, and no secret leaks."""

from __future__ import annotations

import asyncio
import os
import re
import stat
from pathlib import Path

import pytest
from harness.operator import (
    OperatorServer,
    connect,
    js_info,
    start_operator_server,
    wait_for_interest,
)
from harness.project import make_project, run_cli
from harness.servers import unique_name

from reconciler.errors import ManifestError
from reconciler.plan import Action

# An nkey seed: S + O/A/U + 56 base32 characters, standing alone (not inside a JWT).
SEED = re.compile(r"(?<![A-Za-z0-9_-])S[OAU][A-Z2-7]{56}(?![A-Za-z0-9_-])")


@pytest.fixture(scope="module")
def op(tmp_path_factory: pytest.TempPathFactory) -> OperatorServer:
    base = tmp_path_factory.mktemp("op-e2e")
    # `jsops auth init` makes the store; the server includes its server-auth.conf
    code, out, err = run_cli(["auth", "init", "--dir", str(base / "auth")])
    assert code == 0, err
    assert out.strip().endswith("server-auth.conf")
    handle = start_operator_server(base, auth_dir=base / "auth")
    yield handle
    handle.stop()


def _project(tmp_path: Path, op: OperatorServer):
    return make_project(
        tmp_path, op.url, envs={"ops": {"servers": [op.url], "auth_dir": str(op.store.root)}}
    )


ACCOUNT = """
    apiVersion: jsops/v1
    kind: Account
    metadata: {{name: {name}}}
    spec:
      jetstream: {{max_memory: 64MiB, max_storage: {storage}, max_streams: {streams}}}
    ---
    apiVersion: jsops/v1
    kind: Stream
    metadata: {{name: ORDERS, account: {name}}}
    spec: {{subjects: ["{prefix}.orders.>"], max_bytes: 1MiB, max_age: 1d}}
"""


def test_account_with_limits_and_a_stream(op: OperatorServer, tmp_path: Path) -> None:
    name = unique_name("ACME")
    project = _project(tmp_path, op)
    project.write(
        "acme.yaml", ACCOUNT.format(name=name, storage="256MiB", streams=5, prefix="tenant.acme")
    )
    plan = project.plan()
    assert [(str(c.address), c.action) for c in plan.changes] == [
        (f"Account {name}", Action.CREATE),
        (f"Stream {name}:ORDERS", Action.CREATE),
    ]
    _plan, result = project.apply()
    assert result is not None and result.ok

    creds = tmp_path / "user.creds"
    code, _out, err = project.cli("auth", "creds", name, "alice", "--out", str(creds))
    assert code == 0, err
    assert stat.S_IMODE(os.stat(creds).st_mode) == 0o600
    info = js_info(op.url, creds.read_text())
    assert info["limits"]["max_storage"] == 256 * 1024**2
    assert info["limits"]["max_streams"] == 5 and info["streams"] == 1
    assert all(c.action is Action.NOOP for c in project.plan().changes)

    # another account does not see the stream
    other = unique_name("OTHER")
    project.write(
        "other.yaml",
        f"""
        apiVersion: jsops/v1
        kind: Account
        metadata: {{name: {other}}}
        spec: {{jetstream: {{}}}}
    """,
    )
    project.apply()
    other_creds = tmp_path / "other.creds"
    assert project.cli("auth", "creds", other, "bob", "--out", str(other_creds))[0] == 0
    assert js_info(op.url, other_creds.read_text())["streams"] == 0

    # changing a limit is an update of the Account alone
    project.write(
        "acme.yaml", ACCOUNT.format(name=name, storage="512MiB", streams=7, prefix="tenant.acme")
    )
    plan = project.plan()
    pending = [(str(c.address), c.action) for c in plan.pending()]
    assert pending == [(f"Account {name}", Action.UPDATE)]
    diff = {d.path: (d.before, d.after) for d in plan.pending()[0].diff}
    assert diff["jetstream.max_storage"] == (256 * 1024**2, 512 * 1024**2)
    assert diff["jetstream.max_streams"] == (5, 7)
    _plan, result = project.apply()
    assert result is not None and result.ok
    info = js_info(op.url, creds.read_text())
    assert info["limits"]["max_storage"] == 512 * 1024**2 and info["limits"]["max_streams"] == 7
    assert all(c.action is Action.NOOP for c in project.plan().changes)


def test_tiered_limits_round_trip(op: OperatorServer, tmp_path: Path) -> None:
    name = unique_name("TIER")
    project = _project(tmp_path, op)
    text = """
        apiVersion: jsops/v1
        kind: Account
        metadata: {{name: {name}}}
        spec:
          tiers:
            R1: {{max_memory: 32MiB, max_storage: {storage}, max_streams: 3}}
    """
    project.write("a.yaml", text.format(name=name, storage="128MiB"))
    _plan, result = project.apply()
    assert result is not None and result.ok
    assert all(c.action is Action.NOOP for c in project.plan().changes)
    project.write("a.yaml", text.format(name=name, storage="256MiB"))
    plan = project.plan()
    assert [d.path for d in plan.pending()[0].diff] == ["tiers.R1.max_storage"]
    _plan, result = project.apply()
    assert result is not None and result.ok
    creds = op.store.root / "t.creds"
    assert project.cli("auth", "creds", name, "t", "--out", str(creds))[0] == 0
    info = js_info(op.url, creds.read_text())
    assert info["tiers"]["R1"]["limits"]["max_storage"] == 256 * 1024**2
    assert all(c.action is Action.NOOP for c in project.plan().changes)


def test_exports_imports_and_tenant_creds(op: OperatorServer, tmp_path: Path) -> None:
    a, b = unique_name("TA"), unique_name("TB")
    project = make_project(
        tmp_path,
        op.url,
        envs={"ops": {"servers": [op.url], "auth_dir": str(op.store.root)}},
        extra=f"""
        tenants:
          acme: {{account: {a}}}
          globex: {{account: {b}}}
        """,
    )
    project.write(
        "accounts.yaml",
        f"""
        apiVersion: jsops/v1
        kind: Account
        metadata: {{name: {a}}}
        spec:
          jetstream: {{}}
          exports:
            - {{subject: "tenant.acme.public.>", type: stream}}
        ---
        apiVersion: jsops/v1
        kind: Account
        metadata: {{name: {b}}}
        spec:
          jetstream: {{}}
          imports:
            - {{subject: "tenant.acme.public.>", account: {a}, type: stream}}
    """,
    )
    code, _out, err = project.cli("apply", "--auto-approve")
    assert code == 0, err
    assert all(c.action is Action.NOOP for c in project.plan().changes)
    acme, globex = tmp_path / "acme.creds", tmp_path / "globex.creds"
    assert project.cli("auth", "creds", a, "pub", "--out", str(acme))[0] == 0
    # the importer subscribes to what it imports, so its user gets explicit permissions
    assert (
        project.cli(
            "auth",
            "creds",
            b,
            "sub",
            "--out",
            str(globex),
            "--sub",
            "tenant.>",
            "--pub",
            "tenant.globex.>",
        )[0]
        == 0
    )

    async def main() -> tuple[list[str], list[str]]:
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc))

        pub = await connect(op.url, acme, error_cb=on_error)
        sub = await connect(op.url, globex)
        got: list[str] = []
        try:
            everything = await sub.subscribe("tenant.>")
            await sub.flush()
            await wait_for_interest(pub, everything, "tenant.acme.public.probe")
            await pub.publish("tenant.acme.private.x", b"secret")
            await pub.publish("tenant.acme.public.x", b"hello")
            await pub.publish("tenant.globex.x", b"outside the acme prefix")
            await pub.publish("tenant.acme.public.end", b"")
            await pub.flush()
            while not got or got[-1] != "tenant.acme.public.end":
                msg = await everything.next_msg(timeout=2)
                got.append(msg.subject)
            await asyncio.sleep(0.2)
        finally:
            await pub.close()
            await sub.close()
        return got, errors

    got, errors = asyncio.run(main())
    assert got == ["tenant.acme.public.x", "tenant.acme.public.end"]
    assert any("permissions violation" in e.lower() and "tenant.globex.x" in e for e in errors)


def test_no_secret_in_any_output(op: OperatorServer, tmp_path: Path) -> None:
    name = unique_name("SEC")
    project = _project(tmp_path, op)
    project.write(
        "a.yaml", ACCOUNT.format(name=name, storage="64MiB", streams=2, prefix="tenant.sec")
    )
    outputs = []
    for args in (
        ["plan"],
        ["plan", "--format", "json", "--out", str(tmp_path / "p.json")],
        ["plan", "--format", "markdown"],
        ["apply", "--auto-approve"],
        ["plan", "-v"],
        ["auth", "creds", name, "u", "--out", str(tmp_path / "u.creds")],
        ["auth", "creds", "NOPE", "u", "--out", str(tmp_path / "n.creds")],
    ):
        _code, out, err = project.cli(*args)
        outputs += [out, err]
    outputs.append((tmp_path / "p.json").read_text())
    outputs.append(op.store.server_auth_conf.read_text())
    seeds = [p.read_text().strip() for p in op.store.root.rglob("*.nk")]
    assert seeds and all(SEED.fullmatch(seed) for seed in seeds)
    for text in outputs:
        assert not SEED.search(text), text
        assert not any(seed in text for seed in seeds)
    for path in op.store.root.rglob("*"):
        if path.suffix in (".nk", ".creds"):
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path


def test_tenant_resources_live_in_the_tenant_account(op: OperatorServer, tmp_path: Path) -> None:
    acct = unique_name("TEN")
    project = make_project(
        tmp_path,
        op.url,
        envs={"ops": {"servers": [op.url], "auth_dir": str(op.store.root)}},
        extra=f"""
        tenants:
          acme: {{account: {acct}}}
        """,
    )
    project.write(
        "t.yaml",
        f"""
        apiVersion: jsops/v1
        kind: Account
        metadata: {{name: {acct}}}
        spec: {{jetstream: {{max_storage: 64MiB, max_memory: 0}}}}
        ---
        apiVersion: jsops/v1
        kind: Stream
        metadata: {{name: EVENTS, tenant: acme}}
        spec: {{subjects: ["tenant.acme.events.>"], max_bytes: 1MiB}}
        ---
        apiVersion: jsops/v1
        kind: Consumer
        metadata: {{name: reader, stream: EVENTS, tenant: acme}}
        spec: {{ack_policy: explicit}}
    """,
    )
    plan = project.plan()
    assert [str(c.address) for c in plan.changes] == [
        f"Account {acct}",
        f"Stream {acct}:EVENTS",
        f"Consumer {acct}:EVENTS/reader",
    ]
    _plan, result = project.apply()
    assert result is not None and result.ok
    creds = tmp_path / "ten.creds"
    assert project.cli("auth", "creds", acct, "app", "--out", str(creds))[0] == 0
    info = js_info(op.url, creds.read_text())
    assert info["streams"] == 1 and info["consumers"] == 1
    assert all(c.action is Action.NOOP for c in project.plan().changes)


def test_first_apply_of_a_new_account_with_versioned_fields(
    op: OperatorServer, tmp_path: Path, server_version: tuple[int, int, int]
) -> None:
    """A stream in an account that does not exist yet: nothing can be read there, so
    the API level is the connected server's release's. Fields that need a level the
    server has (allow_msg_ttl: level 1, 2.11) plan and apply, and nothing the server
    does not know is sent (2.12 refused 2.14's allow_batched); on 2.10 the field is a
    plan error naming the release, with nothing written."""
    name = unique_name("NEW")
    project = _project(tmp_path, op)
    project.write(
        "n.yaml",
        f"""
        apiVersion: jsops/v1
        kind: Account
        metadata: {{name: {name}}}
        spec: {{jetstream: {{max_storage: 64MiB}}}}
        ---
        apiVersion: jsops/v1
        kind: Stream
        metadata: {{name: TTL, account: {name}}}
        spec: {{subjects: ["ttl.>"], allow_msg_ttl: true, max_bytes: 1MiB}}
    """,
    )
    if server_version < (2, 11, 0):
        with pytest.raises(ManifestError) as raised:
            project.plan()
        assert any("allow_msg_ttl" in line and "2.11" in line for line in raised.value.lines())
        return
    _plan, result = project.apply()
    assert result is not None and result.ok
    assert all(c.action is Action.NOOP for c in project.plan().changes)


def test_the_system_account_is_not_managed(op: OperatorServer, tmp_path: Path) -> None:
    """An Account manifest named like the store's system account, or a stream in it, is
    a located error (the system account's JWT is the operator's to sign)."""
    system = op.store.system_account
    project = _project(tmp_path, op)
    project.write(
        "sys.yaml",
        f"""
        apiVersion: jsops/v1
        kind: Account
        metadata: {{name: {system}}}
        spec: {{jetstream: {{}}}}
        ---
        apiVersion: jsops/v1
        kind: Stream
        metadata: {{name: AUDIT, account: {system}}}
        spec: {{subjects: ["audit.>"]}}
        """,
    )
    code, _out, err = project.cli("plan")
    assert code == 1, err
    assert f"manifests/sys.yaml:3:12: Account {system} is the auth store's" in err
    assert f'account "{system}" is the system account' in err
    assert "Traceback" not in err
