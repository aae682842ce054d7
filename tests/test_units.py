"""Units are exact (no floats), and no input makes validation raise or lose its location."""

from __future__ import annotations

import copy
import io
import itertools
import os
import types
import typing
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from ruamel.yaml import YAML

from reconciler.load import LoadResult, load_text, parse
from reconciler.models import ConsumerManifest, StreamManifest
from reconciler.models.types import to_duration, to_size
from reconciler.models.units import (
    NS_PER,
    SIZE_UNITS,
    UnitError,
    format_duration,
    format_size,
    parse_duration,
    parse_size,
)
from reconciler.validate import validate_loaded

# JSOPS_HYPOTHESIS_EXAMPLES=5000 runs a longer search locally; CI keeps the suite fast.
EXAMPLES = int(os.environ.get("JSOPS_HYPOTHESIS_EXAMPLES", "150"))
FAST = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
INT64 = 2**63 - 1
SIZE_SPELLINGS = {
    "b": ["B", "b"],
    "kib": ["KiB", "kib"],
    "mib": ["MiB"],
    "gib": ["GiB", "gib"],
    "tib": ["TiB"],
    "pib": ["PiB"],
    "kb": ["KB", "kb"],
    "mb": ["MB"],
    "gb": ["GB"],
    "tb": ["TB"],
    "pb": ["PB"],
}


# -- durations ---------------------------------------------------------------------------


@FAST
@given(st.integers(min_value=0, max_value=INT64))
@example(0)
@example(1)
@example(5_400_000_000_000)
def test_duration_round_trip(ns: int) -> None:
    text = format_duration(ns)
    assert isinstance(text, str)
    assert parse_duration(text) == ns


@FAST
@given(st.integers(min_value=0, max_value=10**12), st.sampled_from(sorted(NS_PER)))
def test_duration_integer_times_unit_is_exact(count: int, unit: str) -> None:
    assert parse_duration(f"{count}{unit}") == count * NS_PER[unit]


@FAST
@given(st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(sorted(NS_PER))), min_size=1))
def test_duration_parts_add_up(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{count}{unit}" for count, unit in parts)
    assert parse_duration(text) == sum(count * NS_PER[unit] for count, unit in parts)


@FAST
@given(
    st.integers(0, 10**6),
    st.text("0123456789", min_size=1, max_size=12),
    st.sampled_from(sorted(NS_PER)),
)
def test_duration_decimals_are_exact_or_refused(whole: int, digits: str, unit: str) -> None:
    text = f"{whole}.{digits}{unit}"
    exact = Fraction(f"{whole}.{digits}") * NS_PER[unit]
    if exact.denominator == 1:
        assert parse_duration(text) == int(exact)
    else:
        with pytest.raises(UnitError, match="not a whole number of nanoseconds"):
            parse_duration(text)


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("1.001s", 1_001_000_000),
        ("0.1ms", 100_000),
        ("1h30m", 5_400_000_000_000),
        ("1.5h", 5_400_000_000_000),
        ("7d", 7 * 86_400 * 10**9),
        ("250ms", 250_000_000),
        ("1µs", 1_000),
        ("0", 0),
        (" 90s ", 90 * 10**9),
        (30, 30),
    ],
)
def test_duration_examples(text: str | int, ns: int) -> None:
    assert parse_duration(text) == ns


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("7 days", r'invalid duration "7 days": expected e\.g\.'),
        ("2x", r'unknown unit "x" \(use ns, us, ms, s, m, h, d\)'),
        ("30", r'missing unit \(e\.g\. "30s"\)'),
        ("-5s", "a duration cannot be negative"),
        ("", "empty"),
        ("1.5ns", "not a whole number of nanoseconds"),
        (True, "expected a duration"),
        (1.5, "expected a duration"),
    ],
)
def test_duration_errors(value: Any, message: str) -> None:
    with pytest.raises(UnitError, match=message):
        parse_duration(value)


def test_duration_field_refuses_negative_and_huge_ints() -> None:
    with pytest.raises(ValueError, match="cannot be negative"):
        to_duration(-1)
    with pytest.raises(ValueError, match="too large"):
        to_duration(INT64 + 1)
    assert to_duration(INT64) == INT64


# -- sizes -------------------------------------------------------------------------------


@FAST
@given(st.integers(min_value=-1, max_value=INT64))
@example(1024)
@example(1000)
@example(10 * 1024**3)
def test_size_round_trip(n: int) -> None:
    assert parse_size(format_size(n)) == n


@FAST
@given(
    st.integers(min_value=0, max_value=10**9),
    st.sampled_from(sorted(SIZE_UNITS)),
    st.data(),
)
def test_size_integer_times_unit_is_exact(count: int, unit: str, data: st.DataObject) -> None:
    spelling = data.draw(st.sampled_from(SIZE_SPELLINGS[unit]))
    space = data.draw(st.sampled_from(["", " "]))
    assert parse_size(f"{count}{space}{spelling}") == count * SIZE_UNITS[unit]


@FAST
@given(st.integers(0, 10**6), st.text("0123456789", min_size=1, max_size=10))
def test_size_decimals_are_exact_or_refused(whole: int, digits: str) -> None:
    exact = Fraction(f"{whole}.{digits}") * 1024**3
    if exact.denominator == 1:
        assert parse_size(f"{whole}.{digits}GiB") == int(exact)
    else:
        with pytest.raises(UnitError, match="not a whole number of bytes"):
            parse_size(f"{whole}.{digits}GiB")


@pytest.mark.parametrize(
    ("text", "n"),
    [("10GiB", 10 * 1024**3), ("500MB", 500 * 1000**2), ("1.5KiB", 1536), ("512B", 512),
     ("-1", -1), ("0", 0), (4096, 4096)],
)  # fmt: skip
def test_size_examples(text: str | int, n: int) -> None:
    assert parse_size(text) == n


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10G", r'unknown unit "G" \(write "10GiB" for 1024\^n or "10GB" for 1000\^n\)'),
        ("10k", r'write "10KiB" for 1024\^n or "10KB"'),
        ("3 bananas", r'unknown unit "bananas" \(use B, KiB'),
        ("1.5B", "not a whole number of bytes"),
        ("ten", r'expected e\.g\. "10GiB"'),
        (False, "expected a size"),
    ],
)
def test_size_errors(value: Any, message: str) -> None:
    with pytest.raises(UnitError, match=message):
        parse_size(value)


def test_size_field_limits() -> None:
    assert to_size(-1) == -1
    with pytest.raises(ValueError, match=r"-1 \(unlimited\) or at least 0"):
        to_size(-2)
    with pytest.raises(ValueError, match="too large"):
        to_size(INT64 + 1)


# -- garbage in any field never raises and is always located ------------------------------

BASES: dict[type[BaseModel], dict[str, Any]] = {
    StreamManifest: {
        "apiVersion": "jsops/v1",
        "kind": "Stream",
        "metadata": {"name": "ORDERS"},
        "spec": {"subjects": ["orders.>"], "max_age": "7d", "sources": [{"name": "EU"}]},
    },
    ConsumerManifest: {
        "apiVersion": "jsops/v1",
        "kind": "Consumer",
        "metadata": {"name": "worker", "stream": "ORDERS"},
        "spec": {"ack_policy": "explicit", "filter_subject": "orders.new"},
    },
}


def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model inside an annotation, and whether it sits in a list."""
    in_list = False
    while True:
        origin = typing.get_origin(annotation)
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if origin is typing.Annotated:
            annotation = args[0]
        elif origin in (typing.Union, types.UnionType):
            if len(args) != 1:
                return None, in_list
            annotation = args[0]
        elif origin is list:
            in_list, annotation = True, args[0]
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation, in_list
        else:
            return None, in_list


def field_paths(model: type[BaseModel], prefix: tuple[str | int, ...] = ()) -> list[tuple]:
    paths: list[tuple] = []
    for name, info in model.model_fields.items():
        path = (*prefix, name)
        paths.append(path)
        inner, in_list = _model_of(info.annotation)
        if inner is not None and len(prefix) < 4:
            paths += field_paths(inner, (*path, 0) if in_list else path)
    return paths


PATHS = [(kind, path) for kind in BASES for path in field_paths(kind)]
PATHS += [(kind, ("spec", "no_such_field")) for kind in BASES]
PATHS += [(kind, ("metadata", "labelz")) for kind in BASES]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["7d", "10G", "orders.>", "a..b", "2026-13-01T00:00:00Z", "-1", "{{ x }}"])
)
garbage = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def _set(doc: dict[str, Any], path: tuple, value: Any) -> None:
    node: Any = doc
    for key, nxt in itertools.pairwise(path):
        if isinstance(key, int):
            while len(node) <= key:
                node.append({})
            if not isinstance(node[key], (dict, list)):
                node[key] = [] if isinstance(nxt, int) else {}
            node = node[key]
        else:
            if not isinstance(node.get(key), (dict, list)):
                node[key] = [] if isinstance(nxt, int) else {}
            node = node[key]
    last = path[-1]
    if isinstance(last, int):
        while len(node) <= last:
            node.append(None)
    node[last] = value


def validate_text(text: str) -> tuple[list, list]:
    """Render, parse and validate one file's text as the loader does (no disk)."""
    source, problems = load_text("garbage.yaml", text, {"env": "default", "values": {}})
    if source is None:
        return [], problems
    docs, more = parse(source)
    return validate_loaded(LoadResult(docs, problems + more, [source]), "default", ["default"])


def _dump(doc: Any) -> str:
    out = io.StringIO()
    YAML(typ="safe", pure=True).dump(doc, out)
    return out.getvalue()


@FAST
@given(st.sampled_from(PATHS), garbage)
def test_garbage_in_any_field_is_located(target: tuple, value: Any) -> None:
    kind, path = target
    doc = copy.deepcopy(BASES[kind])
    _set(doc, path, value)
    text = _dump(doc)
    resources, problems = validate_text(text)
    assert resources or problems
    for problem in problems:
        assert problem.location.line >= 1, str(problem)
        assert problem.location.col >= 1, str(problem)
        assert str(problem).startswith("garbage.yaml:")
        assert "\n" not in str(problem)


@FAST
@given(st.text(max_size=200))
def test_any_text_never_raises(text: str) -> None:
    _resources, problems = validate_text(text)
    for problem in problems:
        assert "\n" not in str(problem)
