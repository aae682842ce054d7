"""The Consumer kind: nats-server 2.15 ConsumerConfig (durable consumers).

Left out on purpose: ``durable_name``/``name`` (both are ``metadata.name``), and
``direct``/``sourcing`` (internal to the server's own mirror and source consumers).
"""

from __future__ import annotations

import json
import re
from typing import Literal

from pydantic import BaseModel, Field

from reconciler.models.monitoring import ConsumerMonitoring
from reconciler.models.stream import Problem
from reconciler.models.types import (
    STRICT,
    Duration,
    Int,
    LiteralSubject,
    Size,
    Subject,
    Timestamp,
)
from reconciler.subjects import covers

_SAMPLE_FREQ = re.compile(r"^\d+%?$")


class ConsumerSpec(BaseModel):
    """``spec`` of a Consumer manifest. Absent (None) means the server default."""

    model_config = STRICT
    description: str | None = Field(default=None, max_length=4096)
    deliver_policy: (
        Literal["all", "last", "new", "by_start_sequence", "by_start_time", "last_per_subject"]
        | None
    ) = None
    opt_start_seq: Int | None = Field(default=None, ge=0)
    opt_start_time: Timestamp | None = None
    ack_policy: Literal["none", "all", "explicit", "flow_control"] | None = None
    ack_wait: Duration | None = None
    max_deliver: Int | None = Field(default=None, ge=-1)
    backoff: list[Duration] | None = None
    filter_subject: Subject | None = None
    filter_subjects: list[Subject] | None = None
    replay_policy: Literal["instant", "original"] | None = None
    rate_limit_bps: Int | None = Field(default=None, ge=0)
    sample_freq: str | None = None
    max_waiting: Int | None = Field(default=None, ge=0)
    max_ack_pending: Int | None = Field(default=None, ge=-1)
    flow_control: bool | None = None
    headers_only: bool | None = None
    max_batch: Int | None = Field(default=None, ge=0)
    max_expires: Duration | None = None
    max_bytes: Size | None = Field(default=None, ge=0)  # pedantic servers refuse -1
    deliver_subject: LiteralSubject | None = None
    deliver_group: str | None = None
    idle_heartbeat: Duration | None = None
    inactive_threshold: Duration | None = None
    num_replicas: Int | None = Field(default=None, ge=0, le=5)
    mem_storage: bool | None = None
    metadata: dict[str, str] | None = None
    monitoring: ConsumerMonitoring | None = None
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
            out.append(
                (("filter_subjects",), "filter_subject and filter_subjects are mutually exclusive")
            )
        policy = self.deliver_policy
        if policy == "by_start_sequence" and not self.opt_start_seq:
            out.append(
                (("deliver_policy",), "deliver_policy: by_start_sequence requires opt_start_seq")
            )
        if policy == "by_start_time" and self.opt_start_time is None:
            out.append(
                (("deliver_policy",), "deliver_policy: by_start_time requires opt_start_time")
            )
        if self.opt_start_seq and policy != "by_start_sequence":
            out.append(
                (("opt_start_seq",), "opt_start_seq requires deliver_policy: by_start_sequence")
            )
        if self.opt_start_time is not None and policy != "by_start_time":
            out.append(
                (("opt_start_time",), "opt_start_time requires deliver_policy: by_start_time")
            )
        if policy == "last_per_subject" and not self.filters:
            out.append(
                (
                    ("deliver_policy",),
                    "deliver_policy: last_per_subject requires filter_subject or filter_subjects",
                )
            )
        out += self._filter_overlaps()
        if self.monitoring is not None:
            out += [(("monitoring", *p), m) for p, m in self.monitoring.problems(self.metadata)]
            if self.monitoring.pinned and self.priority_policy != "pinned_client":
                out.append(
                    (
                        ("monitoring", "pinned"),
                        "pinned requires priority_policy: pinned_client",
                    )
                )
        if self.flow_control and not self.idle_heartbeat and self.ack_policy != "flow_control":
            out.append((("flow_control",), "flow_control requires idle_heartbeat"))
        if self.ack_policy == "flow_control":
            out += self._ack_flow_control_problems()
        if self.is_push and self.ack_policy == "none" and self.max_ack_pending:
            out.append(
                (("max_ack_pending",), "max_ack_pending requires an ack_policy other than none")
            )
        if not self.is_push:
            for key in ("flow_control", "idle_heartbeat", "rate_limit_bps", "deliver_group"):
                if getattr(self, key):
                    out.append(((key,), f"{key} is only for push consumers (set deliver_subject)"))
        else:
            for key in ("max_waiting", "max_batch", "max_expires", "max_bytes", "priority_groups"):
                if getattr(self, key):
                    out.append(((key,), f"{key} is only for pull consumers (no deliver_subject)"))
        if self.idle_heartbeat is not None and 0 < self.idle_heartbeat < 100_000_000:
            out.append((("idle_heartbeat",), "idle_heartbeat must be at least 100ms"))
        if self.max_expires is not None and 0 < self.max_expires < 1_000_000:
            out.append((("max_expires",), "max_expires must be at least 1ms"))
        if self.backoff and min(self.backoff) <= 0:
            out.append((("backoff",), "backoff durations must be greater than 0"))
        if self.backoff and self.ack_wait and self.ack_wait != self.backoff[0]:
            out.append(
                (
                    ("ack_wait",),
                    "ack_wait must equal the first backoff step (the server uses backoff[0] "
                    "as ack_wait): leave ack_wait out",
                )
            )
        if self.priority_timeout and self.priority_policy in (None, "none"):
            out.append((("priority_timeout",), "priority_timeout requires a priority_policy"))
        steps = len(self.backoff or ())
        if steps and self.max_deliver is not None and 0 < self.max_deliver < steps:
            out.append(
                (
                    ("backoff",),
                    f"backoff has {steps} steps but max_deliver is {self.max_deliver}: "
                    f"max_deliver must be at least {steps} (or -1)",
                )
            )
        if self.sample_freq is not None and not _SAMPLE_FREQ.match(self.sample_freq):
            out.append(
                (
                    ("sample_freq",),
                    f'sample_freq {json.dumps(self.sample_freq)} must be "N" or "N%"',
                )
            )
        if self.priority_policy not in (None, "none") and not self.priority_groups:
            out.append(
                (
                    ("priority_policy",),
                    f"priority_policy: {self.priority_policy} requires priority_groups",
                )
            )
        if self.priority_groups and self.priority_policy in (None, "none"):
            out.append((("priority_groups",), "priority_groups requires a priority_policy"))
        if self.priority_groups and len(self.priority_groups) != 1:
            out.append((("priority_groups",), "the server supports exactly one priority group"))
        return out

    def _filter_overlaps(self) -> list[Problem]:
        """The server refuses a filter that another filter of the consumer already covers."""
        out: list[Problem] = []
        filters = self.filter_subjects or []
        for i, subject in enumerate(filters):
            for j, other in enumerate(filters):
                if i != j and covers(other, subject) and (subject != other or j < i):
                    out.append(
                        (
                            ("filter_subjects", i),
                            f'filter "{subject}" overlaps "{other}" '
                            "(the filters of one consumer must not overlap)",
                        )
                    )
                    break
        return out

    def _ack_flow_control_problems(self) -> list[Problem]:
        """ack_policy: flow_control (2.14) is for push consumers with 1s heartbeats only."""
        out: list[Problem] = []
        why = "ack_policy: flow_control"
        if not self.is_push:
            out.append((("ack_policy",), f"{why} requires a push consumer (set deliver_subject)"))
        if self.flow_control is False:
            out.append((("flow_control",), f"{why} requires flow_control: true"))
        if self.idle_heartbeat is not None and self.idle_heartbeat != 1_000_000_000:
            out.append((("idle_heartbeat",), f"{why} requires idle_heartbeat: 1s"))
        for key in ("ack_wait", "backoff"):
            if getattr(self, key):
                out.append(((key,), f"{why} rules out {key}"))
        if self.max_deliver is not None and self.max_deliver > 0:
            out.append((("max_deliver",), f"{why} rules out max_deliver"))
        if self.max_ack_pending is not None and self.max_ack_pending < 0:
            out.append((("max_ack_pending",), f"{why} requires max_ack_pending > 0"))
        return out
