"""The manifest envelope (apiVersion, kind, metadata, spec) and desired resources."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from reconciler.models.account import AccountSpec
from reconciler.models.bucket import BucketName, KeyValueSpec, ObjectStoreSpec
from reconciler.models.consumer import ConsumerSpec
from reconciler.models.stream import StreamSpec
from reconciler.models.types import STRICT, Name, unit_paths

if TYPE_CHECKING:
    from reconciler.errors import Location
    from reconciler.load import Document

API_VERSION = "jsops/v1"


class Kind(StrEnum):
    """The kinds of resource jsops manages; the value is the manifest's ``kind:`` and the
    ``kind`` of a plan's change (so JSON stays the same). Never renamed, only added."""

    STREAM = "Stream"
    CONSUMER = "Consumer"
    ACCOUNT = "Account"
    KEY_VALUE = "KeyValue"
    OBJECT_STORE = "ObjectStore"


class ResourceMetadata(BaseModel):
    model_config = STRICT
    name: Name
    tenant: str | None = None
    account: str | None = None
    environments: list[str] | None = Field(default=None, min_length=1)
    prevent_destroy: bool = False


class ConsumerMetadata(ResourceMetadata):
    stream: Name


class StreamManifest(BaseModel):
    """A JetStream stream, as declared in git."""

    model_config = STRICT
    apiVersion: Literal["jsops/v1"]
    kind: Literal["Stream"]
    metadata: ResourceMetadata
    spec: StreamSpec = Field(default_factory=StreamSpec)


class ConsumerManifest(BaseModel):
    """A durable JetStream consumer of a stream, as declared in git."""

    model_config = STRICT
    apiVersion: Literal["jsops/v1"]
    kind: Literal["Consumer"]
    metadata: ConsumerMetadata
    spec: ConsumerSpec = Field(default_factory=ConsumerSpec)


class AccountMetadata(BaseModel):
    model_config = STRICT
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    environments: list[str] | None = Field(default=None, min_length=1)
    prevent_destroy: bool = False


class AccountManifest(BaseModel):
    """An operator-mode account (its JWT), as declared in git."""

    model_config = STRICT
    apiVersion: Literal["jsops/v1"]
    kind: Literal["Account"]
    metadata: AccountMetadata
    spec: AccountSpec = Field(default_factory=AccountSpec)


class BucketMetadata(ResourceMetadata):
    name: BucketName


class KeyValueManifest(BaseModel):
    """A Key-Value bucket (the stream ``KV_<name>``), as declared in git."""

    model_config = STRICT
    apiVersion: Literal["jsops/v1"]
    kind: Literal["KeyValue"]
    metadata: BucketMetadata
    spec: KeyValueSpec = Field(default_factory=KeyValueSpec)


class ObjectStoreManifest(BaseModel):
    """An Object Store bucket (the stream ``OBJ_<name>``), as declared in git."""

    model_config = STRICT
    apiVersion: Literal["jsops/v1"]
    kind: Literal["ObjectStore"]
    metadata: BucketMetadata
    spec: ObjectStoreSpec = Field(default_factory=ObjectStoreSpec)


Manifest = (
    StreamManifest | ConsumerManifest | AccountManifest | KeyValueManifest | ObjectStoreManifest
)
BucketSpec = KeyValueSpec | ObjectStoreSpec

# kind -> model; one JSON Schema per kind is generated from this table.
KINDS: dict[Kind, type[Manifest]] = {
    Kind.STREAM: StreamManifest,
    Kind.CONSUMER: ConsumerManifest,
    Kind.ACCOUNT: AccountManifest,
    Kind.KEY_VALUE: KeyValueManifest,
    Kind.OBJECT_STORE: ObjectStoreManifest,
}
# Kinds that are a JetStream stream underneath (reconciler.buckets builds them).
BUCKET_KINDS = (Kind.KEY_VALUE, Kind.OBJECT_STORE)

# Names jsops keeps for itself, never a manifest's (validate refuses them): the apply
# lock (reconciler.lock) is the KV bucket LOCK_BUCKET, stream LOCK_STREAM, in the
# environment's account, or in operator mode in jsops' own account LOCK_ACCOUNT.
LOCK_BUCKET = "jsops_lock"
LOCK_STREAM = f"KV_{LOCK_BUCKET}"
LOCK_ACCOUNT = "JSOPS"

# kind -> dotted field path -> "duration" | "size": the fields people read in human units
# (render, export), read from the models' Duration and Size types.
_STREAM_UNITS = unit_paths(StreamSpec)
UNIT_PATHS: dict[Kind, dict[str, str]] = {
    Kind.STREAM: _STREAM_UNITS,
    Kind.CONSUMER: unit_paths(ConsumerSpec),
    # a bucket's diff: bucket fields, and ``stream.<field>`` for what no bucket field covers
    **{
        kind: {**unit_paths(spec), **{f"stream.{k}": v for k, v in _STREAM_UNITS.items()}}
        for kind, spec in ((Kind.KEY_VALUE, KeyValueSpec), (Kind.OBJECT_STORE, ObjectStoreSpec))
    },
}


@dataclass(frozen=True, order=True, slots=True)
class Address:
    """What a resource is, independent of where it is declared.

    ``stream`` is set for consumers only; ``account`` is None for the connection's account.
    """

    kind: Kind
    name: str
    stream: str | None = None
    account: str | None = None

    def __str__(self) -> str:
        prefix = f"{self.account}:" if self.account else ""
        if self.stream:
            return f"{self.kind} {prefix}{self.stream}/{self.name}"
        return f"{self.kind} {prefix}{self.name}"

    @property
    def target(self) -> str:
        """The ``--target KIND/NAME`` spelling (consumers: ``Consumer/STREAM/NAME``)."""
        if self.stream:
            return f"{self.kind}/{self.stream}/{self.name}"
        return f"{self.kind}/{self.name}"


@dataclass(slots=True)
class Resource:
    """A validated desired resource with where it was declared."""

    address: Address
    manifest: Manifest
    location: Location
    document: Document | None = field(default=None, repr=False, compare=False)
    # False for a document whose own fields are wrong (``validate.declared_identity``):
    # only its address, metadata and location are real; never planned.
    checked: bool = field(default=True, repr=False, compare=False)

    @property
    def spec(self) -> StreamSpec | ConsumerSpec | AccountSpec | KeyValueSpec | ObjectStoreSpec:
        return self.manifest.spec

    @property
    def metadata(self) -> ResourceMetadata | AccountMetadata:
        return self.manifest.metadata

    @property
    def tenant(self) -> str | None:
        """``metadata.tenant`` (an Account has none)."""
        meta = self.manifest.metadata
        return meta.tenant if isinstance(meta, ResourceMetadata) else None

    def in_environment(self, env: str) -> bool:
        envs = self.manifest.metadata.environments
        return envs is None or env in envs

    def shares_environment(self, other: Resource) -> bool:
        """True when some environment has both resources (no ``environments``: all)."""
        mine, theirs = self.manifest.metadata.environments, other.manifest.metadata.environments
        return mine is None or theirs is None or bool(set(mine) & set(theirs))
