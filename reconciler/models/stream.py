"""The Stream kind: nats-server 2.15 StreamConfig, with manifest conveniences.

Field names are the server's JSON names (``nats stream info --json``). Fields left
out on purpose: ``name`` (it is ``metadata.name``), ``template_owner`` (removed in
2.14), ``placement.preferred`` (the server refuses it in a config, 10052).
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, Field

from reconciler.models.monitoring import StreamMonitoring
from reconciler.models.types import (
    STRICT,
    Duration,
    Int,
    Limit,
    LiteralSubject,
    Name,
    Size,
    Subject,
    Timestamp,
    valid_domain,
)
from reconciler.subjects import (
    MIRROR,
    REPUBLISH,
    SOURCE,
    TRANSFORM,
    covers,
    overlaps,
    transform_problems,
)

Problem = tuple[tuple[str | int, ...], str]


class SubjectTransform(BaseModel):
    model_config = STRICT
    src: Subject | None = None
    dest: str

    def problems(self, where: str, release: str | None = None) -> list[Problem]:
        """The destination as the server checks it (``reconciler.subjects``)."""
        return dest_problems(self.src, self.dest, where, release)


def dest_problems(
    src: str | None, dest: str, where: str, release: str | None = None
) -> list[Problem]:
    """A mapping's ``dest`` problems, at ``("dest",)``: those of every supported
    release, or (``release``) of that one."""
    shown = json.dumps(dest, ensure_ascii=False)
    found = transform_problems(src, dest, where=where, release=release or None)
    return [(("dest",), f"dest {shown}: {m}") for m in found]


class External(BaseModel):
    model_config = STRICT
    api: LiteralSubject
    deliver: str | None = None


class SourceConsumer(BaseModel):
    """A pre-created durable sourcing consumer (2.14, ADR-60)."""

    model_config = STRICT
    name: Name
    deliver_subject: LiteralSubject | None = None


class StreamSource(BaseModel):
    """A mirror or a source. ``domain: X`` is shorthand for ``external.api: $JS.X.API``."""

    model_config = STRICT
    name: Name
    domain: str | None = Field(
        default=None, description="shorthand for external.api $JS.<domain>.API"
    )
    opt_start_seq: Int | None = Field(default=None, ge=0)
    opt_start_time: Timestamp | None = None
    filter_subject: Subject | None = None
    subject_transforms: list[SubjectTransform] | None = None
    external: External | None = None
    consumer: SourceConsumer | None = None

    @property
    def remote(self) -> str | None:
        """Where the origin is when not in this stream's domain: the ``domain`` name or
        the ``external.api`` prefix; None for an origin beside this stream."""
        return self.domain or (self.external.api if self.external else None)

    def problems(self, *, mirror: bool = False) -> list[Problem]:
        out = remote_problems(self.domain, self.external)
        if self.filter_subject and self.subject_transforms:
            out.append(
                (
                    ("filter_subject",),
                    "filter_subject and subject_transforms are mutually exclusive",
                )
            )
        if self.consumer is not None:
            for key in ("opt_start_seq", "opt_start_time", "filter_subject"):
                if getattr(self, key) is not None:
                    out.append(((key,), f"{key} cannot be combined with consumer"))
        return out + self.transform_problems(mirror=mirror)

    def transform_problems(
        self, *, mirror: bool = False, release: str | None = None
    ) -> list[Problem]:
        # 2.10 checks a local source's transforms as 2.11+ check every origin's
        where = MIRROR if mirror or self.remote else SOURCE
        out: list[Problem] = []
        for i, transform in enumerate(self.subject_transforms or ()):
            found = transform.problems(where, release)
            out += [(("subject_transforms", i, *p), m) for p, m in found]
        return out


class Placement(BaseModel):
    model_config = STRICT
    cluster: str | None = None
    tags: list[str] | None = None


class RePublish(BaseModel):
    model_config = STRICT
    src: Subject | None = None
    dest: str
    headers_only: bool | None = None


class ConsumerLimits(BaseModel):
    model_config = STRICT
    inactive_threshold: Duration | None = None
    max_ack_pending: Int | None = Field(default=None, ge=-1)


class StreamSpec(BaseModel):
    """``spec`` of a Stream manifest. Absent (None) means the server default."""

    model_config = STRICT
    description: str | None = Field(default=None, max_length=4096)
    subjects: list[Subject] | None = None
    retention: Literal["limits", "interest", "workqueue"] | None = None
    max_consumers: Limit | None = Field(default=None, ge=-1)
    max_msgs: Limit | None = Field(default=None, ge=-1)
    max_bytes: Size | None = None
    max_age: Duration | None = None
    max_msgs_per_subject: Limit | None = Field(default=None, ge=-1)
    max_msg_size: Size | None = Field(default=None, le=2**31 - 1)
    discard: Literal["old", "new"] | None = None
    storage: Literal["file", "memory"] | None = None
    num_replicas: Int | None = Field(default=None, ge=0, le=5)
    no_ack: bool | None = None
    duplicate_window: Duration | None = None
    placement: Placement | None = None
    mirror: StreamSource | None = None
    sources: list[StreamSource] | None = None
    compression: Literal["none", "s2"] | None = None
    first_seq: Int | None = Field(default=None, ge=0)
    subject_transform: SubjectTransform | None = None
    republish: RePublish | None = None
    allow_direct: bool | None = None
    mirror_direct: bool | None = None
    discard_new_per_subject: bool | None = None
    sealed: bool | None = None
    deny_delete: bool | None = None
    deny_purge: bool | None = None
    allow_rollup_hdrs: bool | None = None
    consumer_limits: ConsumerLimits | None = None
    allow_msg_ttl: bool | None = None
    subject_delete_marker_ttl: Duration | None = None
    allow_msg_counter: bool | None = None
    allow_atomic: bool | None = None
    allow_msg_schedules: bool | None = None
    persist_mode: Literal["default", "async"] | None = None
    allow_batched: bool | None = None
    metadata: dict[str, str] | None = None
    monitoring: StreamMonitoring | None = None

    def origins(self) -> list[tuple[tuple[str | int, ...], StreamSource]]:
        """The mirror, then every source, each with its path in the spec
        (``("mirror",)``, ``("sources", i)``): the one walk over a stream's origins."""
        out: list[tuple[tuple[str | int, ...], StreamSource]] = []
        if self.mirror is not None:
            out.append((("mirror",), self.mirror))
        out += [(("sources", i), source) for i, source in enumerate(self.sources or ())]
        return out

    def problems(self) -> list[Problem]:
        """Cross-field rules the server enforces at create time, checked offline."""
        out: list[Problem] = self._subject_problems() + self.transform_problems()
        if self.monitoring is not None:
            out += [(("monitoring", *p), m) for p, m in self.monitoring.problems(self.metadata)]
        if self.mirror is not None:
            if self.subjects:
                out.append(
                    (
                        ("subjects",),
                        "mirror and subjects are mutually exclusive "
                        "(a mirror takes its subjects from its origin)",
                    )
                )
            if self.sources:
                out.append((("sources",), "mirror and sources are mutually exclusive"))
            for key in (
                "first_seq",
                "subject_delete_marker_ttl",
                "allow_msg_schedules",
                "allow_msg_counter",
                "allow_atomic",
            ):
                if getattr(self, key):
                    out.append(((key,), f"{key} is not allowed on a mirror"))
            out += [(("mirror", *p), m) for p, m in self.mirror.problems(mirror=True)]
        for i, source in enumerate(self.sources or ()):
            out += [(("sources", i, *p), m) for p, m in source.problems()]
        if self.max_age and self.max_age < 100_000_000:
            out.append((("max_age",), "max_age must be at least 100ms (or 0 for unlimited)"))
        if self.duplicate_window:
            if self.duplicate_window < 100_000_000:
                out.append((("duplicate_window",), "duplicate_window must be at least 100ms"))
            elif self.max_age and self.duplicate_window > self.max_age:
                out.append((("duplicate_window",), "duplicate_window must not exceed max_age"))
        if self.discard_new_per_subject:
            if self.discard != "new":
                out.append(
                    (("discard_new_per_subject",), "discard_new_per_subject requires discard: new")
                )
            if not self.max_msgs_per_subject or self.max_msgs_per_subject <= 0:
                out.append(
                    (
                        ("discard_new_per_subject",),
                        "discard_new_per_subject requires max_msgs_per_subject > 0",
                    )
                )
        if self.allow_rollup_hdrs and self.deny_purge:
            out.append(
                (("allow_rollup_hdrs",), "allow_rollup_hdrs and deny_purge are mutually exclusive")
            )
        if (
            self.subject_delete_marker_ttl is not None
            and 0 < self.subject_delete_marker_ttl < 10**9
        ):
            out.append(
                (("subject_delete_marker_ttl",), "subject_delete_marker_ttl must be at least 1s")
            )
        if self.subject_delete_marker_ttl and self.allow_msg_ttl is False:
            out.append((("allow_msg_ttl",), "subject_delete_marker_ttl requires allow_msg_ttl"))
        if self.allow_msg_counter:
            if self.retention not in (None, "limits"):
                out.append((("allow_msg_counter",), "allow_msg_counter requires retention: limits"))
            if self.discard == "new":
                out.append((("allow_msg_counter",), "allow_msg_counter rules out discard: new"))
            if self.allow_msg_ttl or self.subject_delete_marker_ttl:
                out.append((("allow_msg_counter",), "allow_msg_counter rules out message TTLs"))
        # (allow_msg_schedules with allow_msg_counter or discard: new is refused only from
        # 2.12.10 and 2.14.2: a plan error by release, mutability.STREAM_COMBINATION_RULES)
        if self.allow_msg_schedules and self.sources:
            out.append((("allow_msg_schedules",), "allow_msg_schedules rules out sources"))
        if self.persist_mode == "async":
            if self.storage == "memory":
                out.append((("persist_mode",), "persist_mode: async requires storage: file"))
            if self.num_replicas and self.num_replicas > 1:
                out.append((("persist_mode",), "persist_mode: async requires num_replicas: 1"))
            if self.allow_atomic:
                out.append((("persist_mode",), "persist_mode: async rules out allow_atomic"))
        if self.sealed and self.deny_delete is False:
            pass  # the server forces deny_delete on seal; normalization handles it
        return out

    def transform_problems(self, release: str | None = None) -> list[Problem]:
        """subject_transform and republish destinations (an origin's transforms are
        :meth:`StreamSource.problems`', or with ``release`` here too); republish must
        not feed the stream itself. ``release``: as that release checks them."""
        out: list[Problem] = []
        if self.subject_transform is not None:
            out += [
                (("subject_transform", *p), m)
                for p, m in self.subject_transform.problems(TRANSFORM, release)
            ]
        if release:
            for path, origin in self.origins():
                found = origin.transform_problems(mirror=path == ("mirror",), release=release)
                out += [((*path, *p), m) for p, m in found]
        republish = self.republish
        if republish is None:
            return out
        src, dest = republish.src, republish.dest
        transform = self.subject_transform
        if (
            dest == ">"
            and src in (None, "", ">")
            and transform is not None
            and self.subjects is not None
            and len(self.subjects) == 1
            and transform.src == self.subjects[0]
        ):
            # The server's implicit republish of the transformed subjects (2.11.11+,
            # 2.12.2+; a cycle before), which it refuses in pedantic mode, and jsops
            # always sends pedantic: the manifest names what the server would make.
            shown = json.dumps(transform.dest, ensure_ascii=False)
            out.append(
                (
                    ("republish", "dest"),
                    'republish ">" to ">" is the implicit republish of subject_transform, '
                    "which the server refuses in pedantic mode (jsops always uses it): write "
                    f"republish: {{src: {shown}, dest: {shown}}}",
                )
            )
            return out
        other = next((s for s in self.subjects or () if overlaps(dest, s)), None)
        if other is not None:
            shown = json.dumps(dest, ensure_ascii=False)
            out.append(
                (
                    ("republish", "dest"),
                    f'dest {shown} overlaps subject "{other}" of the stream: '
                    "republished messages would be stored again (a cycle)",
                )
            )
            return out
        out += [(("republish", *p), m) for p, m in dest_problems(src, dest, REPUBLISH, release)]
        return out

    def _subject_problems(self) -> list[Problem]:
        """checkStreamCfg: no duplicate or overlapping subjects, none inside the JS API."""
        out: list[Problem] = []
        subjects = self.subjects or []
        for i, subject in enumerate(subjects):
            if covers("$JS.API.>", subject):
                out.append((("subjects", i), f'subject "{subject}" overlaps the JetStream API'))
            if subject in subjects[:i]:
                out.append((("subjects", i), f'subject "{subject}" is listed twice'))
                continue
            other = next((o for o in subjects[:i] if overlaps(o, subject)), None)
            if other is not None:
                out.append((("subjects", i), f'subject "{subject}" overlaps "{other}"'))
        return out


def remote_problems(domain: str | None, external: External | None) -> list[Problem]:
    """The rules of an origin's ``domain`` (a mirror's or a source's, of a stream or a
    bucket): a valid domain name, and not together with ``external``."""
    out: list[Problem] = []
    if domain is not None and external is not None:
        out.append(
            (
                ("domain",),
                "domain and external are mutually exclusive (domain is shorthand for external.api)",
            )
        )
    if domain is not None and not valid_domain(domain):
        out.append((("domain",), f"invalid JetStream domain {json.dumps(domain)}"))
    return out
