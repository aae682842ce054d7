"""Check configs against the JetStream API schemas that nats-io/jsm.go publishes.

``tests/data/jsm/{stream,consumer}_configuration.json`` are jsm.go's
``schemas/jetstream/api/v1/*.json`` (commit caea3c5, 2026-08-20), vendored unchanged.
``write_problems(counter)`` checks every stream and consumer config a
``JsWriteCounter`` saw written (jsops' own lock bucket too); an empty list means all
were valid.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.servers import JsWriteCounter

DATA = Path(__file__).resolve().parent.parent / "data" / "jsm"
# request envelope fields that are not part of the configuration schema
_STREAM_ENVELOPE = ("pedantic",)


@functools.cache
def _validator(name: str) -> Any:
    import jsonschema

    schema = json.loads((DATA / f"{name}_configuration.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def problems(kind: str, config: dict[str, Any]) -> list[str]:
    """Every schema violation of one StreamConfig / ConsumerConfig, as ``path: message``."""
    validator = _validator("stream" if kind == "Stream" else "consumer")
    found = []
    for error in sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(p) for p in error.absolute_path) or "(config)"
        found.append(f"{kind} {path}: {error.message}")
    return found


def write_problems(counter: JsWriteCounter) -> list[str]:
    """Schema problems of every STREAM.CREATE/UPDATE and CONSUMER.CREATE body recorded."""
    from harness.servers import api_op

    out: list[str] = []
    for subject, body in counter.write_bodies:
        op = api_op(subject) or ""
        if op.startswith(("STREAM.CREATE.", "STREAM.UPDATE.")):
            config = {k: v for k, v in body.items() if k not in _STREAM_ENVELOPE}
            out += [f"{subject}: {p}" for p in problems("Stream", config)]
        elif op.startswith(("CONSUMER.CREATE.", "CONSUMER.DURABLE.CREATE.")):
            out += [f"{subject}: {p}" for p in problems("Consumer", body.get("config") or {})]
    return out
