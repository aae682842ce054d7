"""Export: live streams and consumers -> manifests (adoption), the inverse of normalize.

A stream a NATS client made for a bucket (``KV_<b>``, ``OBJ_<b>`` in the client's
layout) is written as its KeyValue / ObjectStore manifest (``reconciler.buckets``),
when that manifest builds the same stream; otherwise as a Stream.

A field is written only when leaving it out would change the canonical config (so
server defaults, derived ones included, are left out); durations and sizes are
written in human units; ``external.api: $JS.<d>.API`` becomes ``domain: <d>``; the
owner tag is left out (jsops adds it on apply, which is how adoption shows in a plan).
One file per stream, holding the stream and its consumers.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from reconciler.buckets import export_spec as bucket_export_spec
from reconciler.buckets import live_address
from reconciler.live import LiveState
from reconciler.models import UNIT_PATHS, Kind
from reconciler.models.units import format_duration, format_size
from reconciler.mutability import LATEST_LEVEL
from reconciler.normalize import (
    CONSUMER_DEFAULTS,
    JSOPS_KEYS,
    STREAM_DEFAULTS,
    canonical_consumer,
    canonical_stream,
    paused_until,
    user_metadata,
)

SCHEMA_COMMENT = "# yaml-language-server: $schema={schemas}/manifest.schema.json\n"
_DOMAIN_API = re.compile(r"^\$JS\.([^.]+)\.API$")


def _minimal(
    config: dict[str, Any], fields: list[str], canon: Callable[[dict[str, Any]], dict[str, Any]]
) -> dict[str, Any]:
    """The smallest subset of the modeled ``fields`` of ``config`` with the same canonical form."""
    target = canon(config)
    base = {k: v for k, v in config.items() if k not in fields}
    kept = {k: config[k] for k in fields if k in config}
    for key in list(kept):
        trial = {**base, **{k: v for k, v in kept.items() if k != key}}
        if canon(trial) == target:
            del kept[key]
    return kept


def humanize_spec(kind: Kind, spec: dict[str, Any]) -> dict[str, Any]:
    """A spec in API units with its durations and sizes as people write them (``7d``)."""
    return {k: _humanize(kind, k, v) for k, v in spec.items()}


def _humanize(kind: Kind, path: str, value: Any) -> Any:
    unit = UNIT_PATHS[kind].get(path)
    if isinstance(value, dict):
        return {k: _humanize(kind, f"{path}.{k}", v) for k, v in value.items()}
    if isinstance(value, list):
        return [_humanize(kind, path, v) for v in value]
    if unit == "duration" and isinstance(value, int) and not isinstance(value, bool):
        return format_duration(value)
    if unit == "size" and isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return format_size(value)
    return value


def _source(source: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in source.items() if v not in (None, "", [], {}, 0)}
    external = {k: v for k, v in (out.get("external") or {}).items() if v}
    if external:
        match = _DOMAIN_API.match(external.get("api", ""))
        if match and set(external) == {"api"}:
            out.pop("external")
            out["domain"] = match.group(1)
        else:
            out["external"] = external
    else:
        out.pop("external", None)
    return out


def _user_metadata(config: dict[str, Any], spec: dict[str, Any]) -> None:
    """Metadata a user wrote: without the server's ``_nats.*`` keys and jsops' own."""
    meta = {k: v for k, v in user_metadata(config.get("metadata")).items() if k not in JSOPS_KEYS}
    if meta:
        spec["metadata"] = meta


def stream_spec(config: dict[str, Any], level: int = LATEST_LEVEL) -> dict[str, Any]:
    """The manifest spec of a live stream config (defaults as API level ``level`` derives)."""
    name = config["name"]
    fields = [k for k in STREAM_DEFAULTS if k != "metadata"]
    spec = _minimal(config, fields, lambda c: canonical_stream({**c, "name": name}, level))
    if "mirror" in spec:
        spec["mirror"] = _source(spec["mirror"])
    if "sources" in spec:
        spec["sources"] = [_source(s) for s in spec["sources"]]
    _user_metadata(config, spec)
    return humanize_spec(Kind.STREAM, spec)


def consumer_spec(config: dict[str, Any], stream: dict[str, Any]) -> dict[str, Any]:
    """The manifest spec of a live consumer config (defaults relative to its stream)."""
    fields = [k for k in CONSUMER_DEFAULTS if k != "metadata"]
    spec = _minimal(config, fields, lambda c: canonical_consumer(c, stream))
    if paused_until(config.get("pause_until")):
        spec["pause_until"] = config["pause_until"]
    _user_metadata(config, spec)
    return humanize_spec(Kind.CONSUMER, spec)


def export_documents(live: LiveState) -> dict[str, list[dict[str, Any]]]:
    """Stream name -> its manifest documents (the stream first, then its consumers)."""
    files: dict[str, list[dict[str, Any]]] = {}
    for name in sorted(live.streams):
        config = live.streams[name]["config"]
        bucket = _bucket_document(name, config, live)
        if bucket is not None:
            files[name] = [bucket]
            continue
        docs = [
            {
                "apiVersion": "jsops/v1",
                "kind": Kind.STREAM.value,
                "metadata": {"name": name},
                "spec": stream_spec(config, live.api_level),
            }
        ]
        stream_canon = canonical_stream(config, live.api_level)
        for info in sorted(live.consumers_of(name), key=lambda i: i["name"]):
            cconfig = info["config"]
            if not cconfig.get("durable_name"):
                continue  # ephemeral consumers are not declared
            docs.append(
                {
                    "apiVersion": "jsops/v1",
                    "kind": Kind.CONSUMER.value,
                    "metadata": {"name": info["name"], "stream": name},
                    "spec": consumer_spec(cconfig, stream_canon),
                }
            )
        files[name] = docs
    return files


def _bucket_document(name: str, config: dict[str, Any], live: LiveState) -> dict[str, Any] | None:
    """A client-made bucket as its KeyValue / ObjectStore manifest; None for a stream
    no bucket spec builds (or one with durable consumers: those need a Stream)."""
    address = live_address(name, config)
    if address.kind == Kind.STREAM:
        return None
    if any(c["config"].get("durable_name") for c in live.consumers_of(name)):
        return None
    spec = bucket_export_spec(address, config)
    if spec is None:
        return None
    _user_metadata(config, spec)
    return {
        "apiVersion": "jsops/v1",
        "kind": address.kind.value,
        "metadata": {"name": address.name},
        "spec": humanize_spec(address.kind, spec),
    }


def dump_documents(docs: list[dict[str, Any]], schemas: str = "../schemas") -> str:
    yaml = YAML()
    yaml.default_flow_style = False
    yaml.width = 100
    yaml.indent(mapping=2, sequence=4, offset=2)
    buf = io.StringIO()
    yaml.dump_all(docs, buf)
    return SCHEMA_COMMENT.format(schemas=schemas) + buf.getvalue()


def write_export(live: LiveState, out_dir: str | Path, schemas: str = "../schemas") -> list[Path]:
    target = Path(out_dir)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, docs in export_documents(live).items():
        path = target / f"{name}.yaml"
        path.write_text(dump_documents(docs, schemas), encoding="utf-8")
        written.append(path)
    return written
