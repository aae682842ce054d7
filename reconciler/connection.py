"""Connection settings and connecting: where and how jsops reaches a server.

:func:`resolve_settings` merges the command line, the environment in ``jsops.yaml``,
a nats CLI context and the ``NATS_*`` variables into one :class:`ConnectSettings`;
:func:`connect` opens one nats-py connection from it (bounded, no reconnect loops,
TLS enforced when asked for). Nothing here prints a secret: :meth:`ConnectSettings.describe`
strips userinfo and :func:`redact` removes passwords and tokens from messages.
:func:`server_info` is the one accessor of the server's INFO that nats-py keeps private.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.client import RawCredentials

from reconciler.environments import DEFAULT_URL, EnvironmentConfig
from reconciler.errors import ConnectionFailed, UsageError

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, with the result kept off the main task.

    Python 3.11's runner formats its SIGINT handler, a partial holding the main task,
    when it restores the handler, and a finished task's repr includes its result: for a
    plan of 40,000 resources that repr cost about half a second, twice.
    """
    box: list[T] = []

    async def body() -> None:
        box.append(await main)

    asyncio.run(body())
    return box[0]


CLOSE_TIMEOUT = 0.5  # seconds to let a half-open client close
CONNECT_RETRY_WAIT = 0.1  # seconds between the two tries of one server


@dataclass
class ConnectSettings:
    """Where and how to connect. ``describe()`` never shows a secret."""

    servers: list[str]
    domain: str | None = None
    api_prefix: str | None = None
    creds: str | None = None
    creds_text: str | None = field(default=None, repr=False)  # minted, never on disk
    nkey: str | None = None
    token: str | None = field(default=None, repr=False)
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    timeout: float = 5.0

    @property
    def prefix(self) -> str:
        if self.api_prefix:
            return self.api_prefix.rstrip(".")
        return f"$JS.{self.domain}.API" if self.domain else "$JS.API"

    def describe(self) -> str:
        servers = ", ".join(strip_userinfo(s) for s in self.servers)
        return servers + (f" (domain {self.domain})" if self.domain else "")


def strip_userinfo(url: str) -> str:
    """``url`` without its ``user:password@``, with or without a scheme (nats-py takes
    ``user:pw@host:4222``); as nats-py reads it, the last "@" ends the user info, so a
    password holding an "@" goes whole."""
    if "@" not in url:
        return url
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    return f"{scheme}{sep}{rest.rsplit('@', 1)[1]}"


def _context_file(name: str) -> Path:
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "nats" / "context" / f"{name}.json"


def read_context(name: str) -> dict[str, Any]:
    """A nats CLI context (``~/.config/nats/context/NAME.json``)."""
    path = _context_file(name)
    try:
        context: dict[str, Any] = json.loads(path.read_text())
        return context
    except FileNotFoundError:
        raise UsageError(f'nats context "{name}" not found ({path})') from None
    except (OSError, ValueError) as exc:
        raise UsageError(f'nats context "{name}" cannot be read: {exc}') from None


def resolve_settings(
    env: EnvironmentConfig,
    *,
    server: str | None = None,
    creds: str | None = None,
    context: str | None = None,
) -> ConnectSettings:
    """Merge, highest first: command line, the environment in jsops.yaml, its (or the
    given) nats context, then ``NATS_URL``/``NATS_CREDS``/``NATS_CONTEXT``."""
    ctx_name = context or env.context or (None if env.servers else os.environ.get("NATS_CONTEXT"))
    ctx = read_context(ctx_name) if ctx_name else {}
    servers: list[str]
    if server:
        servers = [s.strip() for s in server.split(",") if s.strip()]
    elif env.servers:
        servers = list(env.servers)
    elif ctx.get("url"):
        servers = [s.strip() for s in str(ctx["url"]).split(",")]
    elif os.environ.get("NATS_URL"):
        servers = [s.strip() for s in os.environ["NATS_URL"].split(",")]
    else:
        servers = [DEFAULT_URL]
    tls = env.tls
    return ConnectSettings(
        servers=servers,
        domain=env.domain or ctx.get("jetstream_domain") or None,
        api_prefix=None if env.domain else (ctx.get("jetstream_api_prefix") or None),
        creds=_path(creds or env.creds or ctx.get("creds") or os.environ.get("NATS_CREDS")),
        nkey=_path(env.nkey or ctx.get("nkey")),
        token=env.token or ctx.get("token") or None,
        user=env.user or ctx.get("user") or None,
        password=env.password or ctx.get("password") or None,
        tls_ca=_path((tls.ca if tls else None) or ctx.get("ca")),
        tls_cert=_path((tls.cert if tls else None) or ctx.get("cert")),
        tls_key=_path((tls.key if tls else None) or ctx.get("key")),
        timeout=env.timeout,
    )


def _path(value: str | None) -> str | None:
    return str(Path(value).expanduser()) if value else None


def _tls_context(settings: ConnectSettings) -> ssl.SSLContext | None:
    if not tls_wanted(settings):
        return None
    ctx = ssl.create_default_context(cafile=settings.tls_ca)
    if settings.tls_cert:
        ctx.load_cert_chain(settings.tls_cert, settings.tls_key)
    return ctx


class TlsNotOffered(Exception):
    """The server did not offer TLS although the settings require it (raised before CONNECT)."""


class _GuardedClient(NatsClient):
    """A nats-py client that refuses to send CONNECT in clear text when TLS is required.

    nats-py upgrades to TLS only when the server's INFO says ``tls_required``; otherwise
    it sends CONNECT (user/password, token, the signed nonce, the JWT) over plain TCP,
    whatever the URL scheme or the ``tls`` option say. CONNECT is built right after that
    decision, in ``_connect_command``: refusing there means no credential ever leaves the
    process unencrypted. (This and :func:`server_info` are the only places that touch
    nats-py internals.)
    """

    tls_wanted = False

    def _connect_command(self) -> bytes:
        if self.tls_wanted and not server_info(self).get("tls_required"):
            raise TlsNotOffered()
        return super()._connect_command()


def tls_wanted(settings: ConnectSettings) -> bool:
    """A ``tls://`` URL or any TLS setting means TLS is required on every server."""
    return bool(
        settings.tls_ca
        or settings.tls_cert
        or settings.tls_key
        or any(s.strip().lower().startswith("tls://") for s in settings.servers)
    )


def check_credentials_file(path: str, kind: str) -> None:
    """Say what is wrong with a ``creds`` (user JWT + seed) or ``nkey`` (user seed) file
    before nats-py reads it (on the wrong kind it hangs or fails obscurely). The file's
    content is never part of a message."""
    from reconciler.accounts.jwt import AuthError, NKey, parse_creds  # only with such a file

    file = Path(path)
    if not file.is_file():
        raise ConnectionFailed(f"credentials file not found: {path}")
    try:
        text = file.read_bytes()[: 1 << 20].decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise ConnectionFailed(f"{kind} file {path} cannot be read: {reason}") from None
    armored = "BEGIN NATS USER JWT" in text
    try:
        if kind == "creds":
            parse_creds(text)
        else:
            key = NKey(text.strip())
            if key.kind != "user":
                raise AuthError(f"it holds an {key.kind} seed, not a user seed")
    except AuthError as exc:
        hint = ""
        if kind == "creds" and not armored and text.strip().startswith("SU"):
            hint = " (it holds a bare nkey seed: use `nkey:` for a seed file)"
        elif kind == "nkey" and armored:
            hint = " (it is a creds file: use `creds:` for it)"
        raise ConnectionFailed(f"{kind} file {path} is not usable: {exc}{hint}") from None


async def connect(settings: ConnectSettings) -> NatsClient:
    """Connect once, without reconnect loops; any failure is one clear line, fast.

    nats-py's initial connect keeps cycling through the server pool as long as
    ``max_reconnect_attempts`` is 0 (it only drops a server when the count is > 0), so
    each server gets two tries (``max_reconnect_attempts=1``) a short wait apart, and
    the whole attempt is bounded by a deadline as well. When TLS is wanted
    (:func:`tls_wanted`), a server that does not offer it is refused before CONNECT.
    """

    async def _quiet(_exc: Exception) -> None:  # nats-py would log every error
        return None

    kwargs: dict[str, Any] = {
        "servers": settings.servers,
        "name": "jsops",
        "connect_timeout": settings.timeout,
        "allow_reconnect": False,
        "max_reconnect_attempts": 1,
        "reconnect_time_wait": CONNECT_RETRY_WAIT,
        "error_cb": _quiet,
        "pending_size": 64 * 1024 * 1024,
    }
    if settings.creds and not settings.creds_text:
        check_credentials_file(settings.creds, "creds")
    if settings.nkey:
        check_credentials_file(settings.nkey, "nkey")
    if settings.creds_text:
        kwargs["user_credentials"] = RawCredentials(settings.creds_text)
    elif settings.creds:
        kwargs["user_credentials"] = settings.creds
    if settings.nkey:
        kwargs["nkeys_seed"] = settings.nkey
    if settings.token:
        kwargs["token"] = settings.token
    if settings.user:
        kwargs["user"] = settings.user
        kwargs["password"] = settings.password
    try:
        tls = _tls_context(settings)
    except (OSError, ssl.SSLError) as exc:
        raise ConnectionFailed(f"TLS setup failed: {exc}") from None
    if tls is not None:
        kwargs["tls"] = tls
    nc = _GuardedClient()
    nc.tls_wanted = tls_wanted(settings)
    deadline = 2 * len(settings.servers) * (settings.timeout + CONNECT_RETRY_WAIT) + 1
    try:
        await asyncio.wait_for(nc.connect(**kwargs), deadline)
    except Exception as exc:  # nats-py raises many types here; all mean "cannot connect"
        # After a failed TLS handshake nats-py's close() never returns: bound it.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), CLOSE_TIMEOUT)
        raise ConnectionFailed(
            f"cannot connect to {settings.describe()}: {_connect_reason(exc, settings)}"
        ) from None
    return nc


def _connect_reason(exc: BaseException, settings: ConnectSettings) -> str:
    if isinstance(exc, TlsNotOffered):
        return (
            "the server does not offer TLS, and TLS is required (a tls:// URL or a tls "
            "setting); nothing was sent"
        )
    text = str(exc).strip() or type(exc).__name__
    lowered = text.lower()
    if "authorization" in lowered or "authentication" in lowered:
        return "authorization violation (check the credentials)"
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return f"timed out after {settings.timeout:g}s"
    if isinstance(exc, ssl.SSLError):
        reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or text
        return f"TLS handshake failed: {reason} (check tls.ca / the server certificate)"
    if isinstance(exc, (nats.errors.NoServersError, OSError)) or "no servers" in lowered:
        return "no server is reachable"
    return redact(text.removeprefix("nats: ").strip("'"), settings)


def redact(text: str, settings: ConnectSettings) -> str:
    """Remove any secret the settings hold from a message (server errors may echo them)."""
    for secret in (settings.password, settings.token):
        if secret:
            text = text.replace(secret, "***")
    return text


def server_info(nc: NatsClient) -> dict[str, Any]:
    """The INFO the connected server sent (latest update included); nats-py keeps it in a
    private attribute, read here only."""
    return dict(getattr(nc, "_server_info", None) or {})
