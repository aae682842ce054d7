"""The KeyValue and ObjectStore kinds: the NATS clients' bucket configs.

Field names are those of nats.go's ``jetstream.KeyValueConfig`` /
``jetstream.ObjectStoreConfig`` (and nats.py's ``KeyValueConfig``), without ``bucket``
(it is ``metadata.name``). ``reconciler.buckets`` builds each into the stream the
clients build (``KV_<bucket>``, ``OBJ_<bucket>``).
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from reconciler.models.monitoring import StreamMonitoring
from reconciler.models.stream import (
    External,
    Placement,
    Problem,
    RePublish,
    dest_problems,
    remote_problems,
)
from reconciler.models.types import STRICT, Duration, Int, Size, Timestamp, checked
from reconciler.subjects import REPUBLISH

# nats.go validBucketRe / nats.py VALID_BUCKET_RE
BUCKET_NAME = re.compile(r"^[a-zA-Z0-9_-]+$")
KV_HISTORY_MAX = 64  # nats.go KeyValueMaxHistory


def check_bucket_name(value: str) -> str | None:
    """Why ``value`` is not a bucket name the clients accept, or None."""
    if BUCKET_NAME.fullmatch(value) is None:
        return (
            f"bucket name {json.dumps(value, ensure_ascii=False)} may only contain "
            'letters, digits, "_" and "-"'
        )
    if len(value) > 251:  # KV_/OBJ_ + name within the 255 of a stream name
        return f"bucket name is {len(value)} characters long, the limit is 251"
    return None


BucketName = Annotated[str, AfterValidator(checked(check_bucket_name, "bad_name"))]
Compression = Literal["none", "s2"] | bool


class BucketSource(BaseModel):
    """A mirror or source of a KeyValue bucket: ``name`` is the origin *bucket*
    (a ``KV_`` prefix is accepted and ignored, as nats.go does)."""

    model_config = STRICT
    name: str
    domain: str | None = Field(
        default=None, description="shorthand for external.api $JS.<domain>.API"
    )
    opt_start_seq: Int | None = Field(default=None, ge=0)
    opt_start_time: Timestamp | None = None
    external: External | None = None

    @property
    def bucket(self) -> str:
        return self.name.removeprefix("KV_")

    def problems(self) -> list[Problem]:
        out: list[Problem] = []
        problem = check_bucket_name(self.bucket)
        if problem:
            out.append((("name",), problem))
        return out + remote_problems(self.domain, self.external)


class _BucketSpec(BaseModel):
    model_config = STRICT
    description: str | None = Field(default=None, max_length=4096)
    ttl: Duration | None = None
    max_bytes: Size | None = None
    storage: Literal["file", "memory"] | None = None
    replicas: Int | None = Field(default=None, ge=0, le=5)
    compression: Compression | None = None
    placement: Placement | None = None
    metadata: dict[str, str] | None = None
    monitoring: StreamMonitoring | None = None

    @property
    def num_replicas(self) -> int | None:
        """The stream's replicas (policy reads streams and buckets alike)."""
        return self.replicas

    def problems(self) -> list[Problem]:
        out: list[Problem] = []
        if self.monitoring is not None:
            out += [(("monitoring", *p), m) for p, m in self.monitoring.problems(self.metadata)]
        if self.ttl and self.ttl < 100_000_000:
            out.append((("ttl",), "ttl must be at least 100ms (or 0 for no expiry)"))
        return out


class KeyValueSpec(_BucketSpec):
    """``spec`` of a KeyValue manifest. Absent (None) means the clients' default."""

    history: Int | None = Field(default=None, ge=1, le=KV_HISTORY_MAX)
    max_value_size: Size | None = Field(default=None, le=2**31 - 1)
    direct: bool | None = Field(
        default=None, description="allow_direct of the stream (default true, as nats.go)"
    )
    republish: RePublish | None = None
    mirror: BucketSource | None = None
    sources: list[BucketSource] | None = None
    limit_marker_ttl: Duration | None = None

    def problems(self) -> list[Problem]:
        out = super().problems()
        if self.mirror is not None:
            if self.sources:
                out.append((("sources",), "mirror and sources are mutually exclusive"))
            if self.limit_marker_ttl:
                out.append((("limit_marker_ttl",), "limit_marker_ttl is not allowed on a mirror"))
            out += [(("mirror", *p), m) for p, m in self.mirror.problems()]
        for i, source in enumerate(self.sources or ()):
            out += [(("sources", i, *p), m) for p, m in source.problems()]
        if self.limit_marker_ttl is not None and 0 < self.limit_marker_ttl < 10**9:
            out.append((("limit_marker_ttl",), "limit_marker_ttl must be at least 1s"))
        if self.republish is not None:
            republish = self.republish
            out += [
                (("republish", *p), m)
                for p, m in dest_problems(republish.src, republish.dest, REPUBLISH)
            ]
        return out


class ObjectStoreSpec(_BucketSpec):
    """``spec`` of an ObjectStore manifest. Absent (None) means the clients' default."""
