"""Annotated field types shared by the manifest models: units, names, subjects."""

from __future__ import annotations

import json
import re
import typing
import unicodedata
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from reconciler.models.units import UnitError, parse_duration, parse_size

MAX_NAME_LEN = 255
MAX_INT64 = 2**63 - 1
_BAD_NAME_CHARS = re.compile(r"[\s.*>/\\]")
_NAME_RULE = 'names cannot contain whitespace, ".", "*", ">", "/" or "\\"'
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?P<tz>[Zz]|[+-]\d{2}:\d{2})?$"
)

# Every manifest model forbids unknown keys and keeps API field names. Validators are
# built on first use, not at import: a plan whose models come from the validated cache
# validates nothing (normalize.plain reads them), and building every schema at import
# was 0.1 s of each run.
STRICT = ConfigDict(
    extra="forbid", populate_by_name=False, validate_default=False, defer_build=True
)


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else str(value)


def to_duration(value: Any) -> int:
    """The validator of ``Duration`` fields: int nanoseconds, or a ``bad_duration`` error."""
    try:
        ns = parse_duration(value)
    except UnitError as exc:
        raise PydanticCustomError("bad_duration", str(exc)) from None
    if ns < 0:
        raise PydanticCustomError(
            "bad_duration", f"invalid duration {_shown(value)}: a duration cannot be negative"
        )
    if ns > MAX_INT64:
        raise PydanticCustomError(
            "bad_duration", f"invalid duration {_shown(value)}: too large (at most 106751d)"
        )
    return ns


def to_size(value: Any) -> int:
    """The validator of ``Size`` fields: int bytes (-1: unlimited), or a ``bad_size`` error."""
    try:
        n = parse_size(value)
    except UnitError as exc:
        raise PydanticCustomError("bad_size", str(exc)) from None
    if n < -1:
        raise PydanticCustomError(
            "bad_size", f"invalid size {_shown(value)}: a size is -1 (unlimited) or at least 0"
        )
    if n > MAX_INT64:
        raise PydanticCustomError("bad_size", f"invalid size {_shown(value)}: too large")
    return n


def _int(value: Any) -> Any:
    """Integers from YAML ints or digit strings (templates render strings), never booleans."""
    if isinstance(value, bool):
        raise PydanticCustomError("bad_int", f"expected an integer, got {str(value).lower()}")
    return value


def _count(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() == "unlimited":
        return -1
    return _int(value)


def _int64(value: int) -> int:
    if not -MAX_INT64 - 1 <= value <= MAX_INT64:
        raise PydanticCustomError("bad_int", f"{value} does not fit in 64 bits")
    return value


def check_name(value: str, what: str = "name") -> str | None:
    """Why ``value`` is not a valid stream/consumer name, or None when it is.

    The server's rules (``JSMaxNameLen``: 255 bytes, Go counts UTF-8 bytes; no whitespace,
    ``.``, ``*``, ``>``, path separators), and two of jsops's own against look-alike
    names: no invisible characters (format, control, separator, private-use or
    unassigned code points) and one script per name (see :func:`_mixed_scripts`).
    """
    if not value:
        return f"{what} must not be empty"
    size = len(value.encode("utf-8"))
    if size > MAX_NAME_LEN:
        chars = f" ({len(value)} characters)" if size != len(value) else ""
        return f"{what} is {size} bytes long{chars}, the server's limit is {MAX_NAME_LEN} bytes"
    bad = _BAD_NAME_CHARS.search(value)
    if bad:
        char = bad.group()
        shown = "whitespace" if char.isspace() else f'"{char}"'
        quoted = json.dumps(value, ensure_ascii=False)
        return f"{what} {quoted} must not contain {shown} ({_NAME_RULE})"
    if value.isascii():  # one script, nothing to normalize: only control characters
        if not value.isprintable():
            char = next(c for c in value if not c.isprintable())
            quoted = json.dumps(value, ensure_ascii=True)
            return (
                f"{what} {quoted} contains the invisible character U+{ord(char):04X} "
                f"({unicodedata.name(char, 'unnamed')}): it would look like another name"
            )
        return None
    quoted = json.dumps(value, ensure_ascii=True)  # shows what the eye would not
    for char in value:
        if unicodedata.category(char) in _INVISIBLE:
            return (
                f"{what} {quoted} contains the invisible character U+{ord(char):04X} "
                f"({unicodedata.name(char, 'unnamed')}): it would look like another name"
            )
    normal = unicodedata.normalize("NFKC", value)
    if normal != value:
        return (
            f"{what} {quoted} uses decomposed or compatibility characters "
            f"(fullwidth, ligatures...): write it as {json.dumps(normal, ensure_ascii=False)}"
        )
    scripts = _mixed_scripts(value)
    if scripts:
        return (
            f"{what} {quoted} mixes scripts ({', '.join(scripts)}): "
            "look-alike letters make it read as another name"
        )
    return None


_INVISIBLE = frozenset(("Cc", "Cf", "Co", "Cs", "Cn", "Zs", "Zl", "Zp"))
# Scripts that are written together in one name (Japanese, Chinese, Korean with Latin).
_CJK = frozenset(("CJK", "HIRAGANA", "KATAKANA", "HANGUL", "BOPOMOFO", "IDEOGRAPHIC"))


def _script(char: str) -> str | None:
    """The script of a letter, from its Unicode name's first word (None: not a letter)."""
    if not unicodedata.category(char).startswith("L"):
        return None
    return unicodedata.name(char, "UNKNOWN").split()[0]


def _mixed_scripts(value: str) -> list[str]:
    """The scripts of ``value`` if they mix in a way that invites look-alikes: more than
    one script, except Latin together with the CJK scripts (``ORDERS_注文``)."""
    scripts = {s for s in map(_script, value) if s is not None}
    others = scripts - _CJK - {"LATIN"}
    if len(scripts - _CJK) > 1 or (others and scripts & _CJK):
        return sorted(scripts)
    return []


def checked(check: Callable[[str], str | None], code: str) -> Callable[[str], str]:
    """A field validator from a ``check_*`` function (the problem in words, or None):
    the problem becomes a pydantic error of type ``code``."""

    def validate(value: str) -> str:
        problem = check(value)
        if problem:
            raise PydanticCustomError(code, problem)
        return value

    return validate


def valid_domain(domain: str) -> bool:
    """A JetStream domain name: not empty, no whitespace, dots or wildcards."""
    return bool(domain) and not any(ch in domain for ch in " \t.*>")


_name = checked(check_name, "bad_name")


def check_subject(subject: str, *, wildcards: bool = True) -> str | None:
    """Why ``subject`` is not a valid NATS subject (or filter), or None when it is."""
    if not subject:
        return "subject must not be empty"
    problem = None
    if _WHITESPACE.search(subject):
        problem = "must not contain whitespace"
    else:
        tokens = subject.split(".")
        last = len(tokens) - 1
        for i, token in enumerate(tokens):
            if token == "":
                problem = "has an empty token"
            elif token == ">" and i != last:
                problem = ': ">" must be the last token'
            elif not wildcards and token in ("*", ">"):
                problem = "must not contain wildcards"
            else:
                continue
            break
    if problem is None:
        return None
    shown = json.dumps(subject, ensure_ascii=False)
    return f"subject {shown}{'' if problem.startswith(':') else ' '}{problem}"


_WHITESPACE = re.compile(r"\s")


_subject = checked(check_subject, "bad_subject")


_literal_subject = checked(lambda value: check_subject(value, wildcards=False), "bad_subject")


def _timestamp(value: Any) -> str:
    """RFC 3339 timestamp, kept as the string the user wrote (compared as instants)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise PydanticCustomError(
                "bad_time", f'timestamp "{value.isoformat()}" needs a timezone, e.g. Z or +01:00'
            )
        return value.isoformat().replace("+00:00", "Z")
    if not isinstance(value, str):
        raise PydanticCustomError(
            "bad_time", "expected an RFC 3339 timestamp string, e.g. 2026-01-02T15:04:05Z"
        )
    shown = json.dumps(value, ensure_ascii=False)
    match = _RFC3339.match(value)
    try:
        if match is None:
            raise ValueError(value)
        datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        raise PydanticCustomError(
            "bad_time", f"invalid timestamp {shown}: expected RFC 3339, e.g. 2026-01-02T15:04:05Z"
        ) from None
    if match.group("tz") is None:
        raise PydanticCustomError(
            "bad_time", f"timestamp {shown} needs a timezone, e.g. Z or +01:00"
        )
    return value


_DURATION_SCHEMA = {
    "anyOf": [
        {"type": "integer", "minimum": 0, "description": "nanoseconds"},
        {"type": "string", "pattern": r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h|d))+)$"},
    ]
}
_SIZE_SCHEMA = {
    "anyOf": [
        {"type": "integer", "minimum": -1, "description": "bytes; -1 is unlimited"},
        {
            "type": "string",
            "pattern": r"^-?[0-9]+(\.[0-9]+)?\s*([KMGTP]i?B|[kmgtp]i?b|B)?$",
        },
    ]
}

Duration = Annotated[int, BeforeValidator(to_duration), WithJsonSchema(_DURATION_SCHEMA)]
Size = Annotated[int, BeforeValidator(to_size), WithJsonSchema(_SIZE_SCHEMA)]
Int = Annotated[int, BeforeValidator(_int), AfterValidator(_int64)]
Limit = Annotated[int, BeforeValidator(_count), AfterValidator(_int64)]
Name = Annotated[str, AfterValidator(_name)]
Subject = Annotated[str, AfterValidator(_subject)]
LiteralSubject = Annotated[str, AfterValidator(_literal_subject)]
Timestamp = Annotated[
    str,
    BeforeValidator(_timestamp),
    PlainSerializer(lambda v: v, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


def _unit_in(metadata: Any) -> str | None:
    for meta in metadata:
        func = getattr(meta, "func", None)
        if func is to_duration:
            return "duration"
        if func is to_size:
            return "size"
    return None


def unit_paths(model: type[BaseModel], prefix: str = "") -> dict[str, str]:
    """Dotted field path (list indexes dropped) -> ``duration`` | ``size``: which fields of
    ``model`` hold durations and sizes, read from their ``Duration``/``Size`` types, so a
    new field never needs a second table."""
    out: dict[str, str] = {}
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        unit = _unit_in(info.metadata)
        stack = [info.annotation]
        while stack:
            current = stack.pop()
            origin = get_origin(current)
            if origin is typing.Annotated:
                unit = unit or _unit_in(getattr(current, "__metadata__", ()))
                stack.append(get_args(current)[0])
            elif origin is not None:
                stack.extend(get_args(current))
            elif isinstance(current, type) and issubclass(current, BaseModel):
                out.update(unit_paths(current, path + "."))
        if unit:
            out[path] = unit
    return out
