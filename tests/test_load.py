"""Loading: discovery, Jinja2 rendering, YAML parsing and positions (reconciler/load.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.errors import Location
from reconciler.load import (
    Document,
    SourceFile,
    discover,
    display_path,
    load_manifests,
    load_text,
    parse,
    render,
)

VARS = {"env": "dev", "values": {"replicas": 3, "regions": ["eu", "us"]}}


def load(text: str, variables: dict | None = None) -> tuple[SourceFile | None, list, list]:
    source, problems = load_text("m.yaml", text, VARS if variables is None else variables)
    if source is None:
        return None, [], problems
    docs, more = parse(source)
    return source, docs, problems + more


# -- discovery --------------------------------------------------------------------------


def test_discover_is_recursive_sorted_and_deduplicated(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    for name in ("b/z.yml", "b/a.yaml", "c.yaml", "notes.txt", "a.YAML.bak"):
        (tmp_path / name).write_text("{}\n")
    found, problems = discover([tmp_path, tmp_path / "c.yaml", tmp_path / "missing"])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["b/a.yaml", "b/z.yml", "c.yaml"]
    assert [str(p) for p in problems] == [f"{tmp_path / 'missing'}: no such file or directory"]


def test_display_path_is_relative_to_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m").mkdir()
    assert display_path(tmp_path / "m" / "x.yaml") == "m/x.yaml"
    assert display_path(Path("/elsewhere/x.yaml")) == "/elsewhere/x.yaml"


def test_unreadable_file_is_a_located_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00garbage")
    loaded = load_manifests(["bin.yaml"], VARS)
    assert [d.location for d in loaded.diagnostics] == [Location("bin.yaml", 1, 1)]
    assert str(loaded.diagnostics[0]).startswith("bin.yaml:1:1: invalid UTF-8 (byte 0xff)")


# -- rendering ------------------------------------------------------------------------------


def test_plain_files_are_not_rendered() -> None:
    text = "a: 1\n"
    assert render("m.yaml", text, {}) == (text, None)


def test_values_and_env_are_rendered() -> None:
    _source, docs, problems = load("n: {{ values.replicas }}\ne: {{ env }}\n")
    assert not problems
    assert docs[0].data == {"n": 3, "e": "dev"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: 1\nn: {{ values.replcas }}\n", 'm.yaml:2:4: undefined template variable '
         '"values.replcas" (did you mean "values.replicas"?)'),
        ("a: 1\n\nn: x-{{ valeus.replicas }}\n", 'm.yaml:3:6: undefined template variable '
         '"valeus" (did you mean "values"?)'),
        ("n: {{ values['nope'] }}\n", 'm.yaml:1:4: undefined template variable "values.nope"'),
        ("{% if values.flag %}\na: 1\n{% endif %}\n",
         'm.yaml:1:1: undefined template variable "values.flag"'),
        ("a: {{ 1 / 0 }}\n", "m.yaml:1:4: template error: division by zero"),
        ("a: {{ x\n", "m.yaml:1:1: template syntax error: unexpected end of template, expected "
         "'end of print statement'."),
    ],
)  # fmt: skip
def test_template_errors_name_file_line_and_column(text: str, expected: str) -> None:
    source, _docs, problems = load(text)
    assert source is None
    assert [str(p) for p in problems] == [expected]


# -- positions after rendering ----------------------------------------------------------------


def test_block_templates_map_rendered_lines_back_to_the_source() -> None:
    text = (
        "{% if env == 'prod' %}\n"  # 1
        "a: 1\n"  # 2
        "{% else %}\n"  # 3
        "b: 2\n"  # 4
        "{% endif %}\n"  # 5
        "{% for r in values.regions %}\n"  # 6
        "r_{{ r }}: x\n"  # 7
        "{% endfor %}\n"  # 8
        "c: {{ values.replicas }}\n"  # 9
    )
    source, docs, problems = load(text)
    assert not problems and source is not None
    assert source.exact_lines
    doc = docs[0]
    assert doc.data == {"b": 2, "r_eu": "x", "r_us": "x", "c": 3}
    assert doc.locate(("b",)) == Location("m.yaml", 4, 1)
    assert doc.locate(("r_us",)) == Location("m.yaml", 7, 1)
    assert doc.locate_value(("c",)) == Location("m.yaml", 9, 4)
    assert not doc.locate(("c",)).rendered


def test_whitespace_control_keeps_an_exact_map() -> None:
    text = "a: 1\n{%- if true %}\nb: 2\n{%- endif %}\nc: 3\n"
    source, docs, _problems = load(text)
    assert source is not None and source.exact_lines
    assert docs[0].locate(("c",)) == Location("m.yaml", 5, 1)
    assert docs[0].locate(("b",)) == Location("m.yaml", 3, 1)


def test_expressions_spanning_lines_map_to_their_line() -> None:
    values = {"block": "x: 1\ny: 2\nz: 3"}
    source, docs, problems = load("a: 0\n{{ values.block }}\nb: 4\n", {"values": values})
    assert not problems and source is not None and source.exact_lines
    assert docs[0].locate(("z",)).line == 2
    assert docs[0].locate(("b",)).line == 3


def test_unverifiable_map_says_positions_are_rendered() -> None:
    text = "{% set s %}\nx\ny\n{% endset %}\nn: {{ s | length }}\nbad: [\n"
    source, _docs, problems = load(text)
    assert source is not None and not source.exact_lines
    assert len(problems) == 1
    assert problems[0].location.rendered
    assert str(problems[0]).endswith("(line in rendered template)")


def test_yaml_error_lines_are_mapped_too() -> None:
    text = "{% if false %}\na: 1\nb: 2\n{% endif %}\nc: [1\nd: 2\n"
    _source, _docs, problems = load(text)
    assert [str(p) for p in problems] == [
        "m.yaml:6:2: YAML syntax error: expected ',' or ']', but got ':' "
        "(in the flow sequence that starts on line 5)"
    ]


# -- YAML ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: b: c\n", "m.yaml:1:5: YAML syntax error: mapping values are not allowed here"),
        ("a: 1\na: 2\n", 'm.yaml:2:1: YAML error: duplicate key "a" (in the mapping that starts '
         "on line 1)"),
        ("a: 1\nb: !!int x\n", "m.yaml:2:4: YAML error: cannot read value: invalid literal for "
         "int() with base 10: 'x'"),
        ("a: *nope\n", "m.yaml:1:4: YAML syntax error: found undefined alias 'nope'"),
        ("a: 1\nb: \x07\n", "m.yaml:2:4: YAML syntax error: unacceptable character U+0007: "
         "special characters are not allowed"),
        ("\ta: 1\n", "m.yaml:1:1: YAML syntax error: found character '\\t' that cannot start "
         "any token"),
    ],
)  # fmt: skip
def test_yaml_errors_are_one_located_line(text: str, expected: str) -> None:
    _source, _docs, problems = load(text)
    assert [str(p) for p in problems] == [expected]


def test_timestamps_stay_strings() -> None:
    _source, docs, problems = load("a: 2026-01-02T15:04:05Z\nb: 2026-13-45\nc: 2026-01-01\n")
    assert not problems
    assert docs[0].data == {"a": "2026-01-02T15:04:05Z", "b": "2026-13-45", "c": "2026-01-01"}


def test_documents_keep_their_start_lines() -> None:
    text = "# header\n---\na: 1\n---\n---\n# only a comment\n---\n- x\n---\nscalar\n"
    _source, docs, problems = load(text)
    assert not problems
    assert [(d.index, d.start_line, d.data) for d in docs] == [
        (0, 3, {"a": 1}),
        (3, 8, ["x"]),
        (4, 10, "scalar"),
    ]
    assert docs[1].locate() == Location("m.yaml", 8, 1)


def test_locate_falls_back_to_the_nearest_parent() -> None:
    text = "a:\n  b: {c: 1}\n  l:\n    - x\n    - {y: 2}\n  1: one\n"
    _source, docs, _problems = load(text)
    doc: Document = docs[0]
    assert doc.locate(("a", "b", "c")) == Location("m.yaml", 2, 7)
    assert doc.locate_value(("a", "b", "c")) == Location("m.yaml", 2, 10)
    assert doc.locate(("a", "b", "missing")) == Location("m.yaml", 2, 3)
    assert doc.locate(("a", "l", 1, "y")) == Location("m.yaml", 5, 8)
    assert doc.locate(("a", "l", 7)) == Location("m.yaml", 3, 3)
    assert doc.locate(("a", 1)) == Location("m.yaml", 6, 3)
    assert doc.locate_value(("a", 1)) == Location("m.yaml", 6, 6)
    assert doc.locate(("a", [1])) == Location("m.yaml", 1, 1)  # unhashable: no crash


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\n{%- if true -%}\n  b: 2\n{%- endif %}\nc: 3",
        "{% for r in values.regions %}\n- {{ r }}\n{%- endfor %}\n",
        "{% raw %}{{ not rendered }}\n{% endraw %}\nx: 1\n",
        "{# a\ncomment #}\n{% with n = 2 %}\nn: {{ n }}\n{% endwith %}\n",
        "{% if env == 'dev' %}\r\nwindows: true\r\n{% endif %}\r\n",
        "a: {{ values.replicas }}\n\n\n",
        "{% set s %}x\n{% endset %}s: {{ s | length }}\n",
    ],
)
def test_positions_never_change_what_is_rendered(text: str) -> None:
    plain, problem = render("m.yaml", text, VARS)
    assert problem is None
    source, _ = load_text("m.yaml", text, VARS)
    assert source is not None and source.rendered == plain
    if source.line_map is not None:
        assert len(source.line_map) == plain.count("\n") + 1


def test_yaml_12_flow_sequence_with_colons_is_read(tmp_path) -> None:
    """libyaml (YAML 1.1) refuses ``[nats://h:4222]``; the YAML 1.2 parser reads it."""
    from reconciler.environments import load_project

    config = tmp_path / "jsops.yaml"
    config.write_text("project: x\nenvironments:\n  dev:\n    servers: [nats://127.0.0.1:4222]\n")
    project = load_project(config)
    assert project.config.environments["dev"].servers == ["nats://127.0.0.1:4222"]
