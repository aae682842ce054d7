"""Wording shared by every stage that reports manifest problems.

The one ``did_you_mean`` hint, the one spelling of a manifest path (``dotted``), the
one way a value is quoted in a message (``short_value``) or a library's message folded
(``one_line``), and the translation of
pydantic's errors into located :class:`~reconciler.errors.Diagnostic` records
(``pydantic_diagnostics``), used for manifests (``validate``) and for ``jsops.yaml``
(``environments``) alike. Nothing here imports a pipeline stage, so every stage can
import it.

Message formats of the pydantic translation (``str(Diagnostic)``)::

    missing required field "PATH"                          at the parent key
    unknown field "KEY"[ in PARENT.PATH] (did you mean "FIELD"?)
    PATH: PROBLEM                          a bad value: type, enum, unit, name, subject
    PATH: key K must be a string
"""

from __future__ import annotations

import difflib
import json
import re
import types
import typing
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, get_args, get_origin

from pydantic import BaseModel, ValidationError

from reconciler.errors import Diagnostic, KeyPath, Location, UsageError

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails


class Locator(Protocol):
    """Where paths are in one parsed document (``load.Document`` is one)."""

    def locate(self, path: KeyPath = ()) -> Location: ...

    def locate_value(self, path: KeyPath) -> Location: ...


__all__ = ["Locator", "did_you_mean", "dotted", "one_line", "pydantic_diagnostics", "short_value"]


def check_targets(targets: Iterable[str], known: set[str], missing: str) -> None:
    """A usage error listing every ``--target`` not in ``known`` (``missing`` says
    where it was looked for), each with a did-you-mean."""
    problems = []
    for target in targets:
        if target not in known:
            hint = did_you_mean(target, known)
            problems.append(f"--target {target}: {missing}" + (f" ({hint})" if hint else ""))
    if problems:
        raise UsageError("\n".join(problems))


def did_you_mean(word: str, choices: Iterable[Any], *, prefix: str = "") -> str | None:
    """``did you mean "CHOICE"?`` for the closest string choice, or None if none is close.

    ``prefix`` goes before the choice in the hint (``values.`` for a template variable).
    """
    strings = [c for c in choices if isinstance(c, str)]
    close = difflib.get_close_matches(str(word), strings, n=1, cutoff=0.6)
    return f'did you mean "{prefix}{close[0]}"?' if close else None


def one_line(text: str) -> str:
    """A message from a library (YAML, Jinja2) folded onto one line."""
    return " ".join(text.split())


_PLAIN_KEY = re.compile(r"^[\w/-]+$")


def dotted(path: Sequence[str | int]) -> str:
    """``spec.sources.0.name``; a key that is not a plain word is quoted (``metadata."a b"``)."""
    return ".".join(
        str(p) if isinstance(p, int) or _PLAIN_KEY.match(p) else json.dumps(p, ensure_ascii=False)
        for p in path
    )


def short_value(value: Any) -> str:
    """A value as YAML users read it: strings quoted, ``null``, ``true``, ``[...]``."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):  # e.g. a mapping with non-string keys
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unwrap(annotation: Any) -> Any:
    """The model class inside ``X | None``, ``list[X]``, ``dict[str, X]`` or Annotated."""
    while True:
        origin = get_origin(annotation)
        if origin is typing.Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
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


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _choices(error: ErrorDetails) -> list[str]:
    return re.findall(r"'([^']*)'", str((error.get("ctx") or {}).get("expected", "")))


def _message(error: ErrorDetails, secret: bool = False) -> str:
    kind = error["type"]
    value = error.get("input")
    shown = "a value not shown here (it may be a secret)" if secret else short_value(value)
    ctx = error.get("ctx") or {}
    if kind in ("bad_duration", "bad_size", "bad_name", "bad_subject", "bad_time", "bad_int"):
        return str(error["msg"])
    if kind == "literal_error":
        return f"invalid value {shown}: expected one of {', '.join(_choices(error))}"
    if kind in ("int_parsing", "int_type", "int_from_float", "int_parsing_size"):
        return f"expected an integer, got {shown}"
    if kind in ("bool_parsing", "bool_type"):
        return f"expected true or false, got {shown}"
    if kind in ("string_type", "string_unicode"):
        return f"expected a string, got {shown}"
    if kind in ("list_type",):
        return f"expected a list, got {shown}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping, got {shown}"
    if kind in ("float_parsing", "float_type", "finite_number"):
        return f"expected a number, got {shown}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}, got {shown}"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')}, got {shown}"
    if kind == "greater_than":
        return f"must be greater than {ctx.get('gt')}, got {shown}"
    if kind == "too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters long"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    msg = str(error["msg"])
    return msg[0].lower() + msg[1:] if msg else kind


# Keys whose values an error never shows (jsops.yaml's connection settings): a value of
# the wrong type there is still what someone typed as a password, a token or a creds file.
SECRET_KEYS = frozenset({"password", "token", "nkey", "seed", "creds", "tls"})


def pydantic_diagnostics(
    exc: ValidationError, doc: Locator, model: type[BaseModel], prefix: KeyPath = ()
) -> list[Diagnostic]:
    """Turn each pydantic error into a located Diagnostic (with a hint where it helps)."""
    out: list[Diagnostic] = []
    for error in exc.errors(include_url=False):
        raw_loc = tuple(p for p in error["loc"] if isinstance(p, (str, int)))
        kind = error["type"]
        if (raw_loc and raw_loc[-1] == "[key]") or kind == "invalid_key":
            # a non-string key: locate the key as YAML wrote it (pydantic stringifies it)
            key = error.get("input")
            parent = prefix + raw_loc[: -2 if raw_loc and raw_loc[-1] == "[key]" else -1]
            where = doc.locate((*parent, key)) if _hashable(key) else doc.locate(parent)
            out.append(
                Diagnostic(
                    where,
                    f"{dotted(parent) or 'document'}: key {short_value(key)} must be a string",
                    code="bad_key",
                )
            )
            continue
        loc = raw_loc
        path = prefix + loc
        if kind == "extra_forbidden":
            parent_model = _model_at(model, loc[:-1])
            choices = parent_model.model_fields if parent_model else ()
            where_text = dotted(path[:-1])
            message = f"unknown field {short_value(str(loc[-1]))}" + (
                f" in {where_text}" if where_text else ""
            )
            out.append(
                Diagnostic(
                    doc.locate(path),
                    message,
                    code="unknown_field",
                    hint=did_you_mean(str(loc[-1]), choices),
                )
            )
            continue
        if kind == "missing":
            out.append(
                Diagnostic(
                    doc.locate(path[:-1]),
                    f'missing required field "{dotted(path)}"',
                    code="missing_field",
                )
            )
            continue
        hint = None
        if kind == "literal_error":
            hint = did_you_mean(str(error.get("input")), _choices(error))
        location = doc.locate_value(path) if path else doc.locate(path)
        secret = any(key in SECRET_KEYS for key in path)
        if secret:
            hint = None
        text = f"{dotted(path)}: {_message(error, secret)}"
        out.append(Diagnostic(location, text, code=kind, hint=hint))
    return out
