"""Buckets: KeyValue / ObjectStore specs <-> the streams the NATS clients build.

A bucket is a stream underneath, built exactly as nats.go (``jetstream/kv.go``
``prepareKeyValueConfig``, ``jetstream/object.go`` ``prepareObjectStoreConfig``) and
ADR-8 / ADR-20 build it, so client bucket APIs and the nats CLI work on it unchanged:

* KeyValue ``B``: stream ``KV_B`` on ``$KV.B.>``, ``max_msgs_per_subject = history``
  (default 1), ``max_age = ttl``, ``max_msg_size = max_value_size``,
  ``allow_rollup_hdrs``, ``deny_delete``, ``allow_direct``, ``discard: new``,
  ``max_msgs``/``max_consumers`` -1, a duplicate window of min(2m, ttl), and with
  ``limit_marker_ttl`` (2.11+) ``allow_msg_ttl`` + ``subject_delete_marker_ttl``. A mirror
  has no subjects and ``mirror_direct`` (in one domain: the origin's ``allow_direct``,
  which the server requires); a source of bucket ``O`` gets the subject
  transform ``$KV.O.>`` -> ``$KV.B.>`` (not for a same-named bucket in another domain).
* ObjectStore ``B``: stream ``OBJ_B`` on ``$O.B.C.>`` and ``$O.B.M.>``,
  ``allow_rollup_hdrs``, ``allow_direct``, ``discard: new``.

The pipeline plans a bucket as that stream (:func:`lower`: the same sends, defaults,
mutability table and version gates as any stream), then speaks of it in bucket terms
(:func:`to_bucket_terms`): the address is ``KeyValue/B``, diff paths are bucket fields
(``history``, ``ttl``), and a stream field no bucket field covers shows as
``stream.<field>`` (e.g. someone turned ``deny_delete`` off by hand).

Two fields the clients disagree on: nats.py leaves ``allow_direct`` off unless
``direct: true`` (nats.go always sets it: the default here), and sets ``allow_msg_ttl``
on every bucket (nats.go only with ``limit_marker_ttl``). ``allow_msg_ttl`` cannot be
turned off, so a live bucket keeps it (:func:`keep_live_choices`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from reconciler.diff import diff_config
from reconciler.errors import Diagnostic, Location
from reconciler.models import (
    BUCKET_KINDS,
    Address,
    KeyValueManifest,
    KeyValueSpec,
    Kind,
    ObjectStoreManifest,
    ObjectStoreSpec,
    Resource,
    StreamManifest,
    StreamSpec,
)
from reconciler.models.envelope import ResourceMetadata
from reconciler.normalize import DIGEST_KEY, canonical_stream, plain, stream_api_config

TWO_MINUTES = 120 * 10**9


@dataclass(frozen=True)
class BucketKind:
    """One bucket kind: its stream name prefix and bucket field -> stream field."""

    kind: Kind
    prefix: str
    fields: dict[str, str]

    def stream_name(self, bucket: str) -> str:
        return f"{self.prefix}{bucket}"


KEY_VALUE = BucketKind(
    Kind.KEY_VALUE,
    "KV_",
    {
        "description": "description",
        "history": "max_msgs_per_subject",
        "ttl": "max_age",
        "max_bytes": "max_bytes",
        "max_value_size": "max_msg_size",
        "storage": "storage",
        "replicas": "num_replicas",
        "compression": "compression",
        "direct": "allow_direct",
        "placement": "placement",
        "republish": "republish",
        "mirror": "mirror",
        "sources": "sources",
        "limit_marker_ttl": "subject_delete_marker_ttl",
        "metadata": "metadata",
    },
)
OBJECT_STORE = BucketKind(
    Kind.OBJECT_STORE,
    "OBJ_",
    {
        "description": "description",
        "ttl": "max_age",
        "max_bytes": "max_bytes",
        "storage": "storage",
        "replicas": "num_replicas",
        "compression": "compression",
        "placement": "placement",
        "metadata": "metadata",
    },
)
BUCKETS: dict[Kind, BucketKind] = {b.kind: b for b in (KEY_VALUE, OBJECT_STORE)}
assert set(BUCKETS) == set(BUCKET_KINDS)


def kv_subjects(bucket: str) -> str:
    return f"$KV.{bucket}.>"


def obj_subjects(bucket: str) -> list[str]:
    return [f"$O.{bucket}.C.>", f"$O.{bucket}.M.>"]


# ---------------------------------------------------------------- addresses


def stream_address(address: Address) -> Address:
    """The address of the stream a resource is (a bucket's ``KV_``/``OBJ_`` stream)."""
    bucket = BUCKETS.get(address.kind)
    if bucket is None:
        return address
    return Address(Kind.STREAM, bucket.stream_name(address.name), account=address.account)


def live_address(name: str, config: dict[str, Any], account: str | None = None) -> Address:
    """What a live stream is: a client-made bucket (``KeyValue/B``, ``ObjectStore/B``)
    when its name and subjects are a client's layout, else the stream itself."""
    if name.startswith("KV_"):
        bucket = name[3:]
        subjects = config.get("subjects") or []
        if (config.get("max_msgs_per_subject") or 0) >= 1 and (
            subjects == [kv_subjects(bucket)] or (config.get("mirror") and not subjects)
        ):
            return Address(Kind.KEY_VALUE, bucket, account=account)
    if name.startswith("OBJ_"):
        bucket = name[4:]
        if sorted(config.get("subjects") or []) == sorted(obj_subjects(bucket)):
            return Address(Kind.OBJECT_STORE, bucket, account=account)
    return Address(Kind.STREAM, name, account=account)


def check_clashes(resources: Iterable[Resource]) -> list[Diagnostic]:
    """A Stream manifest named like a bucket's stream (``KV_config`` and KeyValue
    ``config``) declares that stream twice."""
    resources = list(resources)
    streams = {r.address: r for r in resources if r.address.kind == Kind.STREAM}
    problems = []
    for res in resources:
        if res.address.kind not in BUCKETS:
            continue
        stream = streams.get(stream_address(res.address))
        if stream is not None and stream.shares_environment(res):
            problems.append(
                Diagnostic(
                    res.location,
                    f"{res.address} is the stream {stream.address.name}, which is declared "
                    f"at {stream.location}",
                    code="duplicate",
                    related=(stream.location,),
                )
            )
    return problems


# ---------------------------------------------------------------- bucket -> stream


def _compressed(value: str | bool | None) -> str | None:
    if value is None:
        return None
    return "s2" if value in (True, "s2") else "none"


def stream_spec(kind: Kind, bucket: str, spec: KeyValueSpec | ObjectStoreSpec) -> StreamSpec:
    """The StreamSpec of the stream the clients build for a bucket spec."""
    ttl = spec.ttl or 0
    fields: dict[str, Any] = {
        "description": spec.description,
        "max_age": ttl,
        "max_bytes": spec.max_bytes if spec.max_bytes else -1,
        "storage": spec.storage or "file",
        "num_replicas": spec.replicas or 1,
        "compression": _compressed(spec.compression),
        "placement": plain(spec.placement),
        "allow_rollup_hdrs": True,
        "allow_direct": True,
        "discard": "new",
        "metadata": spec.metadata,
        "monitoring": spec.monitoring,
    }
    if isinstance(spec, ObjectStoreSpec):
        fields["subjects"] = obj_subjects(bucket)
        return StreamSpec.model_validate({k: v for k, v in fields.items() if v is not None})
    fields.update(
        max_msgs_per_subject=spec.history or 1,
        max_msg_size=spec.max_value_size or -1,
        deny_delete=True,
        duplicate_window=ttl if 0 < ttl < TWO_MINUTES else TWO_MINUTES,
        max_msgs=-1,
        max_consumers=-1,
        republish=plain(spec.republish),
    )
    if spec.direct is not None:
        fields["allow_direct"] = spec.direct
    if spec.limit_marker_ttl:
        fields["allow_msg_ttl"] = True
        fields["subject_delete_marker_ttl"] = spec.limit_marker_ttl
    if spec.mirror is not None:
        fields["mirror"] = {**_origin(spec.mirror), "name": f"KV_{spec.mirror.bucket}"}
        if spec.mirror.domain or spec.mirror.external:
            fields["mirror_direct"] = True
        # else the plan copies the origin's allow_direct (the server insists on it)
    else:
        fields["subjects"] = [kv_subjects(bucket)]
    if spec.sources:
        sources = []
        for source in spec.sources:
            out = {**_origin(source), "name": f"KV_{source.bucket}"}
            remote = source.domain or source.external
            if remote is None or source.bucket != bucket:
                out["subject_transforms"] = [
                    {"src": kv_subjects(source.bucket), "dest": kv_subjects(bucket)}
                ]
            sources.append(out)
        fields["sources"] = sources
    return StreamSpec.model_validate({k: v for k, v in fields.items() if v is not None})


def _origin(source: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = plain(source)
    return dumped


def lower(res: Resource) -> Resource:
    """A bucket resource as the stream resource the plan builds (same location)."""
    manifest = res.manifest
    assert isinstance(manifest, (KeyValueManifest, ObjectStoreManifest))
    meta = manifest.metadata
    stream_meta = ResourceMetadata.model_construct(
        name=BUCKETS[res.address.kind].stream_name(meta.name),
        tenant=meta.tenant,
        account=meta.account,
        environments=meta.environments,
        prevent_destroy=meta.prevent_destroy,
    )
    stream = StreamManifest.model_construct(
        apiVersion="jsops/v1",
        kind=Kind.STREAM.value,
        metadata=stream_meta,
        spec=stream_spec(res.address.kind, meta.name, manifest.spec),
    )
    return Resource(stream_address(res.address), stream, res.location, res.document, res.checked)


def _bucket_resource(kind: Kind, name: str, spec: dict[str, Any]) -> Resource:
    """A bucket resource from a spec in API units (export checks what it builds)."""
    model = KeyValueManifest if kind == Kind.KEY_VALUE else ObjectStoreManifest
    manifest = model.model_validate(
        {"apiVersion": "jsops/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}
    )
    return Resource(Address(kind, name), manifest, Location("<live>"))


def lower_all(resources: Iterable[Resource]) -> tuple[list[Resource], dict[Address, Resource]]:
    """Streams, with every bucket lowered to its stream (declaration order), and
    stream address -> bucket resource for the lowered ones."""
    streams: list[Resource] = []
    buckets: dict[Address, Resource] = {}
    for res in resources:
        if res.address.kind == Kind.STREAM:
            streams.append(res)
        elif res.address.kind in BUCKETS:
            lowered = lower(res)
            buckets[lowered.address] = res
            streams.append(lowered)
    return streams, buckets


def keep_live_choices(send: dict[str, Any], live_info: dict[str, Any] | None) -> None:
    """Keep ``allow_msg_ttl`` on a live bucket that has it (nats.py sets it on every
    bucket; it cannot be turned off)."""
    if live_info is not None and (live_info.get("config") or {}).get("allow_msg_ttl"):
        send["allow_msg_ttl"] = True


# ---------------------------------------------------------------- stream -> bucket terms


def _bucket_source(source: dict[str, Any], bucket: str) -> dict[str, Any]:
    """A canonical stream source in bucket terms: the origin bucket's name, without the
    subject transform the clients add."""
    out = dict(source)
    origin = str(out.get("name", ""))
    origin = origin.removeprefix("KV_")
    out["name"] = origin
    standard = [{"src": kv_subjects(origin), "dest": kv_subjects(bucket)}]
    if out.get("subject_transforms") == standard:
        del out["subject_transforms"]
    return out


def view(kind: Kind, bucket: str, canon: dict[str, Any]) -> dict[str, Any]:
    """A canonical stream config in bucket terms: bucket fields, then under ``stream``
    every stream field no bucket field covers."""
    spec = BUCKETS[kind]
    out: dict[str, Any] = {}
    for field, stream_field in spec.fields.items():
        value = canon.get(stream_field)
        if field == "mirror" and value:
            value = _bucket_source(value, bucket)
        elif field == "sources" and value:
            value = [_bucket_source(s, bucket) for s in value]
        out[field] = value
    covered = set(spec.fields.values())
    out["stream"] = {k: v for k, v in canon.items() if k not in covered and k != "name"}
    return out


def _bucket_path(kind: Kind, stream_field: str) -> str:
    for field, mapped in BUCKETS[kind].fields.items():
        if mapped == stream_field:
            return field
    return f"stream.{stream_field}"


def spec_config(res: Resource) -> dict[str, Any]:
    """What a create shows: the bucket spec as written, in API units."""
    spec = res.spec
    assert isinstance(spec, (KeyValueSpec, ObjectStoreSpec))
    dumped: dict[str, Any] = plain(spec)
    return dumped


def to_bucket_terms(
    draft: dict[str, Any],
    bucket: Resource,
    send: dict[str, Any],
    live_canon: dict[str, Any] | None,
    canon: dict[str, Any],
) -> None:
    """Rewrite a stream change's draft (``plan.build_plan``) in the bucket's terms:
    address, diff paths and values, replace paths and references."""
    kind, name = bucket.address.kind, bucket.address.name
    draft["address"] = bucket.address
    if live_canon is None:
        spec = spec_config(bucket)
        spec["metadata"] = {
            k: v for k, v in (send.get("metadata") or {}).items() if k != DIGEST_KEY
        }
        shown = {field: spec[field] for field in BUCKETS[kind].fields if field in spec}
        draft["diff"] = tuple(diff_config({}, shown))
    elif draft.get("diff"):
        draft["diff"] = tuple(diff_config(view(kind, name, live_canon), view(kind, name, canon)))
    if draft.get("replace_paths"):
        draft["replace_paths"] = tuple(_bucket_path(kind, p) for p in draft["replace_paths"])
    draft["external_refs"] = tuple(_bucket_ref(r) for r in draft.get("external_refs", ()))


def _bucket_ref(ref: str) -> str:
    """``Stream KV_config (domain leaf)`` -> ``KeyValue config (domain leaf)``."""
    if ref.startswith("Stream KV_"):
        return "KeyValue " + ref.removeprefix("Stream KV_")
    return ref


def bucket_keys(buckets: dict[Address, Resource]) -> dict[str, str]:
    """Change key of each lowered stream -> the key of its bucket's change."""
    return {str(stream): str(res.address) for stream, res in buckets.items()}


# ---------------------------------------------------------------- live -> manifest


def export_spec(address: Address, config: dict[str, Any]) -> dict[str, Any] | None:
    """The bucket spec (API units) of a live client-made bucket stream, such that the
    bucket it declares builds the same stream (it re-plans noop); None when the stream
    differs from any bucket jsops would build (export it as a Stream then)."""
    kind, name = address.kind, address.name
    live_canon = canonical_stream(config)
    current = view(kind, name, live_canon)
    base = _canonical_of(kind, name, {}, config)
    default = view(kind, name, base)
    spec: dict[str, Any] = {}
    for field in BUCKETS[kind].fields:
        if field == "metadata" or current[field] == default[field]:
            continue
        spec[field] = _spec_value(field, current[field])
    try:
        built = _canonical_of(kind, name, spec, config)
    except ValueError:  # e.g. a history above 64: not a bucket a client would make
        return None
    live_canon["metadata"] = built["metadata"]
    return spec if built == live_canon else None


def _spec_value(field: str, value: Any) -> Any:
    if field == "mirror":
        return _export_source(value)
    if field == "sources":
        return [_export_source(s) for s in value]
    return value


def _export_source(source: dict[str, Any]) -> dict[str, Any]:
    out = dict(source)
    api = str((out.get("external") or {}).get("api") or "")
    parts = api.split(".")
    only_api = set(out.get("external") or {}) == {"api"}
    if only_api and len(parts) == 3 and parts[0] == "$JS" and parts[2] == "API":
        out.pop("external")
        out["domain"] = parts[1]
    return out


def _canonical_of(
    kind: Kind, name: str, spec: dict[str, Any], live_config: dict[str, Any]
) -> dict[str, Any]:
    """The canonical stream a bucket spec builds next to a live config (no metadata)."""
    send = stream_api_config(lower(_bucket_resource(kind, name, spec)), "")
    keep_live_choices(send, {"config": live_config})
    send["metadata"] = {}
    return canonical_stream(send)
