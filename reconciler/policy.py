"""Project policy: tenants, subject overlap, quotas, required fields, environments.

Rules across the validated resources of one environment, driven by ``jsops.yaml``
(see docs/tenants.md). Every function collects every violation and returns located
Diagnostics; nothing here talks to a server.

- :func:`check_policy`: everything below for declared resources (call it after
  ``validate.check_resources``), i.e. :func:`check_tenancy`, :func:`check_overlap`,
  :func:`check_quotas`, :func:`check_required` and :func:`check_replicas`;
- :func:`check_live_overlap`: declared streams against live streams no manifest
  declares (plan time, after the live state is read, before the plan is built).

``allow_delete: false`` of an environment is one of the refusals of
``reconciler.refusals`` (apply's one gate).

``jsops.yaml``'s own rules are ``environments.check_project_config``. Overlap is found
with ``subjects.SubjectTrie`` (near-linear in the number of subjects).

Message formats (``str(Diagnostic)``; the location is the offending key or list item,
or ``metadata.name`` when a whole resource is at fault)::

    metadata.tenant: unknown tenant "T" (did you mean "U"? | tenants of the project: ...)
    PATH: subject "S" is not under the prefix "P" of tenant "T"
    metadata.name: stream name "N" does not match the pattern "RE" of tenant "T"
    metadata.account: resources of tenant "T" belong to account "A", not "B"
    subject "S" of stream "B" overlaps subject "R" of stream "A" at FILE:L:C
    subject "S" of stream "B" overlaps subject "R" of stream "A" on the server, which no
        manifest declares
    tenant "T" declares N streams, over its quota of Q (tenants.T.quota.max_streams)
    tenant "T" declares N consumers, over its quota of Q (tenants.T.quota.max_consumers)
    stream "N" has no max_bytes limit, but tenant "T" has a byte quota of Q
        (tenants.T.quota.max_bytes)
    tenant "T" streams reserve X (max_bytes x num_replicas), over its quota of Q
        (tenants.T.quota.max_bytes)
    spec.num_replicas: N replicas, over the quota of Q of tenant "T"
        (tenants.T.quota.max_replicas)
    spec.num_replicas: N replicas, over the maximum of Q in environment "E"
        (environments.E.max_replicas)
    stream "N" must set spec.F (policy.require)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from reconciler.diagnostics import did_you_mean, dotted
from reconciler.environments import Project, ProjectConfig
from reconciler.errors import Diagnostic, KeyPath, Location
from reconciler.models import (
    BUCKET_KINDS,
    Address,
    ConsumerSpec,
    KeyValueSpec,
    Kind,
    ObjectStoreSpec,
    Resource,
    StreamSpec,
)
from reconciler.models.envelope import ResourceMetadata
from reconciler.models.units import format_size
from reconciler.subjects import SubjectTrie, under_prefix

__all__ = [
    "check_live_overlap",
    "check_overlap",
    "check_policy",
    "check_quotas",
    "check_replicas",
    "check_required",
    "check_tenancy",
    "stream_subjects",
    "subject_path",
]


# --------------------------------------------------------------------------- subjects


def stream_subjects(res: Resource) -> list[str]:
    """The subjects a stream listens on: ``subjects``, or the server's default
    ``[<name>]`` for a stream without subjects, mirror or sources; a mirror or a
    stream that only sources has none. See :func:`subject_path` for where each is."""
    spec = res.spec
    assert isinstance(spec, StreamSpec)
    if spec.subjects:
        return spec.subjects
    if spec.mirror is None and not spec.sources:
        return [res.address.name]
    return []


def subject_path(res: Resource, position: int) -> KeyPath | None:
    """The manifest path of ``stream_subjects(res)[position]`` (None: the default
    subject, located at ``metadata.name``)."""
    spec = res.spec
    return (
        ("spec", "subjects", position) if isinstance(spec, StreamSpec) and spec.subjects else None
    )


# --------------------------------------------------------------------------- helpers


def _config(project: ProjectConfig | Project | None) -> ProjectConfig:
    if project is None:
        return ProjectConfig()
    return project.config if isinstance(project, Project) else project


def _at(res: Resource, path: KeyPath | None) -> Location:
    """Where ``path`` is in the resource's document: a list item, a scalar's value.

    None is the resource itself: its ``metadata.name`` key (``Resource.location``),
    where problems of a whole resource (a missing field, a count) are reported.
    """
    doc = res.document
    if doc is None or path is None:
        return res.location
    if isinstance(path[-1], int):
        return doc.locate(path)
    return doc.locate_value(path)


def _streams(resources: Sequence[Resource]) -> list[Resource]:
    return [
        r for r in resources if r.address.kind == Kind.STREAM and isinstance(r.spec, StreamSpec)
    ]


def _jetstream(resources: Sequence[Resource]) -> list[Resource]:
    """Streams, buckets and consumers (Accounts have no tenant, subjects or replicas)."""
    return [r for r in resources if r.address.kind in (Kind.STREAM, Kind.CONSUMER, *BUCKET_KINDS)]


def _stored(resources: Sequence[Resource]) -> list[Resource]:
    """Streams and buckets (a bucket is a stream on the server: quotas count it as one)."""
    return [r for r in resources if r.address.kind in (Kind.STREAM, *BUCKET_KINDS)]


def _declared_stream(
    by_name: dict[tuple[str | None, str], list[Resource]], res: Resource, name: str
) -> Resource | None:
    """The declared stream ``name`` in ``res``'s account that shares an environment."""
    for stream in by_name.get((res.address.account, name), ()):
        if stream.shares_environment(res):
            return stream
    return None


def _index(streams: Sequence[Resource]) -> dict[tuple[str | None, str], list[Resource]]:
    by_name: dict[tuple[str | None, str], list[Resource]] = {}
    for stream in streams:
        by_name.setdefault((stream.address.account, stream.address.name), []).append(stream)
    return by_name


def _replicas(value: int | None) -> int:
    return max(1, value or 0)  # absent and 0 are one replica


# --------------------------------------------------------------------------- tenancy


def _tenant_subjects(res: Resource) -> list[tuple[str, KeyPath]]:
    """Every subject ``res`` captures, filters, republishes or transforms to."""
    spec = res.spec
    out: list[tuple[str, KeyPath]] = []
    if isinstance(spec, ConsumerSpec):
        if spec.filter_subject:
            out.append((spec.filter_subject, ("spec", "filter_subject")))
        for i, subject in enumerate(spec.filter_subjects or ()):
            out.append((subject, ("spec", "filter_subjects", i)))
        if spec.deliver_subject:
            out.append((spec.deliver_subject, ("spec", "deliver_subject")))
        return out
    if isinstance(spec, KeyValueSpec) and spec.republish is not None:  # $KV.<bucket>.> is its own
        if spec.republish.src:
            out.append((spec.republish.src, ("spec", "republish", "src")))
        out.append((spec.republish.dest, ("spec", "republish", "dest")))
    if not isinstance(spec, StreamSpec):
        return out
    for i, subject in enumerate(spec.subjects or ()):
        out.append((subject, ("spec", "subjects", i)))
    for key in ("subject_transform", "republish"):
        transform = getattr(spec, key)
        if transform is None:
            continue
        if transform.src:  # absent: every stored subject (already checked)
            out.append((transform.src, ("spec", key, "src")))
        out.append((transform.dest, ("spec", key, "dest")))
    for path, source in spec.origins():
        base = ("spec", *path)
        if source.filter_subject:
            out.append((source.filter_subject, (*base, "filter_subject")))
        for j, transform in enumerate(source.subject_transforms or ()):
            out.append((transform.dest, (*base, "subject_transforms", j, "dest")))
        if source.consumer is not None and source.consumer.deliver_subject:
            out.append((source.consumer.deliver_subject, (*base, "consumer", "deliver_subject")))
    return out


def _outside(prefix: str, subjects: Iterable[str]) -> list[str]:
    return [s for s in subjects if not under_prefix(prefix, s)]


def _quoted(subjects: Sequence[str]) -> str:
    return ", ".join(f'"{s}"' for s in subjects)


def check_tenancy(
    resources: Sequence[Resource], project: ProjectConfig | Project | None
) -> list[Diagnostic]:
    """Known tenants; subjects under the tenant's prefix; account; stream name pattern.

    Besides the subjects a resource names, what it takes in whole is checked too
    when the origin is declared here: a consumer without a filter reads every
    subject of its stream, a source or mirror without ``filter_subject`` or
    ``subject_transforms`` (and not external) takes every subject of its origin.
    """
    config = _config(project)
    problems: list[Diagnostic] = []
    by_name = _index(_streams(resources))
    known = sorted(config.tenants)
    for res in _jetstream(resources):
        tenant = res.tenant
        if tenant is None:
            continue
        if tenant not in config.tenants:
            problems.append(
                Diagnostic(
                    _at(res, ("metadata", "tenant")),
                    f'metadata.tenant: unknown tenant "{tenant}"',
                    code="unknown_tenant",
                    hint=did_you_mean(tenant, known)
                    or (
                        f"tenants of the project: {', '.join(known)}"
                        if known
                        else "no tenants are declared in jsops.yaml"
                    ),
                )
            )
            continue
        tconf = config.tenants[tenant]
        prefix = config.tenant_prefix(tenant)
        for subject, path in _tenant_subjects(res):
            if not under_prefix(prefix, subject):
                problems.append(
                    Diagnostic(
                        _at(res, path),
                        f'{dotted(path)}: subject "{subject}" is not under the prefix '
                        f'"{prefix}" of tenant "{tenant}"',
                        code="tenant_prefix",
                    )
                )
        problems += _whole_origins(res, tenant, prefix, by_name)
        meta = res.metadata
        account = meta.account if isinstance(meta, ResourceMetadata) else None
        if tconf.account is not None and account is not None and account != tconf.account:
            problems.append(
                Diagnostic(
                    _at(res, ("metadata", "account")),
                    f'metadata.account: resources of tenant "{tenant}" belong to account '
                    f'"{tconf.account}", not "{account}"',
                    code="tenant_account",
                )
            )
        what, pattern = "stream", tconf.stream_pattern
        if res.address.kind in BUCKET_KINDS:
            what, pattern = "bucket", tconf.bucket_pattern
        if (
            pattern is not None
            and res.address.kind != Kind.CONSUMER
            and re.fullmatch(pattern, res.address.name) is None
        ):
            problems.append(
                Diagnostic(
                    _at(res, ("metadata", "name")),
                    f'metadata.name: {what} name "{res.address.name}" does not match the '
                    f'pattern "{pattern}" of tenant "{tenant}"',
                    code=f"{what}_name_pattern",
                )
            )
    return problems


def _whole_origins(
    res: Resource,
    tenant: str,
    prefix: str,
    by_name: dict[tuple[str | None, str], list[Resource]],
) -> list[Diagnostic]:
    """A filterless consumer or source of another tenant's (or the platform's) stream."""
    spec = res.spec
    problems: list[Diagnostic] = []
    if isinstance(spec, ConsumerSpec):
        if spec.filters or not res.address.stream:
            return []
        stream = _declared_stream(by_name, res, res.address.stream)
        if stream is None or stream.tenant == tenant:
            return []  # unknown stream: validate reports it; same tenant: already checked
        outside = _outside(prefix, stream_subjects(stream))
        if outside:
            problems.append(
                Diagnostic(
                    _at(res, ("metadata", "stream")),
                    f"metadata.stream: without a filter the consumer reads every subject of "
                    f'stream "{stream.address.name}", and {_quoted(outside)} '
                    f'{"is" if len(outside) == 1 else "are"} not under the prefix "{prefix}" '
                    f'of tenant "{tenant}"',
                    code="tenant_prefix",
                )
            )
        return problems
    if not isinstance(spec, StreamSpec):
        return problems  # a bucket's origins are buckets: $KV.<bucket>.> is its own
    for path, source in spec.origins():
        base = ("spec", *path)
        if (
            source.filter_subject
            or source.subject_transforms
            or source.consumer is not None
            or source.remote is not None
        ):
            continue
        origin = _declared_stream(by_name, res, source.name)
        if origin is None or origin.tenant == tenant:
            continue
        outside = _outside(prefix, stream_subjects(origin))
        if outside:
            what = "mirror" if base == ("spec", "mirror") else "source"
            problems.append(
                Diagnostic(
                    _at(res, (*base, "name")),
                    f"{dotted(base)}: without filter_subject or subject_transforms the "
                    f'{what} takes every subject of stream "{origin.address.name}", and '
                    f"{_quoted(outside)} {'is' if len(outside) == 1 else 'are'} not under "
                    f'the prefix "{prefix}" of tenant "{tenant}"',
                    code="tenant_prefix",
                )
            )
    return problems


# --------------------------------------------------------------------------- overlap


def check_overlap(resources: Sequence[Resource]) -> list[Diagnostic]:
    """Streams of one account whose subjects overlap (the server refuses them, 10065).

    Reported at the later stream's subject (declaration order), naming the earlier
    stream and where its subject is; once per (subject, other stream) pair, with the
    other stream's first overlapping subject. Streams that never share an environment
    do not clash. Exact and wildcard-aware.
    """
    streams = _streams(resources)
    subjects_of = [stream_subjects(res) for res in streams]
    tries: dict[str | None, SubjectTrie[int]] = {}
    problems: list[Diagnostic] = []
    for idx, res in enumerate(streams):
        trie = tries.setdefault(res.address.account, SubjectTrie())
        subjects = subjects_of[idx]
        for at, subject in enumerate(subjects):
            clashes = trie.overlapping(subject)
            if not clashes:
                continue
            first: dict[int, int] = {}  # other stream -> position of its first clash
            for pattern, other_idx in clashes:
                other = streams[other_idx]
                if other.address == res.address or not other.shares_environment(res):
                    continue  # a duplicate declaration (reported as such), or disjoint envs
                position = subjects_of[other_idx].index(pattern)
                first[other_idx] = min(position, first.get(other_idx, position))
            for other_idx in sorted(first):
                other = streams[other_idx]
                position = first[other_idx]
                pattern = subjects_of[other_idx][position]
                where = _at(other, subject_path(other, position))
                problems.append(
                    Diagnostic(
                        _at(res, subject_path(res, at)),
                        f'subject "{subject}" of stream "{res.address.name}" overlaps subject '
                        f'"{pattern}" of stream "{other.address.name}" at {where}',
                        code="subjects_overlap",
                        related=(where,),
                    )
                )
        for subject in subjects:
            trie.insert(subject, idx)
    return problems


def check_live_overlap(
    resources: Sequence[Resource],
    live_streams: dict[str, dict[str, Any]],
    *,
    account: str | None = None,
) -> list[Diagnostic]:
    """Declared streams whose subjects overlap a live stream that no manifest declares.

    ``live_streams`` is name -> StreamInfo as the server sends it (``LiveState.streams``),
    all of one account: ``account`` (None: the connection's), compared with the declared
    streams of that account. A live stream declared under the same name is skipped:
    the plan updates or replaces it.
    """
    declared = {r.address.name for r in _streams(resources) if r.address.account == account}
    trie: SubjectTrie[str] = SubjectTrie()
    for name, info in live_streams.items():
        if name in declared:
            continue
        for subject in (info.get("config") or {}).get("subjects") or ():
            trie.insert(subject, name)
    problems: list[Diagnostic] = []
    if not len(trie):
        return problems
    for res in _streams(resources):
        if res.address.account != account:
            continue
        for at, subject in enumerate(stream_subjects(res)):
            first: dict[str, str] = {}
            for pattern, name in trie.overlapping(subject):
                first.setdefault(name, pattern)
            for name in sorted(first):
                problems.append(
                    Diagnostic(
                        _at(res, subject_path(res, at)),
                        f'subject "{subject}" of stream "{res.address.name}" overlaps subject '
                        f'"{first[name]}" of stream "{name}" on the server, which no manifest '
                        "declares",
                        code="live_subjects_overlap",
                    )
                )
    return problems


# --------------------------------------------------------------------------- quotas


def _consumer_tenant(res: Resource, by_name: dict[tuple[str | None, str], list[Resource]]) -> str:
    if res.tenant is not None:
        return res.tenant
    stream = _declared_stream(by_name, res, res.address.stream or "")
    return (stream.tenant if stream else None) or ""


def _by_tenant(resources: Iterable[tuple[str, Resource]]) -> dict[str, list[Resource]]:
    """Resources grouped by tenant, one per address (the first): counts are per environment."""
    seen: set[Address] = set()
    out: dict[str, list[Resource]] = {}
    for tenant, res in resources:
        if res.address not in seen:
            seen.add(res.address)
            out.setdefault(tenant, []).append(res)
    return out


def check_quotas(
    resources: Sequence[Resource], project: ProjectConfig | Project | None
) -> list[Diagnostic]:
    """Tenants' quotas: max_streams, max_consumers, max_bytes, max_replicas.

    A stream counts toward its ``metadata.tenant``; a consumer toward its own tenant,
    or when it has none, its stream's. ``max_bytes`` bounds the sum over the tenant's
    streams of ``max_bytes x num_replicas`` (absent replicas: 1), so every stream of a
    tenant with a byte quota must set a ``max_bytes`` limit.
    """
    config = _config(project)
    problems: list[Diagnostic] = []
    if not any(t.quota for t in config.tenants.values()):
        return problems
    streams = _stored(resources)
    by_name = _index(streams)
    streams_of = _by_tenant((s.tenant, s) for s in streams if s.tenant)
    consumers_of = _by_tenant(
        (_consumer_tenant(r, by_name), r) for r in resources if r.address.kind == Kind.CONSUMER
    )
    for tenant, tconf in config.tenants.items():
        quota = tconf.quota
        if quota is None:
            continue
        key = f"tenants.{tenant}.quota"
        owned = streams_of.get(tenant, [])
        consumers = consumers_of.get(tenant, [])
        for what, items, limit in (
            ("streams", owned, quota.limit("max_streams")),
            ("consumers", consumers, quota.limit("max_consumers")),
        ):
            if limit is not None and len(items) > limit:
                over = items[limit]
                problems.append(
                    Diagnostic(
                        over.location,
                        f'tenant "{tenant}" declares {len(items)} {what}, over its quota of '
                        f"{limit} ({key}.max_{what})",
                        code="quota",
                        related=tuple(r.location for r in items[limit + 1 :]),
                    )
                )
        max_bytes = quota.limit("max_bytes")
        if max_bytes is not None:
            problems += _byte_quota(tenant, owned, max_bytes, key)
        max_replicas = quota.limit("max_replicas")
        if max_replicas is not None:
            for res in [*owned, *consumers]:
                problem = _replica_problem(
                    res,
                    max_replicas,
                    f'the quota of {max_replicas} of tenant "{tenant}"',
                    f"{key}.max_replicas",
                )
                if problem:
                    problems.append(problem)
    return problems


def _byte_quota(
    tenant: str, streams: Sequence[Resource], max_bytes: int, key: str
) -> list[Diagnostic]:
    problems: list[Diagnostic] = []
    total = 0
    first_over: Resource | None = None
    for res in streams:
        spec = res.spec
        assert isinstance(spec, (StreamSpec, KeyValueSpec, ObjectStoreSpec))
        if spec.max_bytes is None or spec.max_bytes < 0:
            path: KeyPath | None = ("spec", "max_bytes") if spec.max_bytes is not None else None
            what = "stream" if res.address.kind == Kind.STREAM else "bucket"
            problems.append(
                Diagnostic(
                    _at(res, path),
                    f'{what} "{res.address.name}" has no max_bytes limit, but tenant "{tenant}" '
                    f"has a byte quota of {format_size(max_bytes)} ({key}.max_bytes)",
                    code="quota",
                )
            )
            continue
        total += spec.max_bytes * _replicas(spec.num_replicas)
        if first_over is None and total > max_bytes:
            first_over = res
    if first_over is not None:
        problems.append(
            Diagnostic(
                _at(first_over, ("spec", "max_bytes")),
                f'tenant "{tenant}" streams reserve {format_size(total)} (max_bytes x '
                f"num_replicas), over its quota of {format_size(max_bytes)} ({key}.max_bytes)",
                code="quota",
            )
        )
    return problems


def _replica_problem(res: Resource, limit: int, what: str, key: str) -> Diagnostic | None:
    spec = res.spec
    field = "num_replicas"
    replicas = spec.num_replicas if isinstance(spec, (StreamSpec, ConsumerSpec)) else None
    if isinstance(spec, (KeyValueSpec, ObjectStoreSpec)):
        field, replicas = "replicas", spec.replicas
    if replicas is None or replicas <= limit:
        return None
    return Diagnostic(
        _at(res, ("spec", field)),
        f"spec.{field}: {replicas} replicas, over {what} ({key})",
        code="max_replicas",
    )


# --------------------------------------------------------------------------- require, env


def check_required(
    resources: Sequence[Resource], project: ProjectConfig | Project | None
) -> list[Diagnostic]:
    """``policy.require``: stream fields every stream must set (any value, -1 and 0 too)."""
    config = _config(project)
    required = [f for f in config.policy.require if f in StreamSpec.model_fields]
    problems: list[Diagnostic] = []
    if not required:
        return problems
    for res in _streams(resources):
        for field in required:
            if getattr(res.spec, field) is None:
                problems.append(
                    Diagnostic(
                        res.location,
                        f'stream "{res.address.name}" must set spec.{field} (policy.require)',
                        code="policy_require",
                    )
                )
    return problems


def check_replicas(
    resources: Sequence[Resource], project: ProjectConfig | Project | None, env: str | None
) -> list[Diagnostic]:
    """``environments.<env>.max_replicas``: no stream or consumer asks for more."""
    config = _config(project)
    env_cfg = config.environments.get(env) if env is not None else None
    if env_cfg is None or env_cfg.max_replicas is None:
        return []
    limit = env_cfg.max_replicas
    problems = []
    for res in _jetstream(resources):
        if env is not None and not res.in_environment(env):
            continue
        problem = _replica_problem(
            res,
            limit,
            f'the maximum of {limit} in environment "{env}"',
            f"environments.{env}.max_replicas",
        )
        if problem:
            problems.append(problem)
    return problems


# --------------------------------------------------------------------------- all of it


def check_policy(
    resources: Sequence[Resource],
    project: ProjectConfig | Project | None = None,
    env: str | None = None,
    *,
    overlap: bool = True,
) -> list[Diagnostic]:
    """Every policy rule over the declared resources of one environment, sorted.

    ``resources`` are validated resources (``validate.validate_loaded`` output: with
    ``env``, those of that environment). ``overlap=False`` leaves out
    :func:`check_overlap` (for a caller that checks overlap elsewhere).
    """
    config = _config(project)
    problems = check_tenancy(resources, config)
    if overlap:
        problems += check_overlap(resources)
    problems += check_quotas(resources, config)
    problems += check_required(resources, config)
    problems += check_replicas(resources, config, env)
    return sorted(problems, key=Diagnostic.sort_key)
