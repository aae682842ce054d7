"""Operator mode against a real nats-server with a full resolver built by `auth init`."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from harness.operator import (
    OperatorServer,
    connect,
    js_info,
    lookup_jwt,
    push_account,
    push_jwt,
    start_operator_server,
    wait_for_interest,
)
from harness.servers import unique_name

from reconciler.accounts import (
    AuthError,
    PushError,
    account_claims,
    admin_creds,
    build_account_jwt,
    decode_jwt,
    encode_jwt,
    init_auth_store,
    jetstream_limits_from_claims,
    jetstream_tiers_from_claims,
    mint_user_creds,
    push_account_jwt,
)

SEED_RE = re.compile(r"(?<![A-Za-z0-9_-])S[OAU][A-Z2-7]{56}(?![A-Za-z0-9_-])")  # a standalone seed


@pytest.fixture(scope="module")
def op(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorServer]:
    handle = start_operator_server(tmp_path_factory.mktemp("operator"))
    yield handle
    handle.stop()


def user_creds(op: OperatorServer, account: str, **kwargs: Any) -> str:
    return mint_user_creds(op.store, account, unique_name("u").lower(), **kwargs)


def test_server_boots_from_server_auth_conf(op: OperatorServer) -> None:
    config = op.server.config_file
    assert config is not None
    text = config.read_text()
    assert "server-auth.conf" in text and "operator:" not in text  # all auth is included
    log = op.server.log_tail(200)
    assert "Trusted Operators" in log and 'Operator: "jsops"' in log
    assert f"directory {op.store.resolver_dir}" in log  # the full resolver's dir
    # the SYS admin creds written by init connect, and they are a system-account user
    sys_pub = op.store.system_account_public_key
    assert lookup_jwt(op, sys_pub) == op.store.account_jwt("SYS")  # the preloaded JWT

    async def anonymous() -> None:
        await nats.connect(
            op.url, allow_reconnect=False, max_reconnect_attempts=1, connect_timeout=2
        )

    with pytest.raises(Exception, match=r"(?i)authorization"):
        asyncio.run(anonymous())


def test_jetstream_limits_push_and_change(op: OperatorServer) -> None:
    name = unique_name("LIM")
    limits = {"max_storage": 10_000_000, "max_memory": 1_000_000, "max_streams": 5}
    token = push_account(op, name, jetstream={**limits, "max_consumers": 50})
    creds = user_creds(op, name)
    info = js_info(op.url, creds)
    assert info["limits"]["max_storage"] == 10_000_000
    assert info["limits"]["max_memory"] == 1_000_000
    assert info["limits"]["max_streams"] == 5
    assert info["limits"]["max_consumers"] == 50
    # the inverse mapping equals what the server reports, so a diff sees no change
    assert jetstream_limits_from_claims(decode_jwt(token)[1]) == info["limits"]
    assert lookup_jwt(op, op.store.account(name).public_key) == token

    push_account(op, name, jetstream={**limits, "max_streams": 7, "max_ack_pending": 100})
    info = js_info(op.url, creds)  # the same creds: the account identity is unchanged
    assert info["limits"]["max_streams"] == 7
    assert info["limits"]["max_ack_pending"] == 100
    assert info["limits"]["max_consumers"] == -1


def test_all_flat_limits_reach_the_server(op: OperatorServer) -> None:
    name = unique_name("ALL")
    limits = {
        "max_memory": 2_000_000,
        "max_storage": 3_000_000,
        "max_streams": 4,
        "max_consumers": 5,
        "max_ack_pending": 6,
        "memory_max_stream_bytes": 700_000,
        "storage_max_stream_bytes": 800_000,
        "max_bytes_required": True,
    }
    push_account(op, name, jetstream=limits)
    assert js_info(op.url, user_creds(op, name))["limits"] == limits


def test_tiered_limits_round_trip(op: OperatorServer) -> None:
    name = unique_name("TIER")
    token = push_account(op, name, tiers={"R1": {"max_streams": 3, "max_memory": 1_000_000}})
    creds = user_creds(op, name)
    info = js_info(op.url, creds)
    r1 = info["tiers"]["R1"]["limits"]
    assert r1["max_streams"] == 3 and r1["max_memory"] == 1_000_000
    assert jetstream_tiers_from_claims(decode_jwt(token)[1]) == {"R1": r1}

    push_account(op, name, tiers={"R1": {"max_streams": 4, "max_memory": 1_000_000}})
    assert js_info(op.url, creds)["tiers"]["R1"]["limits"]["max_streams"] == 4


def test_exports_and_imports_between_accounts(op: OperatorServer) -> None:
    exporter, importer = unique_name("EXP"), unique_name("IMP")
    exporter_pub = op.store.account(exporter, create=True).public_key
    push_account(
        op,
        exporter,
        exports=[{"name": "public", "subject": "shared.public.>", "type": "stream"}],
    )
    push_account(
        op,
        importer,
        imports=[
            {
                "name": "public",
                "subject": "shared.public.>",
                "account": exporter_pub,
                "type": "stream",
            }
        ],
    )

    async def main() -> list[str]:
        pub = await connect(op.url, user_creds(op, exporter))
        sub = await connect(op.url, user_creds(op, importer))
        got: list[str] = []
        try:
            everything = await sub.subscribe(">")
            await sub.flush()
            await wait_for_interest(pub, everything, "shared.public.probe")
            await pub.publish("shared.private.x", b"secret")
            await pub.publish("shared.public.x", b"hello")
            await pub.publish("other.x", b"nope")
            # one publisher, one server: whatever was going to arrive arrives before this
            await pub.publish("shared.public.end", b"")
            await pub.flush()
            while not got or got[-1] != "shared.public.end=":
                msg = await everything.next_msg(timeout=2)
                got.append(f"{msg.subject}={msg.data.decode()}")
        finally:
            await pub.close()
            await sub.close()
        return got

    assert asyncio.run(main()) == ["shared.public.x=hello", "shared.public.end="]


def test_prefix_restricted_creds(op: OperatorServer) -> None:
    name = unique_name("PERM")
    push_account(op, name, jetstream={})
    allowed = ["tenant.acme.>"]
    creds = user_creds(op, name, pub_allow=allowed, sub_allow=allowed)

    async def main() -> tuple[list[str], list[str]]:
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc))

        nc = await connect(op.url, creds, error_cb=on_error)
        got: list[str] = []
        try:
            inside = await nc.subscribe("tenant.acme.>")
            await nc.subscribe("tenant.other.>")
            await nc.publish("tenant.acme.orders", b"ok")
            await nc.publish("tenant.other.orders", b"denied")
            await nc.flush()
            msg = await inside.next_msg(timeout=2)
            got.append(msg.subject)
            for _ in range(50):
                if len(errors) >= 2:
                    break
                await asyncio.sleep(0.02)
            assert nc.is_connected  # a permission violation does not close it
        finally:
            await nc.close()
        return got, errors

    got, errors = asyncio.run(main())
    assert got == ["tenant.acme.orders"]
    joined = "\n".join(errors).lower()
    assert 'permissions violation for subscription to "tenant.other.>"' in joined
    assert 'permissions violation for publish to "tenant.other.orders"' in joined


def test_admin_creds_reach_the_account(op: OperatorServer) -> None:
    name = unique_name("ADM")
    push_account(op, name, jetstream={"max_streams": 2})
    info = js_info(op.url, admin_creds(op.store, name))
    assert info["limits"]["max_streams"] == 2


def test_push_refuses_a_jwt_not_signed_by_the_operator_signing_key(op: OperatorServer) -> None:
    name = unique_name("HAZ")
    good = push_account(op, name, jetstream={"max_streams": 1})
    keys = op.store.account(name)
    claims = account_claims(name, keys.public_key, jetstream={"max_streams": 99})
    self_signed = encode_jwt(claims, keys.identity)  # what the server would store anyway
    identity_signed = encode_jwt(claims, op.store.operator_key)
    with pytest.raises(PushError, match="not by an operator key"):
        push_jwt(op, self_signed)
    with pytest.raises(PushError, match="not an operator signing key"):
        push_jwt(op, identity_signed)
    # nothing was sent: the stored JWT and the live limits are unchanged
    assert lookup_jwt(op, keys.public_key) == good
    assert js_info(op.url, user_creds(op, name))["limits"]["max_streams"] == 1

    async def without_issuer_check() -> None:
        nc = await connect(op.url, op.sys_creds)
        try:
            await push_account_jwt(nc, identity_signed)
        finally:
            await nc.close()

    # strict signing key usage: the server itself refuses the identity key too
    with pytest.raises(PushError, match="signing key"):
        asyncio.run(without_issuer_check())


def test_push_needs_a_system_account_connection(op: OperatorServer) -> None:
    name = unique_name("NOSYS")
    token = push_account(op, name, jetstream={})

    async def main() -> None:
        nc = await connect(op.url, user_creds(op, name))
        try:
            await push_account_jwt(nc, token, timeout=1.0)
        finally:
            await nc.close()

    with pytest.raises(PushError, match="system-account user"):
        asyncio.run(main())


def test_lookup_of_an_unknown_account_is_none(op: OperatorServer) -> None:
    pub = op.store.account(unique_name("NEW"), create=True).public_key
    assert lookup_jwt(op, pub) is None
    with pytest.raises(AuthError, match="not an account public key"):
        lookup_jwt(op, "nope")


def test_second_init_keeps_the_running_server_happy(op: OperatorServer) -> None:
    conf = op.store.server_auth_conf.read_bytes()
    again = init_auth_store(op.store.root)
    assert again.server_auth_conf.read_bytes() == conf
    name = unique_name("AGAIN")
    token = build_account_jwt(again, name, jetstream={"max_streams": 3})
    push_jwt(op, token)
    assert js_info(op.url, mint_user_creds(again, name, "u"))["limits"]["max_streams"] == 3


def test_no_seed_in_conf_reprs_or_errors(op: OperatorServer, tmp_path: Path) -> None:
    seeds: list[str] = []
    for path in op.store.root.rglob("*"):
        if path.suffix in (".nk", ".creds"):
            seeds += SEED_RE.findall(path.read_text())
    assert seeds
    texts = [
        op.store.server_auth_conf.read_text(),
        (op.server.config_file or Path()).read_text(),
        repr(op.store),
        repr(op.store.account("SYS")),
        op.server.log_tail(500),
    ]
    for fn in (
        lambda: push_jwt(op, "garbage"),
        lambda: mint_user_creds(op.store, "MISSING", "u"),
        lambda: build_account_jwt(op.store, "X", tiers={"bad": {}}),
    ):
        with pytest.raises(AuthError) as err:
            fn()
        texts += [str(err.value), repr(err.value)]
    for text in texts:
        assert not SEED_RE.search(text)
        for seed in seeds:
            assert seed not in text
