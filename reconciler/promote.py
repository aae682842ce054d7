"""Promotion: reviewable manifests for one environment from another's streams.

``jsops promote --from dev --to prod --mode mirror --out manifests/promoted`` reads the
streams declared for ``dev`` (and not for ``prod``) and writes, for each one, a file of
ordinary manifests declared for ``prod`` only:

* ``mirror``: a stream that mirrors the dev stream across dev's JetStream domain
  (``mirror: {name, domain}``);
* ``source``: a stream that sources it the same way (``sources: [{name, domain}]``);
* ``copy``: the stream and its consumers re-declared, rendered with prod's ``values``.

Naming rule: the promoted stream keeps the origin's name (``--name '{name}'``; the
placeholders are ``{name}``, ``{from_env}``, ``{to_env}``). A mirror or source across
domains may share its origin's name, since each domain has its own streams; within one
domain the name must differ, which is an error here.

Limits rule (mirror and source): the retention limits of the origin are kept
(``max_age``, ``max_bytes``, ``max_msgs``, ``max_msgs_per_subject``, ``max_msg_size``,
``storage``, ``discard``, ``compression``); ``num_replicas`` is the target
environment's ``values.replicas`` when it has one, else the origin's. ``--set
FIELD=VALUE`` overrides any spec field of every promoted stream (YAML values, units
allowed: ``--set max_age=30d``).

Buckets promote the same way: a KeyValue bucket becomes a KeyValue that mirrors or
sources it (keeping ``history``, ``ttl``, ``max_bytes``, ``max_value_size``, ``storage``,
``compression``; ``replicas`` as above), or is copied; an ObjectStore is only copied
(the clients' ObjectStore config has no mirror or sources). A bucket's file is
``<name>.keyvalue.yaml`` / ``<name>.objectstore.yaml``, and ``--set`` applies to each
kind only the fields that kind has.

Destination level: with ``--check-destination`` the destination environment's server is
asked for its JetStream API level first, and a promoted field newer than it is an error
naming the field and the release that introduced it (nothing is written).

The output depends only on the manifests and the options (sorted, no timestamps), so
promoting twice with unchanged inputs writes byte-identical files.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from reconciler.environments import Project
from reconciler.errors import ManifestError, UsageError
from reconciler.export import dump_documents, humanize_spec
from reconciler.models import KeyValueSpec, Kind, ObjectStoreSpec, Resource, StreamSpec
from reconciler.mutability import fields_needing_level, release_of
from reconciler.validate import dedupe, load_desired, validate_paths

MODES = ("mirror", "source", "copy")
KEPT_LIMITS = (
    "max_age",
    "max_bytes",
    "max_msgs",
    "max_msgs_per_subject",
    "max_msg_size",
    "storage",
    "discard",
    "compression",
)
# Per kind: the spec model, the limits a mirror/source keeps, the replicas field.
SPECS: dict[Kind, type[StreamSpec | KeyValueSpec | ObjectStoreSpec]] = {
    Kind.STREAM: StreamSpec,
    Kind.KEY_VALUE: KeyValueSpec,
    Kind.OBJECT_STORE: ObjectStoreSpec,
}
KEPT: dict[Kind, tuple[str, ...]] = {
    Kind.STREAM: KEPT_LIMITS,
    Kind.KEY_VALUE: ("history", "ttl", "max_bytes", "max_value_size", "storage", "compression"),
}
REPLICAS = {Kind.STREAM: "num_replicas", Kind.KEY_VALUE: "replicas", Kind.OBJECT_STORE: "replicas"}


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``FIELD=VALUE`` pairs, VALUE read as YAML (``--set num_replicas=3``)."""
    yaml = YAML(typ="safe", pure=True)
    out: dict[str, Any] = {}
    for pair in pairs:
        field, sep, value = pair.partition("=")
        if not sep or not field.strip():
            raise UsageError(f'invalid --set "{pair}": use FIELD=VALUE')
        out[field.strip()] = yaml.load(value) if value.strip() else None
    return out


def _selected(
    resources: Sequence[Resource], select: Sequence[str], kinds: Sequence[Kind]
) -> list[Resource]:
    streams = [r for r in resources if r.address.kind in kinds]
    if not select:
        return streams
    return [r for r in streams if any(fnmatch.fnmatchcase(r.address.name, p) for p in select)]


def _spec(resource: Resource) -> dict[str, Any]:
    spec = resource.spec
    return spec.model_dump(exclude_none=True, mode="json")


def _meta(name: str, to_env: str, origin: Resource, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, **extra}
    if origin.tenant:
        meta["tenant"] = origin.tenant
    meta["environments"] = [to_env]
    return meta


def promote(
    project: Project,
    from_env: str,
    to_env: str,
    *,
    mode: str = "mirror",
    select: Sequence[str] = (),
    name_template: str = "{name}",
    overrides: dict[str, Any] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """File stem -> manifest documents for ``to_env``."""
    if mode not in MODES:
        raise UsageError(f'unknown mode "{mode}" (use {", ".join(MODES)})')
    _, source_cfg = project.environment(from_env)
    _, target_cfg = project.environment(to_env)
    overrides = overrides or {}
    unknown = [k for k in overrides if not any(k in m.model_fields for m in SPECS.values())]
    if unknown:
        raise UsageError(f"--set: unknown stream field(s): {', '.join(unknown)}")
    desired = load_desired(project, from_env)
    kinds = list(SPECS) if mode == "copy" else list(KEPT)
    origins = [r for r in _selected(desired, select, kinds) if not r.in_environment(to_env)]
    if not origins:
        raise UsageError(
            f'no stream declared for "{from_env}" (and not already for "{to_env}") matches'
        )
    domain = source_cfg.domain
    same_domain = domain == target_cfg.domain
    files: dict[str, list[dict[str, Any]]] = {}
    if mode == "copy":
        rendered = {r.address: r for r in _rendered_for(project, to_env)}
        for origin in sorted(origins, key=lambda r: r.address.name):
            stem = _stem(origin, name_template, from_env, to_env)
            files[stem] = _copy(
                origin, rendered, desired, to_env, name_template, from_env, overrides
            )
        return files
    replicas = target_cfg.values.get("replicas")
    for origin in sorted(origins, key=lambda r: r.address.name):
        name = name_template.format(name=origin.address.name, from_env=from_env, to_env=to_env)
        if name == origin.address.name and same_domain:
            raise UsageError(
                f'{origin.address}: "{from_env}" and "{to_env}" share a JetStream domain, '
                "so the promoted stream needs another name (--name '{name}_PROMOTED')"
            )
        kind = origin.address.kind
        src = _spec(origin)
        spec: dict[str, Any] = {
            "description": f"{mode.capitalize()} of {origin.address.name} from {from_env}"
        }
        reference: dict[str, Any] = {"name": origin.address.name}
        if domain and not same_domain:
            reference["domain"] = domain
        if mode == "mirror":
            spec["mirror"] = reference
        else:
            spec["sources"] = [reference]
        spec.update({k: src[k] for k in KEPT[kind] if k in src})
        field = REPLICAS[kind]
        spec[field] = int(replicas) if replicas is not None else src.get(field, 1)
        spec.update(_overrides_for(kind, overrides))
        files[_stem(origin, name_template, from_env, to_env)] = [
            {
                "apiVersion": "jsops/v1",
                "kind": kind.value,
                "metadata": _meta(name, to_env, origin),
                "spec": humanize_spec(kind, spec),
            }
        ]
    return files


def _overrides_for(kind: Kind, overrides: dict[str, Any]) -> dict[str, Any]:
    fields = SPECS[kind].model_fields
    return {k: v for k, v in overrides.items() if k in fields}


def _stem(origin: Resource, name_template: str, from_env: str, to_env: str) -> str:
    """The promoted file's stem: the promoted name (a bucket's with its kind)."""
    name = name_template.format(name=origin.address.name, from_env=from_env, to_env=to_env)
    kind = origin.address.kind
    return name if kind == Kind.STREAM else f"{name}.{kind.value.lower()}"


def _rendered_for(project: Project, env: str) -> list[Resource]:
    """Every resource, whatever its environments, rendered with ``env``'s values."""
    paths, within = project.manifest_scope()
    resources, problems = validate_paths(paths, project.variables(env), None, within=within)
    if problems:
        raise ManifestError(dedupe(problems))
    return resources


def _copy(
    origin: Resource,
    rendered: dict[Any, Resource],
    desired: Sequence[Resource],
    to_env: str,
    name_template: str,
    from_env: str,
    overrides: dict[str, Any],
) -> list[dict[str, Any]]:
    stream = rendered.get(origin.address, origin)
    name = name_template.format(name=origin.address.name, from_env=from_env, to_env=to_env)
    kind = origin.address.kind
    spec = {**_spec(stream), **_overrides_for(kind, overrides)}
    docs = [
        {
            "apiVersion": "jsops/v1",
            "kind": kind.value,
            "metadata": _meta(name, to_env, origin),
            "spec": humanize_spec(kind, spec),
        }
    ]
    consumers = sorted(
        (
            r
            for r in desired
            if kind == Kind.STREAM
            and r.address.kind == Kind.CONSUMER
            and r.address.stream == origin.address.name
        ),
        key=lambda r: r.address.name,
    )
    for consumer in consumers:
        source = rendered.get(consumer.address, consumer)
        docs.append(
            {
                "apiVersion": "jsops/v1",
                "kind": Kind.CONSUMER.value,
                "metadata": _meta(consumer.address.name, to_env, consumer, stream=name),
                "spec": humanize_spec(Kind.CONSUMER, _spec(source)),
            }
        )
    return docs


def level_problems(
    files: dict[str, list[dict[str, Any]]], api_level: int, version: str = ""
) -> list[str]:
    """One line per promoted field the destination's API level cannot accept (like
    ``nats server report downgrade``): the same check, and words, as a plan's."""
    server = f"nats-server {version}" if version else "the destination"
    out = []
    for stem, docs in sorted(files.items()):
        for doc in docs:
            kind = Kind(doc["kind"])
            for path, level in fields_needing_level(kind, doc.get("spec") or {}, api_level):
                out.append(
                    f"{stem}.yaml: {kind.value} {doc['metadata']['name']}: {path} needs "
                    f"nats-server {release_of(level)} or newer (JetStream API level {level}); "
                    f"{server} has API level {api_level}"
                )
    return out


def write_promotion(
    files: dict[str, list[dict[str, Any]]],
    out_dir: str | Path,
    header: str,
    schemas: str = "../schemas",
) -> list[Path]:
    target = Path(out_dir)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, docs in sorted(files.items()):
        path = target / f"{stem}.yaml"
        text = dump_documents(docs, schemas)
        path.write_text(f"# {header}\n" + text, encoding="utf-8")
        written.append(path)
    return written
