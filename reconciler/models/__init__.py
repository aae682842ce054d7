"""Manifest models (pydantic v2, ``extra="forbid"``) with server field names."""

from reconciler.models.account import AccountSpec
from reconciler.models.bucket import BucketSource, KeyValueSpec, ObjectStoreSpec
from reconciler.models.consumer import ConsumerSpec
from reconciler.models.envelope import (
    API_VERSION,
    BUCKET_KINDS,
    KINDS,
    LOCK_ACCOUNT,
    LOCK_BUCKET,
    LOCK_STREAM,
    UNIT_PATHS,
    AccountManifest,
    Address,
    BucketSpec,
    ConsumerManifest,
    KeyValueManifest,
    Kind,
    Manifest,
    ObjectStoreManifest,
    Resource,
    StreamManifest,
)
from reconciler.models.stream import StreamSource, StreamSpec

__all__ = [
    "API_VERSION",
    "BUCKET_KINDS",
    "KINDS",
    "LOCK_ACCOUNT",
    "LOCK_BUCKET",
    "LOCK_STREAM",
    "UNIT_PATHS",
    "AccountManifest",
    "AccountSpec",
    "Address",
    "BucketSource",
    "BucketSpec",
    "ConsumerManifest",
    "ConsumerSpec",
    "KeyValueManifest",
    "KeyValueSpec",
    "Kind",
    "Manifest",
    "ObjectStoreManifest",
    "ObjectStoreSpec",
    "Resource",
    "StreamManifest",
    "StreamSource",
    "StreamSpec",
]
