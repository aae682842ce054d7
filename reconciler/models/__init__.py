"""Manifest models (pydantic v2, ``extra="forbid"``) with server field names."""

from reconciler.models.account import AccountSpec
from reconciler.models.consumer import ConsumerSpec
from reconciler.models.envelope import (
    API_VERSION,
    KINDS,
    AccountManifest,
    Address,
    ConsumerManifest,
    Kind,
    Manifest,
    Resource,
    StreamManifest,
)
from reconciler.models.stream import StreamSource, StreamSpec

__all__ = [
    "API_VERSION",
    "KINDS",
    "AccountManifest",
    "AccountSpec",
    "Address",
    "ConsumerManifest",
    "ConsumerSpec",
    "Kind",
    "Manifest",
    "Resource",
    "StreamManifest",
    "StreamSource",
    "StreamSpec",
]
