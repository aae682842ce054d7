"""Drift: did the live config move since jsops last wrote it?

Every stream and consumer config jsops writes carries, in its metadata, a digest of
itself: ``jsops.digest``, the :func:`config_digest` of the config as sent. At plan
time a resource that differs from its manifest is digested again, from the live
config alone: if that digest still equals the stored one, the live config is what
jsops wrote and the change follows the manifest (``drift: false``); if not, someone
changed it out of band since (``drift: true``).

The digest is taken over the comparable form (``reconciler.normalize``), so the
server's echo of a config (defaults filled in, fields it adds) digests like what was
sent. Only the fields that differ from their default go in, so a newer server that
reports more fields (with their defaults) keeps the digest. Left out: the digest key
itself (``user_metadata`` drops it, so it is never compared or shown in a diff), the
server's ``_nats.*`` metadata, and ``pause_until``, which pausing and time change
without the config being edited.

A resource without the key (written by a jsops older than the digest, or made by hand
and adopted) cannot tell: it reports ``drift: false`` (``drift: true`` always means
an out-of-band change was seen) until jsops writes it once. Accounts are JWTs and
carry no digest: their changes always report ``drift: false``.
"""

from __future__ import annotations

from typing import Any

from reconciler.models import Kind
from reconciler.normalize import (
    CONSUMER_DEFAULTS,
    DIGEST_KEY,
    STREAM_DEFAULTS,
    canonical_consumer,
    canonical_stream,
    fingerprint,
)

_LEFT_OUT = ("pause_until",)
_DEFAULTS = {Kind.STREAM: STREAM_DEFAULTS, Kind.CONSUMER: CONSUMER_DEFAULTS}
_NO_DEFAULT = object()  # a field without a default: any value of it is kept


def config_digest(kind: Kind, config: dict[str, Any]) -> str:
    """The digest of a stream or consumer config (sent or live), from the config alone."""
    canonical = canonical_stream(config) if kind == Kind.STREAM else canonical_consumer(config)
    default = _DEFAULTS[kind].get
    sparse = {}
    for key, value in canonical.items():  # a loop of cheap tests first: 3x the comprehension
        if value is None or value == default(key, _NO_DEFAULT) or key in _LEFT_OUT:
            continue
        if not value and (type(value) is dict or type(value) is list):
            continue  # an empty mapping or list: as absent
        sparse[key] = value
    return fingerprint(sparse) or ""


def stamp(kind: Kind, send: dict[str, Any]) -> None:
    """Record in ``send``'s metadata the digest of ``send`` itself (before writing it)."""
    metadata = dict(send.get("metadata") or {})
    metadata.pop(DIGEST_KEY, None)
    send["metadata"] = metadata
    metadata[DIGEST_KEY] = config_digest(kind, send)


def drifted(kind: Kind, live_config: dict[str, Any]) -> bool:
    """True when the live config is no longer the one jsops last wrote (its digest
    differs from the stored one); False when it is, or when no digest was stored."""
    stored = (live_config.get("metadata") or {}).get(DIGEST_KEY)
    return stored is not None and stored != config_digest(kind, live_config)
