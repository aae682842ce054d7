"""The Account kind: an operator-mode account JWT, declared like any other resource.

JetStream limits use the names ``$JS.API.INFO`` reports (``max_memory``,
``max_storage``...), not the JWT's (``mem_storage``, ``disk_storage``...): what a
manifest says is what a user of the account sees. Accounts in exports/imports are
referenced by name; jsops puts in their public keys.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field

from reconciler.models.stream import Problem
from reconciler.models.types import STRICT, Duration, Size, Subject

_TIER = re.compile(r"^R[1-5]$")
_ACCOUNT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class JetStreamLimits(BaseModel):
    """JetStream limits of an account (or of one replica tier). Absent = unlimited."""

    model_config = STRICT
    max_memory: Size | None = None
    max_storage: Size | None = None
    max_streams: int | None = Field(default=None, ge=-1)
    max_consumers: int | None = Field(default=None, ge=-1)
    max_ack_pending: int | None = Field(default=None, ge=-1)
    memory_max_stream_bytes: Size | None = None
    storage_max_stream_bytes: Size | None = None
    max_bytes_required: bool | None = None


class ConnectionLimits(BaseModel):
    """Connection limits of an account. Absent = unlimited (-1)."""

    model_config = STRICT
    conn: int | None = Field(default=None, ge=-1)
    subs: int | None = Field(default=None, ge=-1)
    data: Size | None = None
    payload: Size | None = None
    leaf: int | None = Field(default=None, ge=-1)


class Export(BaseModel):
    model_config = STRICT
    name: str | None = None
    subject: Subject
    type: Literal["stream", "service"]
    response_type: Literal["Singleton", "Stream", "Chunked"] | None = None
    response_threshold: Duration | None = None
    token_req: bool | None = None
    advertise: bool | None = None
    description: str | None = None


class Import(BaseModel):
    model_config = STRICT
    name: str | None = None
    subject: Subject
    account: str = Field(pattern=_ACCOUNT_NAME, description="the exporting account's name")
    type: Literal["stream", "service"]
    local_subject: Subject | None = None
    share: bool | None = None


class AccountSpec(BaseModel):
    """``spec`` of an Account manifest."""

    model_config = STRICT
    description: str | None = None
    jetstream: JetStreamLimits | None = None
    tiers: dict[str, JetStreamLimits] | None = None
    limits: ConnectionLimits | None = None
    exports: list[Export] | None = None
    imports: list[Import] | None = None

    def problems(self) -> list[Problem]:
        out: list[Problem] = []
        if self.jetstream is not None and self.tiers:
            out.append(
                (
                    ("tiers",),
                    "jetstream and tiers are mutually exclusive (flat or tiered JetStream limits)",
                )
            )
        for tier in self.tiers or {}:
            if not _TIER.match(tier):
                out.append((("tiers", tier), f'tier "{tier}" must be R1..R5'))
        for key, limits in [("jetstream", self.jetstream)] + [
            (f"tiers.{t}", v) for t, v in (self.tiers or {}).items()
        ]:
            if limits is not None and limits.max_memory == 0 and limits.max_storage == 0:
                out.append(
                    (
                        (*key.split("."), "max_storage"),
                        "max_memory and max_storage "
                        "both 0 disable JetStream: leave the limits out instead",
                    )
                )
        return out
