"""JSON Schemas of the manifest kinds, generated from the models (checked in under schemas/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reconciler.environments import ProjectConfig
from reconciler.models import KINDS

SCHEMA_DRAFT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_BASE = "https://jsops.dev/schemas/"


def _schema(model: Any, file_name: str, title: str) -> dict[str, Any]:
    schema = model.model_json_schema(mode="validation")
    return {"$schema": SCHEMA_DRAFT, "$id": SCHEMA_BASE + file_name, **schema, "title": title}


def generate_schemas() -> dict[str, dict[str, Any]]:
    """File name -> schema: one per kind, one for any manifest document, one for jsops.yaml."""
    out: dict[str, dict[str, Any]] = {}
    for kind, model in KINDS.items():
        name = f"{kind.lower()}.schema.json"
        out[name] = _schema(model, name, f"jsops {kind}")
    out["manifest.schema.json"] = {
        "$schema": SCHEMA_DRAFT,
        "$id": SCHEMA_BASE + "manifest.schema.json",
        "title": "jsops manifest (any kind)",
        "oneOf": [{"$ref": f"{kind.lower()}.schema.json"} for kind in KINDS],
    }
    out["jsops.schema.json"] = _schema(ProjectConfig, "jsops.schema.json", "jsops.yaml")
    return out


def write_schemas(out_dir: str | Path) -> list[Path]:
    """Write every schema (stable formatting, so a stale checked-in copy shows as a diff)."""
    target = Path(out_dir)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in generate_schemas().items():
        path = target / name
        path.write_text(json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        written.append(path)
    return written
