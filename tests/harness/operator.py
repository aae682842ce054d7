"""A real nats-server in operator mode with a full account resolver, for tests.

``start_operator_server(tmpdir)`` runs ``init_auth_store(tmpdir/"auth")`` and starts a
JetStream server whose config only ``include``s the store's ``server-auth.conf``.
Tenant accounts are then pushed at runtime as the SYS admin user
(``push_account``), and clients connect with creds minted from the store
(``connect``/``js_info``)::

    op = start_operator_server(tmp)
    push_account(op, "ACME", jetstream={"max_streams": 5})
    info = js_info(op.url, mint_user_creds(op.store, "ACME", "u1"))
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client, RawCredentials

from harness.servers import SingleServer
from reconciler.accounts.auth import (
    build_account_jwt,
    init_auth_store,
    lookup_account_jwt,
    push_account_jwt,
)
from reconciler.accounts.store import AuthStore
from reconciler.server import (
    free_port,
    operator_auth_config,
    retry_port_clash,
    server_config,
    start_server,
)

HOST = "127.0.0.1"


@dataclass
class OperatorServer(SingleServer):
    """One operator-mode JetStream server built from an auth store."""

    store: AuthStore

    @property
    def sys_creds(self) -> Path:
        """Path of the SYS admin creds file (a system-account user)."""
        return self.store.sys_creds_path


def operator_server_config(store: AuthStore, name: str, config_dir: Path, extra: str = "") -> str:
    """A server config (to be written in ``config_dir``) whose auth all comes from the
    store's server-auth.conf."""
    return server_config(
        name,
        auth=operator_auth_config(store, config_dir),
        max_mem=256 * 1024**2,
        max_file=1024**3,
        extra=extra,
    )


def start_operator_server(
    tmpdir: Path,
    *,
    name: str = "op1",
    auth_dir: Path | None = None,
    config_extra: str = "",
    monitoring: bool = True,
) -> OperatorServer:
    """An operator-mode JetStream server on a free port; store and log under ``tmpdir``.

    The auth store is ``auth_dir`` (default ``tmpdir/auth``), initialised if needed.
    """
    base = Path(tmpdir)
    store = init_auth_store(auth_dir or base / "auth")
    srv = retry_port_clash(
        lambda: start_server(
            store_dir=base / name / "store",
            host=HOST,
            http_port=free_port() if monitoring else None,
            # start_server writes the config file next to the store dir, in base/name
            config_text=operator_server_config(store, name, base / name, config_extra),
            name=name,
        )
    )
    return OperatorServer(server=srv, store=store)


# --- clients ----------------------------------------------------------------------------


async def connect(url: str, creds: str | Path, timeout: float = 5.0, **kwargs: Any) -> Client:
    """Connect with creds: a path to a creds file, or the creds text itself."""

    async def _quiet(exc: Exception) -> None:
        return None

    source: Any = creds if isinstance(creds, Path) else RawCredentials(creds)
    kwargs.setdefault("error_cb", _quiet)
    return await nats.connect(
        servers=[url],
        user_credentials=source,
        connect_timeout=max(1, int(timeout)),
        allow_reconnect=False,
        max_reconnect_attempts=1,
        reconnect_time_wait=0.1,  # type: ignore[arg-type]
        **kwargs,
    )


async def js_info_async(url: str, creds: str | Path, timeout: float = 5.0) -> dict[str, Any]:
    """``$JS.API.INFO`` as the user of ``creds``."""
    nc = await connect(url, creds, timeout)
    try:
        msg = await nc.request("$JS.API.INFO", b"", timeout=timeout)
        data: dict[str, Any] = json.loads(msg.data)
        return data
    finally:
        await nc.close()


def js_info(url: str, creds: str | Path, timeout: float = 5.0) -> dict[str, Any]:
    return asyncio.run(js_info_async(url, creds, timeout))


async def push_jwt_async(op: OperatorServer, token: str) -> list[dict[str, Any]]:
    """Push an account JWT as the SYS admin user (issuer checked against the store)."""
    nc = await connect(op.url, op.sys_creds)
    try:
        return await push_account_jwt(
            nc, token, expect_servers=len(op.servers), issuers=op.store.operator_signing_keys
        )
    finally:
        await nc.close()


def push_jwt(op: OperatorServer, token: str) -> list[dict[str, Any]]:
    return asyncio.run(push_jwt_async(op, token))


def push_account(op: OperatorServer, name: str, **claims: Any) -> str:
    """Build (keys created on first use), sign and push account ``name``; returns the JWT."""
    token = build_account_jwt(op.store, name, **claims)
    push_jwt(op, token)
    return token


def lookup_jwt(op: OperatorServer, pubkey: str) -> str | None:
    async def main() -> str | None:
        nc = await connect(op.url, op.sys_creds)
        try:
            return await lookup_account_jwt(nc, pubkey)
        finally:
            await nc.close()

    return asyncio.run(main())


async def wait_for_interest(pub: Client, sub: Any, subject: str, attempts: int = 50) -> None:
    """Publish ``subject`` until ``sub`` (a sync subscription) receives it, then drain it.

    An import's interest reaches the exporting account asynchronously: tests that
    check what arrives wait for it first.
    """
    for _ in range(attempts):
        await pub.publish(subject, b"")
        await pub.flush()
        try:
            await sub.next_msg(timeout=0.1)
            break
        except nats.errors.TimeoutError:
            continue
    while True:
        try:
            await sub.next_msg(timeout=0.05)
        except nats.errors.TimeoutError:
            return
