"""Export: live streams and consumers -> manifests (adoption), the inverse of normalize.

A stream a NATS client made for a bucket (``KV_<b>``, ``OBJ_<b>`` in the client's
layout) is written as its KeyValue / ObjectStore manifest (``reconciler.buckets``),
when that manifest builds the same stream; otherwise as a Stream.

A field is written only when leaving it out would change the canonical config (so
server defaults, derived ones included, are left out); durations and sizes are
written in human units; ``external.api: $JS.<d>.API`` becomes ``domain: <d>``; the
owner tag is left out (jsops adds it on apply, which is how adoption shows in a plan).
One file per stream, holding the stream and its consumers.

File names: ``<stream>.yaml`` when that fits a file name (255 bytes) and no other stream's
file name differs from it only in case (case-insensitive file systems); otherwise the
name is cut to fit and ``-<12 hex digits of its SHA-256>`` is added (:func:`file_name`).
Export never overwrites a file: if any file it would write exists, it writes nothing
and names them, unless ``force``.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from reconciler.buckets import export_spec as bucket_export_spec
from reconciler.buckets import live_address
from reconciler.errors import UsageError
from reconciler.live import LiveState
from reconciler.models import UNIT_PATHS, Address, Kind
from reconciler.models.monitoring import (
    CONSUMER_MONITOR_KEYS,
    STREAM_MONITOR_KEYS,
    MonitorKey,
    split_monitoring,
)
from reconciler.models.units import format_duration, format_size
from reconciler.mutability import LATEST_LEVEL
from reconciler.normalize import (
    CONSUMER_DEFAULTS,
    JSOPS_KEYS,
    STREAM_DEFAULTS,
    canonical_consumer,
    canonical_stream,
    paused_until,
    protected,
    user_metadata,
)
from reconciler.printable import in_file_name

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


def _user_metadata(
    config: dict[str, Any], spec: dict[str, Any], keys: tuple[MonitorKey, ...]
) -> None:
    """Metadata a user wrote: without the server's ``_nats.*`` keys and jsops' own; the
    ``io.nats.monitor.*`` thresholds (``keys``) jsops would write become ``monitoring``."""
    meta = {k: v for k, v in user_metadata(config.get("metadata")).items() if k not in JSOPS_KEYS}
    monitoring, meta = split_monitoring(keys, meta)
    if meta:
        spec["metadata"] = meta
    if monitoring:
        spec["monitoring"] = monitoring


def _doc_metadata(config: dict[str, Any], **names: str) -> dict[str, Any]:
    """A document's metadata: ``names``, and ``prevent_destroy: true`` where the live
    resource carries jsops's mark of it (dropped, an apply of the export would remove
    the protection)."""
    return {**names, "prevent_destroy": True} if protected(config) else dict(names)


def stream_spec(config: dict[str, Any], level: int = LATEST_LEVEL) -> dict[str, Any]:
    """The manifest spec of a live stream config (defaults as API level ``level`` derives)."""
    name = config["name"]
    fields = [k for k in STREAM_DEFAULTS if k != "metadata"]
    spec = _minimal(config, fields, lambda c: canonical_stream({**c, "name": name}, level))
    if "mirror" in spec:
        spec["mirror"] = _source(spec["mirror"])
    if "sources" in spec:
        spec["sources"] = [_source(s) for s in spec["sources"]]
    _user_metadata(config, spec, STREAM_MONITOR_KEYS)
    return humanize_spec(Kind.STREAM, spec)


def consumer_spec(config: dict[str, Any], stream: dict[str, Any]) -> dict[str, Any]:
    """The manifest spec of a live consumer config (defaults relative to its stream)."""
    fields = [k for k in CONSUMER_DEFAULTS if k != "metadata"]
    spec = _minimal(config, fields, lambda c: canonical_consumer(c, stream))
    if paused_until(config.get("pause_until")):
        spec["pause_until"] = config["pause_until"]
    _user_metadata(config, spec, CONSUMER_MONITOR_KEYS)
    return humanize_spec(Kind.CONSUMER, spec)


def leave_out_declared(
    files: dict[str, list[dict[str, Any]]], declared: set[Address]
) -> tuple[dict[str, list[dict[str, Any]]], int]:
    """``files`` without the documents of resources in ``declared`` (the project's own
    manifests, in the connection's account), and how many were left out: a file of a
    declared stream keeps only its consumers no manifest declares."""
    kept: dict[str, list[dict[str, Any]]] = {}
    left_out = 0
    for name, docs in files.items():
        mine = [d for d in docs if _doc_address(d) not in declared]
        left_out += len(docs) - len(mine)
        if mine:
            kept[name] = mine
    return kept, left_out


def _doc_address(doc: dict[str, Any]) -> Address:
    meta = doc["metadata"]
    return Address(Kind(doc["kind"]), meta["name"], meta.get("stream"))


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
                "metadata": _doc_metadata(config, name=name),
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
                    "metadata": _doc_metadata(cconfig, name=info["name"], stream=name),
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
    _user_metadata(config, spec, STREAM_MONITOR_KEYS)
    return {
        "apiVersion": "jsops/v1",
        "kind": address.kind.value,
        "metadata": _doc_metadata(config, name=address.name),
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


MAX_FILE_NAME = 255  # bytes, the usual file system limit (NAME_MAX)
_SUFFIX = ".yaml"


def file_name(name: str, hashed: bool = False) -> str:
    """The export file name of stream ``name``: ``name.yaml`` when it fits in
    :data:`MAX_FILE_NAME` bytes (and ``hashed`` is False), else a cut name plus a hash.

    A name with control characters (nats-server accepts ESC and BEL in one) is written
    with ``_`` in their place and the hash, which keeps it apart from a name that has
    ``_`` there: a listed file name must not drive the terminal."""
    shown = in_file_name(name)
    plain = shown + _SUFFIX
    if not hashed and shown == name and len(plain.encode("utf-8")) <= MAX_FILE_NAME:
        return plain
    digest = "-" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:12] + _SUFFIX
    room = MAX_FILE_NAME - len(digest)
    head = shown.encode("utf-8")[:room].decode("utf-8", "ignore")
    return head + digest


def export_paths(names: list[str], out_dir: Path) -> dict[str, Path]:
    """Stream name -> the file it is exported to (names equal up to case are hashed)."""
    plain = {name: file_name(name) for name in names}
    counts = Counter(f.casefold() for f in plain.values())
    return {
        name: out_dir / (file_name(name, hashed=True) if counts[f.casefold()] > 1 else f)
        for name, f in plain.items()
    }


def write_export(
    live: LiveState,
    out_dir: str | Path,
    schemas: str = "../schemas",
    *,
    force: bool = False,
    declared: set[Address] | None = None,
) -> tuple[list[Path], int]:
    """Write one manifest file per live stream, but for the resources in ``declared``;
    refuse (writing nothing) when a file exists, unless ``force``. The paths written,
    and how many declared resources were left out."""
    target = Path(out_dir)
    files = export_documents(live)
    left_out = 0
    if declared:
        files, left_out = leave_out_declared(files, declared)
    paths = export_paths(list(files), target)
    if not force:
        existing = [str(p) for p in paths.values() if p.exists() or p.is_symlink()]
        if existing:
            shown = ", ".join(existing[:5]) + (
                f" and {len(existing) - 5} more" if len(existing) > 5 else ""
            )
            raise UsageError(
                f"export would overwrite {shown}: nothing was written (--force to overwrite)"
            )
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {target}: {exc.strerror or exc}") from None
    written = []
    for name, docs in files.items():
        path = paths[name]
        try:
            with path.open("w" if force else "x", encoding="utf-8") as out:
                out.write(dump_documents(docs, schemas))
        except FileExistsError:
            raise UsageError(f"export would overwrite {path} (it appeared meanwhile)") from None
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
        written.append(path)
    return written, left_out
