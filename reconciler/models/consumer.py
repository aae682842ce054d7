"""The Consumer kind: nats-server 2.15 ConsumerConfig (durable consumers).

Left out on purpose: ``durable_name``/``name`` (both are ``metadata.name``), and
``direct``/``sourcing`` (internal to the server's own mirror and source consumers).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field

from reconciler.models.stream import Problem
from reconciler.models.types import STRICT, Duration, LiteralSubject, Size, Subject, Timestamp

_SAMPLE_FREQ = re.compile(r"^\d+%?$")


class ConsumerSpec(BaseModel):
    """``spec`` of a Consumer manifest. Absent (None) means the server default."""

    model_config = STRICT
    description: str | None = Field(default=None, max_length=4096)
    deliver_policy: (
        Literal["all", "last", "new", "by_start_sequence", "by_start_time", "last_per_subject"]
        | None
    ) = None
    opt_start_seq: int | None = Field(default=None, ge=0)
    opt_start_time: Timestamp | None = None
    ack_policy: Literal["none", "all", "explicit", "flow_control"] | None = None
    ack_wait: Duration | None = None
    max_deliver: int | None = Field(default=None, ge=-1)
    backoff: list[Duration] | None = None
    filter_subject: Subject | None = None
    filter_subjects: list[Subject] | None = None
    replay_policy: Literal["instant", "original"] | None = None
    rate_limit_bps: int | None = Field(default=None, ge=0)
    sample_freq: str | None = None
    max_waiting: int | None = Field(default=None, ge=0)
    max_ack_pending: int | None = Field(default=None, ge=-1)
    flow_control: bool | None = None
    headers_only: bool | None = None
    max_batch: int | None = Field(default=None, ge=0)
    max_expires: Duration | None = None
    max_bytes: Size | None = None
    deliver_subject: LiteralSubject | None = None
    deliver_group: str | None = None
    idle_heartbeat: Duration | None = None
    inactive_threshold: Duration | None = None
    num_replicas: int | None = Field(default=None, ge=0, le=5)
    mem_storage: bool | None = None
    metadata: dict[str, str] | None = None
    pause_until: Timestamp | None = None
    priority_groups: list[str] | None = None
    priority_policy: Literal["none", "overflow", "pinned_client", "prioritized"] | None = None
    priority_timeout: Duration | None = None

    @property
    def is_push(self) -> bool:
        return bool(self.deliver_subject)

    @property
    def filters(self) -> list[str]:
        if self.filter_subjects:
            return list(self.filter_subjects)
        return [self.filter_subject] if self.filter_subject else []

    def problems(self) -> list[Problem]:
        """Cross-field rules the server enforces, checked offline."""
        out: list[Problem] = []
        if self.filter_subject is not None and self.filter_subjects is not None:
            out.append((("filter_subjects",), "filter_subject and filter_subjects are mutually "
                        "exclusive"))
        policy = self.deliver_policy
        if policy == "by_start_sequence" and self.opt_start_seq is None:
            out.append((("deliver_policy",), "deliver_policy: by_start_sequence requires "
                        "opt_start_seq"))
        if policy == "by_start_time" and self.opt_start_time is None:
            out.append((("deliver_policy",), "deliver_policy: by_start_time requires "
                        "opt_start_time"))
        if self.opt_start_seq is not None and policy != "by_start_sequence":
            out.append((("opt_start_seq",), "opt_start_seq requires deliver_policy: "
                        "by_start_sequence"))
        if self.opt_start_time is not None and policy != "by_start_time":
            out.append((("opt_start_time",), "opt_start_time requires deliver_policy: "
                        "by_start_time"))
        if self.flow_control and not self.idle_heartbeat and self.ack_policy != "flow_control":
            out.append((("flow_control",), "flow_control requires idle_heartbeat"))
        if not self.is_push:
            for key in ("flow_control", "idle_heartbeat", "rate_limit_bps", "deliver_group"):
                if getattr(self, key):
                    out.append(((key,), f"{key} is only for push consumers (set deliver_subject)"))
        else:
            for key in ("max_waiting", "max_batch", "max_expires", "max_bytes",
                        "priority_groups"):
                if getattr(self, key):
                    out.append(((key,), f"{key} is only for pull consumers (no deliver_subject)"))
        if self.idle_heartbeat is not None and 0 < self.idle_heartbeat < 100_000_000:
            out.append((("idle_heartbeat",), "idle_heartbeat must be at least 100ms"))
        if self.max_expires is not None and 0 < self.max_expires < 1_000_000:
            out.append((("max_expires",), "max_expires must be at least 1ms"))
        if self.backoff:
            if self.max_deliver is None or (0 < self.max_deliver <= len(self.backoff)):
                out.append((("backoff",), f"backoff has {len(self.backoff)} steps: max_deliver "
                            "must be greater than that"))
        if self.sample_freq is not None and not _SAMPLE_FREQ.match(self.sample_freq.strip()):
            out.append((("sample_freq",), f'sample_freq "{self.sample_freq}" must be "N" or "N%"'))
        if self.priority_policy not in (None, "none") and not self.priority_groups:
            out.append((("priority_policy",), f"priority_policy: {self.priority_policy} "
                        "requires priority_groups"))
        if self.priority_groups and self.priority_policy in (None, "none"):
            out.append((("priority_groups",), "priority_groups requires a priority_policy"))
        if self.priority_groups and len(self.priority_groups) != 1:
            out.append((("priority_groups",), "the server supports exactly one priority group"))
        return out
