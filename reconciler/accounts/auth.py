"""Operator-mode auth: ``auth init``, account JWTs, user creds, pushing to a full resolver.

``init_auth_store(dir)`` creates, once, the operator (identity + signing key, with
``strict_signing_key_usage``), the system account ``SYS`` (identity + signing key),
its ``admin`` user's creds, and ``DIR/server-auth.conf``, which a nats-server
config includes (with a path relative to that config file: nats-server joins even an
absolute include path onto the including file's directory; see include_directive)::

    include "../.data/nats-auth/server-auth.conf"

It sets ``operator`` (the operator JWT, inline), ``system_account``, a ``full``
resolver whose ``dir`` is an absolute path inside the store, and
``resolver_preload`` with the SYS account JWT. Every other account JWT is pushed at
runtime as the SYS admin user (:func:`push_account_jwt`). A second ``init``
changes nothing.

Signing chain (strict mode, so the identity keys sign almost nothing):
operator identity → operator JWT; operator signing key → account JWTs; account
signing key → user JWTs (with ``issuer_account``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from reconciler.accounts.jwt import (
    AuthError,
    NKey,
    account_claims,
    decode_jwt,
    encode_jwt,
    format_creds,
    is_public_key,
    jwt_problems,
    operator_claims,
    redacted_repr,
    user_claims,
)
from reconciler.accounts.store import (
    SERVER_AUTH_CONF,
    SYS_ADMIN_USER,
    SYSTEM_ACCOUNT,
    AuthStore,
    AuthStoreError,
    create_file_once,
    ensure_dir,
    load_key,
    resolve_auth_dir,
    write_file,
)

CLAIMS_UPDATE_SUBJECT = "$SYS.REQ.CLAIMS.UPDATE"
CLAIMS_LOOKUP_SUBJECT = "$SYS.REQ.ACCOUNT.{account}.CLAIMS.LOOKUP"
ADMIN_USER = "jsops-admin"
ADMIN_TTL_S = 600
DEFAULT_OPERATOR_NAME = "jsops"
_STORE_ENTRIES = frozenset({"store.json", SERVER_AUTH_CONF, "operator", "accounts", "resolver"})


class PushError(AuthError):
    """A server refused an account JWT, or no server answered the push."""


# --- auth init --------------------------------------------------------------------------


def init_auth_store(
    directory: str | os.PathLike[str] | None = None,
    *,
    operator_name: str = DEFAULT_OPERATOR_NAME,
) -> AuthStore:
    """Create the auth store at ``directory`` (default: :func:`resolve_auth_dir`) once.

    Idempotent: what exists is kept byte for byte; only missing pieces are created
    (and ``server-auth.conf`` is rewritten only if the store moved). Returns the store.
    """
    root = resolve_auth_dir(directory).absolute()
    if root.is_dir() and not (root / "store.json").exists():
        strangers = sorted(p.name for p in root.iterdir() if p.name not in _STORE_ENTRIES)
        if strangers:
            raise AuthStoreError(
                f"{root} is not empty and not an auth store (it holds {strangers[0]}); "
                "choose an empty or new directory"
            )
    try:
        ensure_dir(root)
        for sub in ("operator", "accounts", "resolver"):
            ensure_dir(root / sub)
        meta_path = root / "store.json"
        if not meta_path.exists():
            meta = {"version": 1, "operator": operator_name, "system_account": SYSTEM_ACCOUNT}
            create_file_once(meta_path, json.dumps(meta, indent=2) + "\n")
        for name in ("identity.nk", "signing.nk"):
            path = root / "operator" / name
            if not path.exists():
                create_file_once(path, NKey.generate("operator").seed_text() + "\n")
        store = _open_partial(root)
        sys_keys = store.account(store.system_account, create=True)
        ensure_dir(store.account_dir(store.system_account) / "users")
        if not store.operator_jwt_path.exists():
            claims = operator_claims(
                store.operator_name,
                store.operator_public_key,
                signing_keys=[store.operator_signing_public_key],
                system_account=sys_keys.public_key,
            )
            create_file_once(store.operator_jwt_path, encode_jwt(claims, store.operator_key) + "\n")
        _check_operator_jwt(store)
        sys_jwt_path = store.account_dir(store.system_account) / "account.jwt"
        if not sys_jwt_path.exists():
            claims = account_claims(
                store.system_account,
                sys_keys.public_key,
                signing_keys=[sys_keys.signing_public_key],
            )
            create_file_once(sys_jwt_path, sign_account_jwt(store, claims) + "\n")
        if not store.sys_creds_path.exists():
            creds = mint_user_creds(store, store.system_account, SYS_ADMIN_USER)
            create_file_once(store.sys_creds_path, creds)
        write_file(store.server_auth_conf, render_server_auth_conf(store))
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise AuthStoreError(f"cannot initialise the auth store at {root}: {reason}") from None
    return AuthStore.open(root)


def _open_partial(root: Path) -> AuthStore:
    """The store during init, before the SYS account exists (AuthStore.open needs it)."""
    meta = json.loads((root / "store.json").read_text())
    return AuthStore(
        root,
        operator_name=str(meta.get("operator") or DEFAULT_OPERATOR_NAME),
        operator=load_key(root / "operator" / "identity.nk", "operator"),
        operator_signing=load_key(root / "operator" / "signing.nk", "operator"),
        system_account=str(meta.get("system_account") or SYSTEM_ACCOUNT),
    )


def _check_operator_jwt(store: AuthStore) -> None:
    token = store.operator_jwt
    problems = jwt_problems(token)
    _, claims = decode_jwt(token)
    nats = claims.get("nats") or {}
    if (
        problems
        or claims.get("sub") != store.operator_public_key
        or claims.get("iss") != store.operator_public_key
        or store.operator_signing_public_key not in (nats.get("signing_keys") or [])
        or nats.get("system_account") != store.system_account_public_key
    ):
        raise AuthStoreError(
            f"{store.operator_jwt_path} does not match the operator and SYS keys in the store"
        )


def _conf_string(value: str) -> str:
    """A double-quoted nats-server config string (JSON escaping is compatible)."""
    return json.dumps(value)


def render_server_auth_conf(
    store: AuthStore, *, resolver_dir: str | os.PathLike[str] | None = None
) -> str:
    """The text of ``server-auth.conf`` for ``store`` (deterministic, no secrets).

    nats-server manages the full resolver's directory exclusively, so several servers
    on one machine (a local cluster) should each get their own ``resolver_dir``
    (default: ``<store>/resolver``), i.e. their own rendering of this file.
    """
    resolver = Path(resolver_dir).expanduser().absolute() if resolver_dir else store.resolver_dir
    sys_pub = store.system_account_public_key
    sys_jwt = store.account_jwt(store.system_account)
    if sys_jwt is None:
        raise AuthStoreError(f"no SYS account JWT in {store.root} (run 'jsops auth init')")
    return (
        f"# nats-server operator-mode settings of the jsops auth store {store.root}\n"
        f"# operator {store.operator_name} ({store.operator_public_key}).\n"
        "# Written by `jsops auth init`; holds no secrets. Use it from a server config\n"
        "# with a path RELATIVE to that config file's directory (nats-server joins even\n"
        "# an absolute include path onto it), e.g. next to this file:\n"
        f"#   include {SERVER_AUTH_CONF}\n"
        "# Every path inside this file is absolute.\n"
        f"operator: {_conf_string(store.operator_jwt)}\n"
        f"system_account: {sys_pub}\n"
        "resolver: {\n"
        "  type: full\n"
        f"  dir: {_conf_string(str(resolver))}\n"
        "  allow_delete: false\n"
        '  interval: "2m"\n'
        '  timeout: "1.9s"\n'
        "}\n"
        "resolver_preload: {\n"
        f"  {sys_pub}: {_conf_string(sys_jwt)}\n"
        "}\n"
    )


def include_directive(store: AuthStore, config_dir: str | os.PathLike[str]) -> str:
    """The ``include`` line for a nats-server config file that lives in ``config_dir``.

    nats-server joins the include path onto the including file's directory even when
    it is absolute, so the path must be relative to ``config_dir``.
    """
    base = Path(config_dir).expanduser().absolute()
    rel = os.path.relpath(store.server_auth_conf, base)
    return f"include {_conf_string(rel)}"


# --- account JWTs -----------------------------------------------------------------------


def sign_account_jwt(store: AuthStore, claims: dict[str, Any], *, iat: int | None = None) -> str:
    """Sign account claims with the store's operator signing key."""
    nats = claims.get("nats")
    if not isinstance(nats, dict) or nats.get("type") != "account":
        raise AuthError("sign_account_jwt needs account claims (nats.type 'account')")
    return encode_jwt(claims, store.operator_signing_key, iat=iat)


def build_account_jwt(store: AuthStore, name: str, **kwargs: Any) -> str:
    """Account JWT for ``name``: keys from the store (created on first use), claims by
    :func:`~reconciler.accounts.jwt.account_claims` (``kwargs`` are its keyword
    arguments), the account signing key always listed, signed by the operator
    signing key."""
    keys = store.account(name, create=True)
    extra = list(kwargs.pop("signing_keys", None) or ())
    claims = account_claims(
        name, keys.public_key, signing_keys=[keys.signing_public_key, *extra], **kwargs
    )
    return sign_account_jwt(store, claims)


def check_account_jwt(token: str, issuers: Collection[str] | None = None) -> dict[str, Any]:
    """Refuse an account JWT the full resolver would store but not apply.

    Checks the signature, that it is an account JWT for an ``A…`` key issued by an
    ``O…`` key, and (if ``issuers`` is given) that the issuer is one of them (the
    operator signing keys). Returns the claims.
    """
    problems = jwt_problems(token)
    if problems:
        raise PushError(f"refusing to push an invalid account JWT: {'; '.join(problems)}")
    _, claims = decode_jwt(token)
    nats = claims.get("nats") or {}
    sub, iss = claims.get("sub"), claims.get("iss")
    if nats.get("type") != "account" or not is_public_key(sub, "account"):
        raise PushError("refusing to push: not an account JWT")
    if not is_public_key(iss, "operator"):
        raise PushError(
            f"refusing to push the JWT of account {sub}: it is issued by {iss}, "
            "not by an operator key"
        )
    if issuers is not None and iss not in issuers:
        raise PushError(
            f"refusing to push the JWT of account {sub}: it is signed by {iss}, which is not "
            f"an operator signing key ({', '.join(sorted(issuers)) or 'none known'}); "
            "the server would store it and keep the old account"
        )
    return claims


async def push_account_jwt(
    nc: NatsClient,
    jwt: str,
    expect_servers: int = 1,
    *,
    issuers: Collection[str] | None = None,
    timeout: float = 2.0,
) -> list[dict[str, Any]]:
    """Publish an account JWT on ``$SYS.REQ.CLAIMS.UPDATE`` and collect the replies.

    ``nc`` is a nats-py connection of a system-account user. One reply per server
    is gathered until ``expect_servers`` replies arrived or ``timeout`` seconds
    passed; the replies are returned (fewer than ``expect_servers`` after a
    timeout; the full resolvers also pass updates on among themselves). Any error
    reply raises :class:`PushError`, as does no reply at all. Pass
    ``issuers=store.operator_signing_keys`` to refuse a JWT not signed by the
    operator signing key before it is sent (the server would answer 200 and
    ignore it).
    """
    claims = check_account_jwt(jwt, issuers)
    account = claims["sub"]
    queue: asyncio.Queue[Msg] = asyncio.Queue()

    async def collect(msg: Msg) -> None:
        queue.put_nowait(msg)

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=collect)
    replies: list[dict[str, Any]] = []
    try:
        await nc.publish(CLAIMS_UPDATE_SUBJECT, jwt.strip().encode(), reply=inbox)
        await nc.flush(timeout=max(1, math.ceil(timeout)))  # nats-py takes whole seconds
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(replies) < max(1, expect_servers):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                msg = await asyncio.wait_for(queue.get(), remaining)
            except TimeoutError:
                break
            status = (msg.headers or {}).get("Status")
            if status == "503":
                raise PushError(
                    f"nobody answers {CLAIMS_UPDATE_SUBJECT}: connect as a system-account "
                    "user (the SYS admin creds) to push account JWTs"
                )
            replies.append(_push_reply(msg.data, account))
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    if not replies:
        raise PushError(
            f"no server answered the push of account {account} within {timeout:g}s "
            "(is this a system-account connection to a server with a full resolver?)"
        )
    return replies


def _push_reply(data: bytes, account: str) -> dict[str, Any]:
    try:
        reply = json.loads(data)
    except ValueError:
        raise PushError(f"unexpected reply to the push of account {account}") from None
    if not isinstance(reply, dict):
        raise PushError(f"unexpected reply to the push of account {account}")
    server = (reply.get("server") or {}).get("name") or "a server"
    error = reply.get("error")
    if error:
        desc = error.get("description") if isinstance(error, dict) else str(error)
        raise PushError(f"{server} refused the JWT of account {account}: {desc}")
    data_part = reply.get("data") or {}
    code = data_part.get("code") if isinstance(data_part, dict) else None
    if code not in (None, 200):
        raise PushError(
            f"{server} refused the JWT of account {account}: {data_part.get('message') or code}"
        )
    return reply


async def lookup_account_jwt(nc: NatsClient, pubkey: str, *, timeout: float = 2.0) -> str | None:
    """The account JWT a server's resolver holds for ``pubkey`` (None if it has none).

    ``nc`` must be a system-account connection.
    """
    if not is_public_key(pubkey, "account"):
        raise AuthError(f"not an account public key: {redacted_repr(pubkey)}")
    subject = CLAIMS_LOOKUP_SUBJECT.format(account=pubkey)
    try:
        msg = await nc.request(subject, b"", timeout=timeout)
    except NoRespondersError:
        raise AuthError(f"nobody answers {subject}: connect as a system-account user") from None
    except NatsTimeoutError:
        raise AuthError(f"no reply to {subject} within {timeout:g}s") from None
    text: str = msg.data.decode(errors="replace").strip()
    if not text:
        return None
    if text.startswith("{"):
        try:
            reply = json.loads(text)
        except ValueError:
            reply = {}
        error = reply.get("error") if isinstance(reply, dict) else None
        if isinstance(error, dict) and error.get("code") == 404:
            return None
        if error:
            desc = error.get("description") if isinstance(error, dict) else error
            raise AuthError(f"looking up account {pubkey} failed: {desc}")
        return None
    return text


# --- users and creds --------------------------------------------------------------------


def mint_user_creds(
    store: AuthStore,
    account_name: str,
    user_name: str,
    *,
    pub_allow: Sequence[str] | None = None,
    sub_allow: Sequence[str] | None = None,
    pub_deny: Sequence[str] | None = None,
    sub_deny: Sequence[str] | None = None,
    expires_in_s: int | None = None,
    bearer: bool = False,
) -> str:
    """Creds file text for a new user of ``account_name`` (a fresh user key each call).

    The user JWT is signed by the account signing key with ``issuer_account`` set.
    Allow/deny lists restrict what it may publish/subscribe (none: everything in
    the account); ``expires_in_s`` sets ``exp``; ``bearer`` makes a bearer token
    (no nonce signature needed to connect). The text contains the user seed: write
    it only to 0600 files (``AuthStore.write_creds``).
    """
    keys = store.account(account_name)
    if not isinstance(user_name, str) or not user_name:
        raise AuthError("a user needs a name")
    if expires_in_s is not None and expires_in_s <= 0:
        raise AuthError("expires_in_s must be positive")
    user = NKey.generate("user")
    claims = user_claims(
        user_name,
        user.public_key,
        issuer_account=keys.public_key,
        pub_allow=pub_allow,
        pub_deny=pub_deny,
        sub_allow=sub_allow,
        sub_deny=sub_deny,
        bearer=bearer,
    )
    now = int(time.time())
    expires_at = now + int(expires_in_s) if expires_in_s is not None else None
    token = encode_jwt(claims, keys.signing, iat=now, expires_at=expires_at)
    return format_creds(token, user)


def admin_creds(store: AuthStore, account_name: str, *, ttl_s: int = ADMIN_TTL_S) -> str:
    """Short-lived creds (``ttl_s``, default 10 minutes) of a full-permission user of
    ``account_name``: how jsops reaches each account's JetStream API."""
    return mint_user_creds(store, account_name, ADMIN_USER, expires_in_s=ttl_s)
