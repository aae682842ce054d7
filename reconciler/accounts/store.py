"""The auth store: operator, account and user secrets of one NATS deployment, on disk.

Layout (directories 0700, files 0600; only ``*.nk`` and ``*.creds`` hold secrets)::

    DIR/
      store.json              {"version": 1, "operator": NAME, "system_account": "SYS"}
      server-auth.conf        for nats-server `include` (no secrets; see auth.py)
      operator/
        identity.nk           operator identity seed (SO…); signs only operator.jwt
        signing.nk            operator signing seed (SO…); signs every account JWT
        operator.jwt          the operator JWT (self-signed)
      accounts/
        <ACCOUNT>/
          identity.nk         account identity seed (SA…): the account's stable id
          signing.nk          account signing seed (SA…); signs the account's users
          account.jwt         the last account JWT saved (SYS: the preloaded one)
          users/<USER>.creds  creds files written by jsops (SYS: admin.creds)
      resolver/               the full resolver's JWT directory (nats-server writes it)

Keys are created once and never replaced, so an account's identity (its public key)
never changes. Files are created atomically (written to a temp file, then hard-linked
into place, which fails if another process created it first; the loser reads the
winner's file), so concurrent runs agree on the keys.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.accounts.jwt import AuthError, KeyKind, NKey, decode_jwt, redacted_repr

DEFAULT_AUTH_SUBDIR = "nats-auth"
DEFAULT_DATA_ROOT = ".data"
AUTH_DIR_ENV = "JSOPS_AUTH_DIR"
SYSTEM_ACCOUNT = "SYS"
STORE_VERSION = 1
SERVER_AUTH_CONF = "server-auth.conf"
SYS_ADMIN_USER = "admin"

DIR_MODE = 0o700
FILE_MODE = 0o600
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class AuthStoreError(AuthError):
    """The auth store is missing, incomplete, unsafe or inconsistent."""


def resolve_auth_dir(
    explicit: str | os.PathLike[str] | None = None, configured: str | os.PathLike[str] | None = None
) -> Path:
    """Where the auth store lives.

    First match wins: ``explicit`` (``--dir``), ``$JSOPS_AUTH_DIR``, ``configured``
    (an environment's ``auth_dir``), ``$APP_ROOT/nats-auth``, ``.data/nats-auth``.
    ``~`` is expanded; relative paths stay relative to the working directory.
    """
    for candidate in (explicit, os.environ.get(AUTH_DIR_ENV) or None, configured):
        if candidate is not None and str(candidate):
            return Path(candidate).expanduser()
    root = os.environ.get("APP_ROOT") or DEFAULT_DATA_ROOT
    return Path(root).expanduser() / DEFAULT_AUTH_SUBDIR


def check_name(name: str, what: str = "account") -> str:
    """Account and user names double as file names: letters, digits, ``_ . -``."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise AuthStoreError(
            f"invalid {what} name {redacted_repr(name)}: use 1-64 letters, digits, "
            "'_', '.' or '-', starting with a letter or digit"
        )
    return name


# --- files ------------------------------------------------------------------------------


def ensure_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if needed; make ``path`` itself mode 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    if stat.S_IMODE(path.stat().st_mode) != DIR_MODE:
        path.chmod(DIR_MODE)
    return path


def _write_temp(directory: Path, data: bytes) -> Path:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return Path(tmp)


def create_file_once(path: Path, text: str) -> bool:
    """Atomically create ``path`` (mode 0600) with ``text`` unless it exists.

    Returns True if this call created it. Never overwrites an existing file.
    """
    if path.exists():
        return False
    ensure_dir(path.parent)
    tmp = _write_temp(path.parent, text.encode())
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return True


def write_file(path: Path, text: str) -> bool:
    """Atomically write ``path`` (mode 0600) unless it already holds exactly ``text``.

    Returns True if the file changed. An unchanged file is not touched at all.
    """
    data = text.encode()
    try:
        if path.read_bytes() == data:
            if stat.S_IMODE(path.stat().st_mode) != FILE_MODE:
                path.chmod(FILE_MODE)
            return False
    except FileNotFoundError:
        pass
    ensure_dir(path.parent)
    tmp = _write_temp(path.parent, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return True


def read_secret(path: Path) -> str:
    """Read a seed or creds file; refuse one that others may read (like ssh does)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text()
    except FileNotFoundError:
        raise AuthStoreError(f"missing secret file {path}") from None
    except OSError as exc:
        raise AuthStoreError(f"cannot read {path}: {exc.strerror or exc}") from None
    if mode & 0o077:
        raise AuthStoreError(
            f"{path} is readable by other users (mode {mode:04o}); run: chmod 600 {path}"
        )
    return text


def load_key(path: Path, kind: str) -> NKey:
    """The key in a seed file, checked: private mode, valid seed, expected kind."""
    try:
        key = NKey(read_secret(path).strip())
    except AuthStoreError:
        raise
    except AuthError:
        raise AuthStoreError(f"{path} does not hold a valid nkey seed") from None
    if key.kind != kind:
        raise AuthStoreError(f"{path} holds a {key.kind} seed, not an {kind} seed")
    return key


def _key_once(path: Path, kind: KeyKind) -> NKey:
    """The key stored at ``path``; generated and stored first if there is none."""
    if not path.exists():
        create_file_once(path, NKey.generate(kind).seed_text() + "\n")
    return load_key(path, kind)


# --- keys -------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class AccountKeys:
    """An account's identity key (its id, ``A…``) and its account signing key.

    ``repr`` shows public keys only.
    """

    name: str
    identity: NKey
    signing: NKey

    @property
    def public_key(self) -> str:
        return self.identity.public_key

    @property
    def signing_public_key(self) -> str:
        return self.signing.public_key

    def __repr__(self) -> str:
        return (
            f"AccountKeys(name={self.name!r}, public_key={self.public_key!r}, "
            f"signing_key={self.signing_public_key!r})"
        )

    __str__ = __repr__


class AuthStore:
    """An auth store directory (see the module docstring). Open with :meth:`open`;
    create with ``reconciler.accounts.auth.init_auth_store``."""

    def __init__(
        self,
        root: Path,
        *,
        operator_name: str,
        operator: NKey,
        operator_signing: NKey,
        system_account: str = SYSTEM_ACCOUNT,
    ) -> None:
        self.root = root
        self.operator_name = operator_name
        self._operator = operator
        self._operator_signing = operator_signing
        self.system_account = system_account

    # construction

    @classmethod
    def open(cls, directory: str | os.PathLike[str]) -> AuthStore:
        """Open an initialised store; AuthStoreError if there is none at ``directory``."""
        root = Path(directory).expanduser().absolute()
        meta_path = root / "store.json"
        if not meta_path.is_file():
            raise AuthStoreError(f"no auth store at {root} (run 'jsops auth init')")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise AuthStoreError(f"unreadable {meta_path}: {exc}") from None
        if not isinstance(meta, dict) or meta.get("version") != STORE_VERSION:
            raise AuthStoreError(
                f"{meta_path}: unsupported auth store version {meta.get('version')!r}"
                if isinstance(meta, dict)
                else f"{meta_path}: not a JSON object"
            )
        store = cls(
            root,
            operator_name=str(meta.get("operator") or "jsops"),
            operator=load_key(root / "operator" / "identity.nk", "operator"),
            operator_signing=load_key(root / "operator" / "signing.nk", "operator"),
            system_account=str(meta.get("system_account") or SYSTEM_ACCOUNT),
        )
        store.account(store.system_account)  # must exist
        return store

    def __repr__(self) -> str:
        return (
            f"AuthStore(root={str(self.root)!r}, operator={self.operator_public_key!r}, "
            f"signing_key={self.operator_signing_public_key!r})"
        )

    __str__ = __repr__

    # paths

    @property
    def operator_dir(self) -> Path:
        return self.root / "operator"

    @property
    def accounts_dir(self) -> Path:
        return self.root / "accounts"

    @property
    def resolver_dir(self) -> Path:
        return self.root / "resolver"

    @property
    def operator_jwt_path(self) -> Path:
        return self.operator_dir / "operator.jwt"

    @property
    def server_auth_conf(self) -> Path:
        return self.root / SERVER_AUTH_CONF

    @property
    def sys_creds_path(self) -> Path:
        return self.creds_path(self.system_account, SYS_ADMIN_USER)

    def account_dir(self, name: str) -> Path:
        return self.accounts_dir / check_name(name)

    def creds_path(self, account: str, user: str) -> Path:
        return self.account_dir(account) / "users" / f"{check_name(user, 'user')}.creds"

    # operator

    @property
    def operator_public_key(self) -> str:
        return self._operator.public_key

    @property
    def operator_signing_public_key(self) -> str:
        return self._operator_signing.public_key

    @property
    def operator_signing_keys(self) -> frozenset[str]:
        """Issuers the server accepts for account JWTs (strict signing-key usage)."""
        return frozenset({self._operator_signing.public_key})

    @property
    def operator_key(self) -> NKey:
        """The operator identity key (signs only the operator JWT)."""
        return self._operator

    @property
    def operator_signing_key(self) -> NKey:
        """The operator signing key: every account JWT is signed with it."""
        return self._operator_signing

    @property
    def operator_jwt(self) -> str:
        try:
            return self.operator_jwt_path.read_text().strip()
        except FileNotFoundError:
            raise AuthStoreError(
                f"missing {self.operator_jwt_path} (run 'jsops auth init')"
            ) from None

    @property
    def system_account_public_key(self) -> str:
        return self.account(self.system_account).public_key

    # accounts

    def account(self, name: str, create: bool = False) -> AccountKeys:
        """The keys of account ``name``; with ``create=True`` they are made on first use.

        The same name always gives the same keys (they are never regenerated).
        """
        directory = self.account_dir(name)
        identity_path = directory / "identity.nk"
        if not identity_path.exists():
            if not create:
                raise AuthStoreError(f"no keys for account {name} in the auth store {self.root}")
            ensure_dir(self.accounts_dir)
            ensure_dir(directory)
        if create:
            identity = _key_once(identity_path, "account")
            signing = _key_once(directory / "signing.nk", "account")
        else:
            identity = load_key(identity_path, "account")
            signing = load_key(directory / "signing.nk", "account")
        return AccountKeys(name=name, identity=identity, signing=signing)

    def has_account(self, name: str) -> bool:
        return (self.account_dir(name) / "identity.nk").exists()

    def accounts(self) -> list[str]:
        """Names of the accounts with keys in this store, sorted."""
        if not self.accounts_dir.is_dir():
            return []
        return sorted(
            p.name
            for p in self.accounts_dir.iterdir()
            if _NAME_RE.match(p.name) and (p / "identity.nk").exists()
        )

    def account_name_for(self, public_key: str) -> str | None:
        """The account name whose identity key is ``public_key``, if any."""
        for name in self.accounts():
            if self.account(name).public_key == public_key:
                return name
        return None

    def account_jwt(self, name: str) -> str | None:
        """The last account JWT saved for ``name`` (None if none)."""
        try:
            return (self.account_dir(name) / "account.jwt").read_text().strip() or None
        except FileNotFoundError:
            return None

    def save_account_jwt(self, name: str, token: str) -> Path:
        """Keep ``token`` as the account's current JWT (its ``sub`` must be the account)."""
        _, claims = decode_jwt(token)
        if claims.get("sub") != self.account(name).public_key:
            raise AuthStoreError(f"that JWT is not for account {name} (its sub differs)")
        path = self.account_dir(name) / "account.jwt"
        write_file(path, token.strip() + "\n")
        return path

    def write_creds(self, account: str, user: str, creds_text: str) -> Path:
        """Store a creds file at ``accounts/<account>/users/<user>.creds`` (0600)."""
        path = self.creds_path(account, user)
        ensure_dir(path.parent)
        write_file(path, creds_text)
        return path

    def metadata(self) -> dict[str, Any]:
        return {
            "version": STORE_VERSION,
            "operator": self.operator_name,
            "system_account": self.system_account,
        }
