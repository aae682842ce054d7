"""Validation: parsed documents -> desired resources, or every problem, located.

Three layers, all offline and all collected before anything is reported:

1. the envelope (a mapping, a known ``apiVersion`` and ``kind``);
2. the pydantic model of the kind (types, enums, units, names, subjects, unknown
   fields with a "did you mean" hint), then the cross-field rules each spec
   declares in ``problems()`` (mutually exclusive fields and the like);
3. rules across resources: duplicates, a consumer's stream, filter coverage.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from reconciler.environments import Project
from reconciler.errors import Diagnostic, Location, ManifestError
from reconciler.load import Document, LoadResult, load_manifests
from reconciler.models import (
    API_VERSION,
    KINDS,
    Address,
    ConsumerManifest,
    ConsumerSpec,
    Resource,
    StreamManifest,
    StreamSpec,
)
from reconciler.subjects import covers

_ENVELOPE_KEYS = ("apiVersion", "kind", "metadata", "spec")


@dataclass
class DesiredState:
    """Validated resources of one environment, in declaration order."""

    resources: list[Resource]

    def streams(self) -> dict[str, Resource]:
        return {r.address.name: r for r in self.resources if r.address.kind == "Stream"}

    def consumers(self) -> list[Resource]:
        return [r for r in self.resources if r.address.kind == "Consumer"]


def _did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f'did you mean "{close[0]}"?' if close else None


def _unwrap(annotation: Any) -> Any:
    """The model class inside ``X | None``, ``list[X]``, ``dict[str, X]`` or Annotated."""
    while True:
        origin = get_origin(annotation)
        if origin is typing.Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            annotation = args[0] if len(args) == 1 else annotation
            if len(args) != 1:
                return annotation
        elif origin in (list, tuple, set):
            annotation = get_args(annotation)[0]
        elif origin is dict:
            annotation = get_args(annotation)[1]
        else:
            return annotation


def _model_at(model: type[BaseModel], path: Sequence[str | int]) -> type[BaseModel] | None:
    current: Any = model
    for key in path:
        if isinstance(key, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(key)
        if field is None:
            return None
        current = _unwrap(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _dotted(path: Sequence[str | int]) -> str:
    return ".".join(str(p) for p in path)


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    return text if len(text) <= 60 else text[:57] + "..."


def _message(error: dict[str, Any]) -> str:
    kind = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}
    if kind in ("bad_duration", "bad_size", "bad_name", "bad_subject", "bad_time"):
        return str(error["msg"])
    if kind == "literal_error":
        expected = ctx.get("expected", "").replace("'", "")
        return f"invalid value {_short(value)}: expected one of {expected}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"expected an integer, got {_short(value)}"
    if kind in ("bool_parsing", "bool_type"):
        return f"expected true or false, got {_short(value)}"
    if kind in ("string_type",):
        return f"expected a string, got {_short(value)}"
    if kind in ("list_type",):
        return f"expected a list, got {_short(value)}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping, got {_short(value)}"
    if kind in ("float_parsing", "float_type"):
        return f"expected a number, got {_short(value)}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}, got {_short(value)}"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')}, got {_short(value)}"
    if kind == "greater_than":
        return f"must be greater than {ctx.get('gt')}, got {_short(value)}"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters long"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    msg = str(error["msg"])
    return msg[0].lower() + msg[1:] if msg else kind


def pydantic_diagnostics(
    exc: ValidationError, doc: Document, model: type[BaseModel], prefix: tuple[str | int, ...] = ()
) -> list[Diagnostic]:
    """Turn each pydantic error into a located Diagnostic (with a hint where it helps)."""
    out: list[Diagnostic] = []
    suffix = " (line in rendered template)" if doc.source.templated_blocks else ""
    for error in exc.errors(include_url=False):
        loc = tuple(p for p in error["loc"] if isinstance(p, (str, int)))
        path = prefix + loc
        kind = error["type"]
        if kind == "extra_forbidden":
            parent = _model_at(model, loc[:-1])
            choices = parent.model_fields if parent else ()
            where = _dotted(path[:-1])
            message = f'unknown field "{loc[-1]}"' + (f" in {where}" if where else "")
            out.append(
                Diagnostic(
                    doc.locate(path), message + suffix, code="unknown_field",
                    hint=_did_you_mean(str(loc[-1]), choices),
                )
            )
            continue
        if kind == "missing":
            out.append(
                Diagnostic(
                    doc.locate(path[:-1]),
                    f'missing required field "{_dotted(path)}"' + suffix,
                    code="missing_field",
                )
            )
            continue
        hint = None
        if kind == "literal_error":
            choices = [c.strip(" '") for c in error.get("ctx", {}).get("expected", "").split(",")]
            choices = [c.split(" or ") for c in choices]
            flat = [x.strip(" '") for group in choices for x in group]
            hint = _did_you_mean(str(error.get("input")), flat)
        location = doc.locate_value(path) if path and isinstance(path[-1], str) else doc.locate(
            path
        )
        out.append(
            Diagnostic(
                location, f"{_dotted(path)}: {_message(error)}" + suffix, code=kind, hint=hint
            )
        )
    return out


def _check_envelope(doc: Document) -> tuple[type[BaseModel] | None, list[Diagnostic]]:
    data = doc.data
    if not isinstance(data, dict):
        return None, [
            Diagnostic(
                doc.locate(), "a manifest document must be a mapping with apiVersion, kind, "
                "metadata and spec", code="not_a_mapping",
            )
        ]
    problems = []
    api = data.get("apiVersion")
    if api is None:
        problems.append(Diagnostic(doc.locate(), 'missing required field "apiVersion"',
                                   code="missing_field"))
    elif api != API_VERSION:
        problems.append(
            Diagnostic(doc.locate_value(("apiVersion",)),
                       f'unknown apiVersion "{api}" (expected "{API_VERSION}")',
                       code="unknown_api_version")
        )
    kind = data.get("kind")
    if kind is None:
        problems.append(Diagnostic(doc.locate(), 'missing required field "kind"',
                                   code="missing_field"))
        return None, problems
    if kind not in KINDS:
        problems.append(
            Diagnostic(
                doc.locate_value(("kind",)),
                f'unknown kind "{kind}" (known kinds: {", ".join(KINDS)})',
                code="unknown_kind",
                hint=_did_you_mean(str(kind), KINDS),
            )
        )
        return None, problems
    return KINDS[kind], problems


def validate_document(doc: Document) -> tuple[Resource | None, list[Diagnostic]]:
    """One document -> one Resource, or its diagnostics."""
    model, problems = _check_envelope(doc)
    if model is None or problems:
        return None, problems
    try:
        manifest = model.model_validate(doc.data)
    except ValidationError as exc:
        return None, pydantic_diagnostics(exc, doc, model)
    suffix = " (line in rendered template)" if doc.source.templated_blocks else ""
    spec: StreamSpec | ConsumerSpec = manifest.spec  # type: ignore[attr-defined]
    for path, message in spec.problems():
        problems.append(Diagnostic(doc.locate(("spec", *path)), message + suffix, code="conflict"))
    if problems:
        return None, problems
    meta = manifest.metadata  # type: ignore[attr-defined]
    if isinstance(manifest, ConsumerManifest):
        address = Address("Consumer", meta.name, stream=meta.stream, account=meta.account)
    else:
        assert isinstance(manifest, StreamManifest)
        address = Address("Stream", meta.name, account=meta.account)
    return Resource(address, manifest, doc.locate(("metadata", "name")), doc), []  # type: ignore[arg-type]


def check_resources(resources: Sequence[Resource], env: str | None = None) -> list[Diagnostic]:
    """Rules across resources: duplicates, a consumer's stream, filter coverage."""
    problems: list[Diagnostic] = []
    seen: dict[Address, list[Resource]] = {}
    for res in resources:
        earlier = seen.setdefault(res.address, [])
        clash = next((o for o in earlier if _envs_intersect(o, res)), None)
        if clash is not None:
            problems.append(
                Diagnostic(
                    res.location,
                    f"{res.address} is declared twice: here and at {clash.location}",
                    code="duplicate", related=(clash.location,),
                )
            )
        earlier.append(res)
    streams: dict[tuple[str | None, str], list[Resource]] = {}
    for res in resources:
        if res.address.kind == "Stream":
            streams.setdefault((res.address.account, res.address.name), []).append(res)
    for res in resources:
        if res.address.kind != "Consumer":
            continue
        candidates = streams.get((res.address.account, res.address.stream or ""), [])
        envs = res.metadata.environments
        declared = [s for s in candidates if _env_overlap(s, envs)]
        doc = res.document
        if not declared:
            problems.append(
                Diagnostic(
                    doc.locate(("metadata", "stream")) if doc else res.location,
                    f'consumer "{res.address.name}": stream "{res.address.stream}" is not '
                    "declared in any manifest" + ("" if envs is None else
                                                  f" for environments {', '.join(envs)}"),
                    code="unknown_stream",
                    hint=_did_you_mean(res.address.stream or "",
                                       [k[1] for k in streams]),
                )
            )
            continue
        problems += _check_filters(res, declared[0])
    return problems


def _env_overlap(stream: Resource, envs: list[str] | None) -> bool:
    senvs = stream.metadata.environments
    if senvs is None:
        return True
    if envs is None:
        return False
    return set(envs) <= set(senvs)


def _envs_intersect(a: Resource, b: Resource) -> bool:
    ea, eb = a.metadata.environments, b.metadata.environments
    return ea is None or eb is None or bool(set(ea) & set(eb))


def _check_filters(consumer: Resource, stream: Resource) -> list[Diagnostic]:
    sspec = stream.spec
    cspec = consumer.spec
    assert isinstance(sspec, StreamSpec) and isinstance(cspec, ConsumerSpec)
    if sspec.mirror or sspec.sources or sspec.subject_transform:
        return []  # the stored subjects come from elsewhere; the server checks these
    subjects = sspec.subjects or [stream.address.name]
    problems = []
    doc = consumer.document
    key = "filter_subjects" if cspec.filter_subjects is not None else "filter_subject"
    for i, filt in enumerate(cspec.filters):
        if not any(covers(s, filt) for s in subjects):
            path: tuple[str | int, ...] = ("spec", key, i) if key == "filter_subjects" else (
                "spec", key)
            problems.append(
                Diagnostic(
                    doc.locate(path) if doc else consumer.location,
                    f'filter "{filt}" is not covered by any subject of stream '
                    f'"{stream.address.name}" ({", ".join(subjects)})',
                    code="filter_not_covered",
                )
            )
    return problems


def validate_loaded(loaded: LoadResult, env: str | None = None) -> tuple[list[Resource],
                                                                         list[Diagnostic]]:
    """Validate every loaded document; return the resources and every diagnostic."""
    resources: list[Resource] = []
    problems = list(loaded.diagnostics)
    for doc in loaded.documents:
        resource, doc_problems = validate_document(doc)
        problems += doc_problems
        if resource is not None:
            resources.append(resource)
    if env is not None:
        resources = [r for r in resources if r.in_environment(env)]
    problems += check_resources(resources, env)
    return resources, problems


def validate_paths(
    paths: Sequence[str], variables: dict[str, Any], env: str | None = None
) -> tuple[list[Resource], list[Diagnostic]]:
    return validate_loaded(load_manifests(paths, variables), env)


def dedupe(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    seen: set[str] = set()
    out = []
    for d in diagnostics:
        key = str(d)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def load_desired(
    project: Project, env: str, paths: Sequence[str] | None = None
) -> list[Resource]:
    """The validated desired resources of one environment; ManifestError if anything is wrong."""
    manifest_paths = list(paths) if paths else [str(p) for p in project.manifest_paths()]
    resources, problems = validate_paths(manifest_paths, project.variables(env), env)
    if problems:
        raise ManifestError(dedupe(problems))
    return resources


def validate_project(project: Project, paths: Sequence[str] | None = None) -> list[Diagnostic]:
    """Validate manifests for every environment of the project (templates may differ)."""
    manifest_paths = list(paths) if paths else [str(p) for p in project.manifest_paths()]
    problems: list[Diagnostic] = []
    for env in project.config.environments:
        _resources, found = validate_paths(manifest_paths, project.variables(env), env)
        problems += found
    return sorted(dedupe(problems), key=Diagnostic.sort_key)
