"""NATS v2 JWTs in pure Python: nkeys, encode/decode/sign/verify, claims builders, creds.

Built on PyPI ``nkeys`` (key pairs and Ed25519 signatures) and PyNaCl, which nkeys
depends on (signature checks against a public key). The encoding follows nats-io/jwt
v2 (``v2/claims.go``):

- header ``{"typ":"JWT","alg":"ed25519-nkey"}``; every segment base64url, no padding;
- the signature is Ed25519 over the ASCII ``"<b64 header>.<b64 payload>"``;
- ``jti`` is SHA-512/256 over Go's ``json.Marshal`` of the standard claims only
  (``aud exp jti iat iss name nbf sub``, in that order, empty ones omitted, ``jti``
  emptied), encoded base32 (standard alphabet) without padding;
- ``iss`` is the signer's public key and ``iat`` the time of signing (Unix seconds).

Seeds are secrets: an :class:`NKey` keeps its seed private, shows only its public key
in ``repr``/``str``, and no error raised here ever contains a seed (or a token).
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import nacl.exceptions
import nacl.signing
import nkeys

from reconciler.errors import JsopsError

KeyKind = Literal["operator", "account", "user"]

ALGORITHM = "ed25519-nkey"
ALGORITHM_V1 = "ed25519"
HEADER: dict[str, str] = {"typ": "JWT", "alg": ALGORITHM}

_PREFIX_BYTES: dict[str, int] = {
    "operator": nkeys.PREFIX_BYTE_OPERATOR,
    "account": nkeys.PREFIX_BYTE_ACCOUNT,
    "user": nkeys.PREFIX_BYTE_USER,
}
_KIND_LETTER: dict[str, str] = {"operator": "O", "account": "A", "user": "U"}
_LETTER_KIND: dict[str, str] = {v: k for k, v in _KIND_LETTER.items()}
# Which kind of key may issue (sign) each claim type (nats-io/jwt ExpectedPrefixes).
ISSUER_KINDS: dict[str, frozenset[str]] = {
    "operator": frozenset({"operator"}),
    "account": frozenset({"operator", "account"}),
    "user": frozenset({"account"}),
    "activation": frozenset({"operator", "account"}),
}
_SUBJECT_KIND: dict[str, str] = {"operator": "operator", "account": "account", "user": "user"}

NO_LIMIT = -1

# JetStream account limits: the names `$JS.API.INFO` uses -> the names in the JWT.
JS_LIMIT_NAMES: dict[str, str] = {
    "max_memory": "mem_storage",
    "max_storage": "disk_storage",
    "max_streams": "streams",
    "max_consumers": "consumer",
    "max_ack_pending": "max_ack_pending",
    "memory_max_stream_bytes": "mem_max_stream_bytes",
    "storage_max_stream_bytes": "disk_max_stream_bytes",
    "max_bytes_required": "max_bytes_required",
}
JWT_LIMIT_NAMES: dict[str, str] = {v: k for k, v in JS_LIMIT_NAMES.items()}
# What an omitted limit means (all unlimited, as `$JS.API.INFO` reports them).
JS_LIMIT_DEFAULTS: dict[str, int | bool] = {
    "max_memory": NO_LIMIT,
    "max_storage": NO_LIMIT,
    "max_streams": NO_LIMIT,
    "max_consumers": NO_LIMIT,
    "max_ack_pending": NO_LIMIT,
    "memory_max_stream_bytes": NO_LIMIT,
    "storage_max_stream_bytes": NO_LIMIT,
    "max_bytes_required": False,
}
# In the JWT, 0 means "unlimited" for these (the server turns 0 into -1).
_ZERO_IS_UNLIMITED = frozenset(
    {"max_ack_pending", "memory_max_stream_bytes", "storage_max_stream_bytes"}
)
_TIER_RE = re.compile(r"^R[1-9][0-9]*$")

EXPORT_FIELDS = frozenset(
    {
        "name",
        "subject",
        "type",
        "token_req",
        "revocations",
        "response_type",
        "response_threshold",
        "service_latency",
        "account_token_position",
        "advertise",
        "allow_trace",
        "description",
        "info_url",
    }
)
IMPORT_FIELDS = frozenset(
    {"name", "subject", "account", "token", "to", "local_subject", "type", "share", "allow_trace"}
)
_RESPONSE_TYPES = frozenset({"Singleton", "Stream", "Chunked"})

_STD_CLAIMS = ("aud", "exp", "jti", "iat", "iss", "name", "nbf", "sub")


class AuthError(JsopsError):
    """Keys, JWTs, creds or the auth store are wrong, or a server refused a JWT."""


# --- encoding helpers -------------------------------------------------------------------


def b64url_encode(data: bytes) -> str:
    """base64url without padding (Go's ``base64.RawURLEncoding``)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of :func:`b64url_encode`; also accepts padded input."""
    raw = text.encode("ascii") if isinstance(text, str) else text
    raw = raw.rstrip(b"=")
    return base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))


_GO_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_GO_ESCAPE_RE = re.compile("[<>&\u2028\u2029]")


def go_json(value: Any) -> str:
    """JSON the way Go's ``json.Marshal`` writes it: compact, UTF-8, HTML-escaped."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return _GO_ESCAPE_RE.sub(lambda m: _GO_ESCAPES[m.group(0)], text)


def compute_jti(claims: Mapping[str, Any]) -> str:
    """The ``jti`` nats-io/jwt computes for these claims (their own ``jti`` is ignored)."""
    std: dict[str, Any] = {}
    for key in _STD_CLAIMS:
        if key == "jti":
            continue
        value = claims.get(key)
        if value in (None, "", 0):
            continue
        std[key] = value
    digest = hashlib.new("sha512_256", go_json(std).encode()).digest()
    return base64.b32encode(digest).decode("ascii").rstrip("=")


# --- nkeys ------------------------------------------------------------------------------


def key_kind(public_key: str) -> str | None:
    """``operator``/``account``/``user`` for a well-formed public key, else None."""
    if not isinstance(public_key, str) or len(public_key) != 56:
        return None
    kind = _LETTER_KIND.get(public_key[:1])
    if kind is None or _raw_public_key(public_key) is None:
        return None
    return kind


def is_public_key(value: Any, kind: str | None = None) -> bool:
    """True if ``value`` is a valid public nkey (of ``kind``, if given)."""
    found = key_kind(value) if isinstance(value, str) else None
    return found is not None and (kind is None or found == kind)


def _raw_public_key(public_key: str) -> bytes | None:
    """The 32 Ed25519 bytes of an encoded public nkey (checksum verified), or None."""
    try:
        data = base64.b32decode(public_key + "=" * (-len(public_key) % 8))
    except (binascii.Error, ValueError):
        return None
    if len(data) != 35:
        return None
    body, crc = data[:-2], data[-2:]
    if nkeys.crc16(bytearray(body)) != int.from_bytes(crc, "little"):
        return None
    if body[0] not in _PREFIX_BYTES.values():
        return None
    return bytes(body[1:])


def _seed_checksum_ok(seed: bytes) -> bool:
    try:
        data = base64.b32decode(seed + b"=" * (-len(seed) % 8))
    except (binascii.Error, ValueError):
        return False
    if len(data) != 36:  # 2 prefix bytes, 32 seed bytes, 2 checksum bytes
        return False
    return bool(nkeys.crc16(bytearray(data[:-2])) == int.from_bytes(data[-2:], "little"))


def verify_signature(public_key: str, data: bytes, signature: bytes) -> bool:
    """Check an Ed25519 ``signature`` of ``data`` against an encoded public nkey."""
    raw = _raw_public_key(public_key)
    if raw is None:
        return False
    try:
        nacl.signing.VerifyKey(raw).verify(data, signature)
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
        return False
    return True


class NKey:
    """An operator, account or user key pair; the seed never shows in repr/str.

    ``seed_text()`` is the only way to the seed (to write it to a 0600 file or a
    creds file).
    """

    __slots__ = ("_kp", "_seed", "kind", "public_key")

    def __init__(self, seed: str | bytes) -> None:
        raw = seed.encode("ascii") if isinstance(seed, str) else bytes(seed)
        raw = raw.strip()
        if not _seed_checksum_ok(raw):  # nkeys.from_seed does not check it
            raise AuthError("invalid nkey seed (bad encoding or checksum)")
        try:
            kp = nkeys.from_seed(bytearray(raw))
            public = kp.public_key.decode("ascii")
        except Exception:  # nkeys raises several types; none may carry the seed
            raise AuthError("invalid nkey seed") from None
        kind = _LETTER_KIND.get(public[:1])
        if kind is None:
            raise AuthError(f"unsupported nkey type for public key {public[:1]}…")
        self._kp = kp
        self._seed = raw
        self.kind: str = kind
        self.public_key: str = public

    @classmethod
    def generate(cls, kind: KeyKind) -> NKey:
        """A fresh random key pair of ``kind``."""
        if kind not in _PREFIX_BYTES:
            raise AuthError(f"unknown nkey kind {kind!r}")
        return cls(nkeys.encode_seed(os.urandom(32), _PREFIX_BYTES[kind]))

    def sign(self, data: bytes) -> bytes:
        return bytes(self._kp.sign(data))

    def seed_text(self) -> str:
        """The seed (``SO…``/``SA…``/``SU…``). A secret: never log or print it."""
        return self._seed.decode("ascii")

    def __repr__(self) -> str:
        return f"NKey(kind={self.kind!r}, public_key={self.public_key!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NKey) and other.public_key == self.public_key

    def __hash__(self) -> int:
        return hash(self.public_key)

    def __reduce__(self) -> Any:  # no pickling of secrets by accident
        raise TypeError("NKey objects hold a secret seed and cannot be pickled")

    def __copy__(self) -> NKey:  # immutable: copies are the object itself
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> NKey:
        return self


# --- JWT encode / decode / verify -------------------------------------------------------


def _claim_type(claims: Mapping[str, Any]) -> str | None:
    nats = claims.get("nats")
    if isinstance(nats, Mapping):
        kind = nats.get("type")
        return kind if isinstance(kind, str) else None
    return None


def encode_jwt(
    claims: Mapping[str, Any],
    signer: NKey,
    *,
    iat: int | None = None,
    expires_at: int | None = None,
) -> str:
    """Sign ``claims`` with ``signer``: sets ``iss``, ``iat`` and ``jti``, returns the token.

    ``claims`` is not modified. ``expires_at`` (Unix seconds) sets ``exp``. The issuer
    must be a kind of key allowed to sign this claim type (operator JWTs: an operator
    key; accounts: an operator key; users: an account key).
    """
    body = copy.deepcopy(dict(claims))
    ctype = _claim_type(body)
    if ctype is None:
        raise AuthError("claims have no nats.type")
    allowed = ISSUER_KINDS.get(ctype)
    if allowed is not None and signer.kind not in allowed:
        raise AuthError(
            f"a {signer.kind} key ({signer.public_key}) cannot sign a {ctype} JWT; "
            f"expected a {' or '.join(sorted(allowed))} key"
        )
    sub = body.get("sub")
    want = _SUBJECT_KIND.get(ctype)
    if not isinstance(sub, str) or not sub:
        raise AuthError(f"{ctype} claims have no subject (sub)")
    if want is not None and not is_public_key(sub, want):
        raise AuthError(
            f"the subject of a {ctype} JWT must be a {want} public key, not {redacted_repr(sub)}"
        )
    if expires_at is not None:
        body["exp"] = int(expires_at)
    body["iss"] = signer.public_key
    body["iat"] = int(time.time()) if iat is None else int(iat)
    body.pop("jti", None)
    body["jti"] = compute_jti(body)
    ordered = {k: body[k] for k in _STD_CLAIMS if body.get(k) not in (None, "", 0)}
    ordered.update({k: v for k, v in body.items() if k not in _STD_CLAIMS})
    head = b64url_encode(go_json(HEADER).encode())
    payload = b64url_encode(go_json(ordered).encode())
    to_sign = f"{head}.{payload}"
    return f"{to_sign}.{b64url_encode(signer.sign(to_sign.encode('ascii')))}"


def decode_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(header, claims)`` of a JWT, without checking the signature (see verify_jwt)."""
    if not isinstance(token, str):
        raise AuthError("a JWT must be a string")
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise AuthError(f"malformed JWT: expected 3 dot-separated parts, got {len(parts)}")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
        b64url_decode(parts[2])
    except (ValueError, binascii.Error, UnicodeError):
        raise AuthError("malformed JWT: a part is not base64url-encoded JSON") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise AuthError("malformed JWT: header and claims must be JSON objects")
    return header, claims


def jwt_problems(token: str, *, now: float | None = None) -> list[str]:
    """Everything wrong with a token (empty when :func:`verify_jwt` holds)."""
    try:
        header, claims = decode_jwt(token)
    except AuthError as exc:
        return [str(exc)]
    problems: list[str] = []
    if header.get("alg") not in (ALGORITHM, ALGORITHM_V1):
        problems.append(f"unsupported JWT algorithm {header.get('alg')!r}")
    issuer = claims.get("iss")
    issuer_kind = key_kind(issuer) if isinstance(issuer, str) else None
    if issuer_kind is None or not isinstance(issuer, str):
        problems.append("the issuer (iss) is not a valid public nkey")
    else:
        head, payload, sig = token.strip().split(".")
        try:
            signature = b64url_decode(sig)
        except (ValueError, binascii.Error):
            signature = b""
        if not verify_signature(issuer, f"{head}.{payload}".encode("ascii"), signature):
            problems.append(f"bad signature: not signed by the issuer {issuer}")
    ctype = _claim_type(claims)
    nats = claims.get("nats")
    if ctype is None or not isinstance(nats, Mapping) or nats.get("version") != 2:
        problems.append("not a v2 NATS JWT (nats.type and nats.version 2 required)")
    elif issuer_kind is not None and issuer_kind not in ISSUER_KINDS.get(ctype, {issuer_kind}):
        problems.append(f"a {ctype} JWT cannot be issued by a {issuer_kind} key")
    when = time.time() if now is None else now
    exp = claims.get("exp")
    if isinstance(exp, int | float) and exp > 0 and when > exp:
        problems.append("the JWT has expired")
    nbf = claims.get("nbf")
    if isinstance(nbf, int | float) and nbf > 0 and nbf > when:
        problems.append("the JWT is not valid yet (nbf)")
    return problems


def verify_jwt(token: str, *, now: float | None = None) -> bool:
    """True if the token is a well-formed v2 NATS JWT signed by its issuer (``iss``),
    the issuer's key kind may issue its claim type, and it has not expired.

    This does not say the issuer is *trusted* (compare ``iss`` with the operator's
    signing keys for that).
    """
    return not jwt_problems(token, now=now)


# --- claims builders --------------------------------------------------------------------


_SEED_LIKE = re.compile(r"S[A-Z2-7]{20,}")


def redacted_repr(value: Any) -> str:
    """``repr`` of a value for an error message, with anything seed-like redacted."""
    return _SEED_LIKE.sub("<redacted seed>", repr(value))


def _require_key(value: Any, kind: str, what: str) -> str:
    if not is_public_key(value, kind):
        raise AuthError(
            f"{what} must be {kind} public key ({_KIND_LETTER[kind]}…), got {redacted_repr(value)}"
        )
    return str(value)


def _int_limit(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise AuthError(f"{what} must be an integer (-1 for unlimited), got {value!r}")
    if value < NO_LIMIT:
        raise AuthError(f"{what} must be -1 (unlimited) or >= 0, got {value}")
    return value


def normalize_jetstream_limits(
    limits: Mapping[str, Any], what: str = "jetstream"
) -> dict[str, Any]:
    """Flat JetStream limits (``$JS.API.INFO`` names) with defaults filled in.

    Unknown names are errors. Missing limits are unlimited (-1); for
    ``max_ack_pending`` and the two ``*_max_stream_bytes`` limits 0 also means
    unlimited and becomes -1, as the server reports it.
    """
    if not isinstance(limits, Mapping):
        raise AuthError(f"{what} limits must be a mapping")
    unknown = sorted(set(limits) - set(JS_LIMIT_NAMES))
    if unknown:
        raise AuthError(
            f"unknown {what} limit(s) {', '.join(unknown)}; known: {', '.join(JS_LIMIT_NAMES)}"
        )
    out: dict[str, Any] = dict(JS_LIMIT_DEFAULTS)
    for name, value in limits.items():
        if name == "max_bytes_required":
            if not isinstance(value, bool):
                raise AuthError(f"{what}.max_bytes_required must be true or false")
            out[name] = value
            continue
        number = _int_limit(value, f"{what}.{name}")
        if number == 0 and name in _ZERO_IS_UNLIMITED:
            number = NO_LIMIT
        out[name] = number
    return out


def _jwt_js_limits(limits: Mapping[str, Any], what: str) -> dict[str, Any]:
    norm = normalize_jetstream_limits(limits, what)
    return {JS_LIMIT_NAMES[name]: norm[name] for name in JS_LIMIT_NAMES}


def _js_disabled(jwt_limits: Mapping[str, Any]) -> bool:
    return not jwt_limits.get("mem_storage") and not jwt_limits.get("disk_storage")


def _validate_entries(
    entries: Sequence[Mapping[str, Any]] | None,
    what: str,
    fields: frozenset[str],
    *,
    need_account: bool,
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, entry in enumerate(entries or ()):
        label = f"{what}[{i}]"
        if not isinstance(entry, Mapping):
            raise AuthError(f"{label} must be a mapping")
        unknown = sorted(set(entry) - fields)
        if unknown:
            raise AuthError(f"{label}: unknown field(s) {', '.join(unknown)}")
        subject = entry.get("subject")
        if not isinstance(subject, str) or not subject:
            raise AuthError(f"{label}: subject is required")
        if entry.get("type") not in ("stream", "service"):
            raise AuthError(f"{label}: type must be 'stream' or 'service'")
        if need_account:
            _require_key(entry.get("account"), "account", f"{label}.account")
        rtype = entry.get("response_type")
        if rtype is not None and rtype not in _RESPONSE_TYPES:
            raise AuthError(f"{label}: response_type must be one of {sorted(_RESPONSE_TYPES)}")
        out.append(copy.deepcopy(dict(entry)))
    # nats-io/jwt sorts exports and imports by subject before encoding
    out.sort(key=lambda e: str(e["subject"]))
    return out


def _signing_keys(keys: Iterable[str | Mapping[str, Any]] | None) -> list[Any]:
    out: list[Any] = []
    seen: set[str] = set()
    for key in keys or ():
        if isinstance(key, Mapping):
            pub = _require_key(key.get("key"), "account", "signing key")
            entry: Any = copy.deepcopy(dict(key))
        else:
            pub = _require_key(key, "account", "signing key")
            entry = pub
        if pub not in seen:
            seen.add(pub)
            out.append(entry)
    return out


def account_claims(
    name: str,
    pubkey: str,
    *,
    jetstream: Mapping[str, Any] | None = None,
    tiers: Mapping[str, Mapping[str, Any]] | None = None,
    conn: int = NO_LIMIT,
    subs: int = NO_LIMIT,
    data: int = NO_LIMIT,
    payload: int = NO_LIMIT,
    leaf: int = NO_LIMIT,
    exports: Sequence[Mapping[str, Any]] | None = None,
    imports: Sequence[Mapping[str, Any]] | None = None,
    signing_keys: Iterable[str | Mapping[str, Any]] | None = None,
    description: str | None = None,
    tags: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Unsigned account claims (sign them with the operator signing key).

    ``jetstream`` holds flat JetStream limits under their ``$JS.API.INFO`` names
    (``max_memory``, ``max_storage``, ``max_streams``, ``max_consumers``,
    ``max_ack_pending``, ``memory_max_stream_bytes``, ``storage_max_stream_bytes``,
    ``max_bytes_required``); omitted ones are unlimited. ``{}`` enables JetStream
    without limits; ``None`` (and no ``tiers``) leaves JetStream disabled.
    ``tiers`` maps tier names (``R1``, ``R3``...) to limits of the same shape; it
    excludes ``jetstream``. Connection limits are -1 (unlimited) unless given.
    ``exports``/``imports`` are JWT export/import objects (``subject``, ``type``,
    and for imports ``account``...), sorted by subject as nats-io/jwt does.
    """
    if not isinstance(name, str) or not name:
        raise AuthError("an account needs a name")
    _require_key(pubkey, "account", f"the public key of account {name}")
    limits: dict[str, Any] = {
        "subs": _int_limit(subs, "subs"),
        "data": _int_limit(data, "data"),
        "payload": _int_limit(payload, "payload"),
        "imports": NO_LIMIT,
        "exports": NO_LIMIT,
        "wildcards": True,
        "conn": _int_limit(conn, "conn"),
        "leaf": _int_limit(leaf, "leaf"),
    }
    if jetstream is not None and tiers:
        raise AuthError(
            f"account {name}: flat jetstream limits and tiered limits are mutually exclusive"
        )
    if jetstream is not None:
        flat = _jwt_js_limits(jetstream, "jetstream")
        if _js_disabled(flat):
            raise AuthError(
                f"account {name}: max_memory and max_storage are both 0, which disables "
                "JetStream; leave out the jetstream limits instead"
            )
        limits.update(flat)
    if tiers:
        tiered: dict[str, Any] = {}
        for tier, tier_limits in tiers.items():
            if not isinstance(tier, str) or not _TIER_RE.match(tier):
                raise AuthError(f"account {name}: tier names are R1, R3..., not {tier!r}")
            tiered[tier] = _jwt_js_limits(tier_limits, f"tiers.{tier}")
        if all(_js_disabled(t) for t in tiered.values()):
            raise AuthError(
                f"account {name}: every tier has max_memory and max_storage 0, which "
                "disables JetStream"
            )
        limits["tiered_limits"] = tiered
    nats: dict[str, Any] = {}
    imp = _validate_entries(imports, "imports", IMPORT_FIELDS, need_account=True)
    exp = _validate_entries(exports, "exports", EXPORT_FIELDS, need_account=False)
    if imp:
        nats["imports"] = imp
    if exp:
        nats["exports"] = exp
    nats["limits"] = limits
    keys = _signing_keys(signing_keys)
    if keys:
        nats["signing_keys"] = keys
    nats["default_permissions"] = {"pub": {}, "sub": {}}
    if description:
        nats["description"] = description
    if tags:
        nats["tags"] = list(tags)
    nats["type"] = "account"
    nats["version"] = 2
    return {"name": name, "sub": pubkey, "nats": nats}


def jetstream_limits_from_claims(claims: Mapping[str, Any]) -> dict[str, Any] | None:
    """Flat JetStream limits of account claims in ``$JS.API.INFO`` names (defaults
    filled in as by :func:`normalize_jetstream_limits`), or None if the account has no
    flat JetStream limits (JetStream disabled, or tiered limits only)."""
    limits = _limits_of(claims)
    if not (limits.get("mem_storage") or limits.get("disk_storage")):
        return None
    return _from_jwt_limits(limits)


def jetstream_tiers_from_claims(claims: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Tiered JetStream limits (``{"R1": {...}}``) in ``$JS.API.INFO`` names, maybe empty."""
    tiers = _limits_of(claims).get("tiered_limits") or {}
    return {str(t): _from_jwt_limits(lim) for t, lim in sorted(tiers.items())}


def _limits_of(claims: Mapping[str, Any]) -> Mapping[str, Any]:
    nats = claims.get("nats")
    limits = nats.get("limits") if isinstance(nats, Mapping) else None
    return limits if isinstance(limits, Mapping) else {}


def _from_jwt_limits(limits: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for jwt_name, info_name in JWT_LIMIT_NAMES.items():
        value = limits.get(jwt_name)
        if info_name == "max_bytes_required":
            out[info_name] = bool(value)
            continue
        number = int(value or 0)
        if number == 0 and info_name in _ZERO_IS_UNLIMITED:
            number = NO_LIMIT
        out[info_name] = number
    return out


def _permission(allow: Sequence[str] | None, deny: Sequence[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, subjects in (("allow", allow), ("deny", deny)):
        if subjects is None:
            continue
        if isinstance(subjects, str):
            raise AuthError(f"{key} must be a list of subjects, not a string")
        out[key] = list(subjects)
    return out


def user_claims(
    name: str,
    pubkey: str,
    *,
    issuer_account: str | None = None,
    pub_allow: Sequence[str] | None = None,
    pub_deny: Sequence[str] | None = None,
    sub_allow: Sequence[str] | None = None,
    sub_deny: Sequence[str] | None = None,
    resp: Mapping[str, Any] | None = None,
    bearer: bool = False,
    subs: int = NO_LIMIT,
    data: int = NO_LIMIT,
    payload: int = NO_LIMIT,
    tags: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Unsigned user claims. ``issuer_account`` must be set when an account *signing*
    key signs them. Without allow/deny lists the user may publish and subscribe to
    anything in its account."""
    _require_key(pubkey, "user", f"the public key of user {name}")
    nats: dict[str, Any] = {
        "pub": _permission(pub_allow, pub_deny),
        "sub": _permission(sub_allow, sub_deny),
    }
    if resp is not None:
        nats["resp"] = dict(resp)
    nats["subs"] = _int_limit(subs, "subs")
    nats["data"] = _int_limit(data, "data")
    nats["payload"] = _int_limit(payload, "payload")
    if bearer:
        nats["bearer_token"] = True
    if issuer_account is not None:
        nats["issuer_account"] = _require_key(issuer_account, "account", "issuer_account")
    if tags:
        nats["tags"] = list(tags)
    nats["type"] = "user"
    nats["version"] = 2
    return {"name": name, "sub": pubkey, "nats": nats}


def operator_claims(
    name: str,
    pubkey: str,
    *,
    signing_keys: Sequence[str],
    system_account: str,
    strict_signing_key_usage: bool = True,
) -> dict[str, Any]:
    """Unsigned operator claims (self-signed by the operator identity key)."""
    _require_key(pubkey, "operator", f"the public key of operator {name}")
    keys = [_require_key(k, "operator", "an operator signing key") for k in signing_keys]
    nats: dict[str, Any] = {
        "signing_keys": keys,
        "system_account": _require_key(system_account, "account", "system_account"),
    }
    if strict_signing_key_usage:
        nats["strict_signing_key_usage"] = True
    nats["type"] = "operator"
    nats["version"] = 2
    return {"name": name, "sub": pubkey, "nats": nats}


# --- creds files ------------------------------------------------------------------------

_CREDS_TEMPLATE = """-----BEGIN NATS USER JWT-----
{jwt}
------END NATS USER JWT------

************************* IMPORTANT *************************
NKEY Seed printed below can be used to sign and prove identity.
NKEYs are sensitive and should be treated as secrets.

-----BEGIN USER NKEY SEED-----
{seed}
------END USER NKEY SEED------

*************************************************************
"""
_ARMOR_RE = re.compile(r"-{3,}[^\n]*-{3,}\r?\n([\w\-.=]+)\r?\n-{3,}[^\n]*-{3,}")


def format_creds(user_jwt: str, user_key: NKey) -> str:
    """A creds file (the user JWT and seed in the standard armor, as nsc writes it)."""
    if user_key.kind != "user":
        raise AuthError(f"a creds file needs a user key, not a {user_key.kind} key")
    _, claims = decode_jwt(user_jwt)
    if claims.get("sub") != user_key.public_key:
        raise AuthError("the user JWT's subject does not match the user key")
    return _CREDS_TEMPLATE.format(jwt=user_jwt.strip(), seed=user_key.seed_text())


def parse_creds(text: str) -> tuple[str, NKey]:
    """``(user JWT, user key)`` from a creds file's text."""
    found = _ARMOR_RE.findall(text)
    if len(found) < 2:
        raise AuthError("not a creds file: expected a JWT and a seed in armor blocks")
    key = NKey(found[1])
    if key.kind != "user":
        raise AuthError("not a creds file: the seed is not a user seed")
    return found[0], key
