"""Fuzz of the loader and the CLI: random YAML, random field values, random template text.

Whatever the input, ``jsops validate`` ends with exit 0 or 1, never a traceback or an
``internal error``; every error line is located (``file:line:col: message``); and for
input that does not validate, ``jsops plan`` sends nothing to the server. Examples are
few and derandomized, so the test is quick and repeatable.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.project import TestProject, make_project
from harness.servers import JsWriteCounter, SingleServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.models.consumer import ConsumerSpec
from reconciler.models.stream import StreamSpec

LOCATED = re.compile(r"^manifests/m\.yaml:\d+:\d+: \S")
FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

YAML_ALPHABET = [*"ab:-[]{}&*!|>'\"#\n \t019.,?%@`~\\=<", "\u200b", "é", "\ufeff", "\x85"]
yaml_text = st.text(alphabet=st.sampled_from(YAML_ALPHABET), max_size=120)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["1h", "-5s", "10GiB", "1.5KB", "unlimited", "0s", "2026-13-01T00:00:00Z"])
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
FIELDS = sorted({*StreamSpec.model_fields, *ConsumerSpec.model_fields, "unknown_field"})
specs = st.dictionaries(st.sampled_from(FIELDS), values, max_size=4)
names = st.text(max_size=12) | st.sampled_from(["ORDERS", "a.b", "", "ОRDERS", "x" * 300])

TEMPLATE_PIECES = [
    "{{", "}}", "{%", "%}", "{#", "#}", "values", "env", ".", "|", "upper", "default", "(",
    ")", "'", '"', "x", " ", "\n", "for", "in", "if", "endif", "endfor", "set", "=", "__class__",
    "*", "**", "%", "9", "range", "lipsum", "[", "]", "-", "raw", "endraw", "1/0",
]  # fmt: skip
templates = st.lists(st.sampled_from(TEMPLATE_PIECES), max_size=25).map("".join)


@pytest.fixture(scope="module")
def fuzz_project(nats_server: SingleServer) -> Iterator[tuple[TestProject, JsWriteCounter]]:
    """One project and one request counter for all examples (only invalid input is planned,
    so the counter must see no request at all)."""
    base = Path(tempfile.mkdtemp(prefix="fuzz-"))
    envs = {"test": {"servers": [nats_server.url], "values": {"n": 1, "s": "x", "l": [1, 2]}}}
    with JsWriteCounter(nats_server.url) as counter:
        yield make_project(base, nats_server.url, envs=envs), counter
    assert counter.requests == []
    shutil.rmtree(base, ignore_errors=True)


Fuzz = tuple[TestProject, JsWriteCounter]


def _check(fuzz: Fuzz, text: str) -> None:
    proj, counter = fuzz
    (proj.root / "manifests" / "m.yaml").write_text(text, encoding="utf-8", errors="surrogatepass")
    code, out, err = proj.cli("validate")
    assert code in (0, 1), (text, code, err)
    assert "Traceback" not in err and "internal error" not in err, (text, err)
    if code == 0:
        return
    lines = err.strip().splitlines()
    assert lines, text
    for line in lines:
        assert LOCATED.match(line), (text, line)
    before = len(counter.requests)
    code, out, err = proj.cli("plan")
    assert code == 1 and out == "", (text, err)
    assert "Traceback" not in err and "internal error" not in err, (text, err)
    assert len(counter.requests) == before, (text, counter.requests[before:])


def _manifest(kind: str, name: Any, spec: dict[str, Any]) -> str:
    metadata: dict[str, Any] = {"name": name}
    if kind == "Consumer":
        metadata["stream"] = "S"
    return json.dumps({"apiVersion": "jsops/v1", "kind": kind, "metadata": metadata, "spec": spec})


@FUZZ
@given(text=yaml_text)
def test_random_yaml(fuzz_project: Fuzz, text: str) -> None:
    _check(fuzz_project, text)


@FUZZ
@given(kind=st.sampled_from(["Stream", "Consumer"]), name=names, spec=specs)
def test_random_field_values(
    fuzz_project: Fuzz, kind: str, name: Any, spec: dict[str, Any]
) -> None:
    text = _manifest(kind, name, spec)
    if kind == "Consumer":
        text = _manifest("Stream", "S", {"subjects": ["fuzz.s"]}) + "\n---\n" + text
    _check(fuzz_project, text)


@FUZZ
@given(template=templates)
def test_random_template_text(fuzz_project: Fuzz, template: str) -> None:
    text = (
        "apiVersion: jsops/v1\nkind: Stream\nmetadata: {name: T}\n"
        f"spec:\n  subjects: [fuzz.t]\n  description: {template}\n"
    )
    _check(fuzz_project, text)
