"""``jsops fmt``: one canonical layout for manifest files, comments and templates kept.

The layout (a ruamel.yaml round trip, so comments, quotes and number spellings stay):

* each manifest's keys in the order ``apiVersion``, ``kind``, ``metadata``, ``spec``
  (other keys after, as written); ``metadata`` starts with ``name``, ``stream``,
  ``account``, ``tenant``, ``environments``, ``prevent_destroy``;
* mappings indented by 2 spaces, block sequences by 2 more (``  - item``);
* a collection written in flow style (``[a, b]``, ``{name: X}``) stays so while its line
  fits in :data:`WIDTH` columns, otherwise it becomes block style; block stays block;
* documents separated by ``---`` (none before the first, unless comments precede it),
  no trailing whitespace, one newline at the end.

A comment line between two keys travels with the key above it. Documents that are not
jsops manifests (no ``apiVersion: jsops/v1``) keep their key order. A file with no
jsops manifest at all is left alone.

Jinja templates: each ``{{ expression }}`` is swapped for a placeholder scalar, the file
is formatted, and the expressions are put back verbatim. A file with ``{% ... %}`` or
``{# ... #}`` is left as written (a block can cut YAML anywhere), and so is any file
whose formatted text would not parse back to the same data (checked every time): such
files are reported as skipped, with the reason. Formatting twice is formatting once.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString

from reconciler.errors import JsopsError
from reconciler.load import discover, display_path

WIDTH = 100
TOP_ORDER = ("apiVersion", "kind", "metadata", "spec")
METADATA_ORDER = ("name", "stream", "account", "tenant", "environments", "prevent_destroy")
API_VERSION = "jsops/v1"

_EXPRESSION = re.compile(r"\{\{.*?\}\}", re.DOTALL)
_BLOCK = re.compile(r"\{%|\{#")
_PLACEHOLDER = "__jsops_fmt_{}__"
_HEADER_LINE = re.compile(r"^(\s*(#.*)?)$")


@dataclass(frozen=True, slots=True)
class FormatResult:
    """One file: its new text (None when left alone), and why it was left alone."""

    path: Path
    text: str | None
    original: str
    skipped: str | None = None

    @property
    def changed(self) -> bool:
        return self.text is not None and self.text != self.original


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 1_000_000  # never fold: long flow collections become block instead
    return yaml


def _reorder(mapping: CommentedMap, order: Sequence[str]) -> None:
    keys = [k for k in order if k in mapping] + [k for k in mapping if k not in order]
    for key in keys:
        mapping.move_to_end(key)


def _scalar_len(value: Any) -> int:
    if isinstance(value, DoubleQuotedScalarString | SingleQuotedScalarString):
        return len(str(value)) + 2
    if value is None:
        return 4
    if isinstance(value, bool):
        return 5
    return len(str(value))


def _flow_len(node: Any) -> int:
    """The length of ``node`` written on one line in flow style."""
    if isinstance(node, dict):
        items = [_scalar_len(k) + 2 + _flow_len(v) for k, v in node.items()]
        return 2 + sum(items) + 2 * max(len(items) - 1, 0)
    if isinstance(node, list):
        items = [_flow_len(v) for v in node]
        return 2 + sum(items) + 2 * max(len(items) - 1, 0)
    return _scalar_len(node)


def _flow_width(node: Any, indent: int, key: Any) -> None:
    """Block style for a flow collection whose line would pass WIDTH; recursive."""
    if not isinstance(node, CommentedMap | CommentedSeq):
        return
    if node.fa.flow_style():
        head = indent + (_scalar_len(key) + 2 if key is not None else 2)
        if head + _flow_len(node) <= WIDTH:
            return
        node.fa.set_block_style()
    if isinstance(node, CommentedMap):
        for k, v in node.items():
            _flow_width(v, indent + 2 if key is not None else indent, k)
    else:
        for v in node:
            _flow_width(v, indent + 4, None)


def _is_manifest(doc: Any) -> bool:
    return isinstance(doc, CommentedMap) and doc.get("apiVersion") == API_VERSION


def _split_header(text: str) -> tuple[str, str]:
    """Leading comment lines and a first ``---`` (ruamel drops comments above it)."""
    lines = text.splitlines(keepends=True)
    for index, line in enumerate(lines):
        if line.rstrip() == "---":
            if all(_HEADER_LINE.match(prev.rstrip("\n")) for prev in lines[:index]):
                head = "".join(lines[:index])
                return (head + "---\n" if head.strip() else ""), "".join(lines[index + 1 :])
            break
        if not _HEADER_LINE.match(line.rstrip("\n")):
            break
    return "", text


def _plain(data: Any) -> Any:
    """Data without ruamel's round-trip types, for comparing two parses."""
    if isinstance(data, dict):
        return {_plain(k): _plain(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_plain(v) for v in data]
    if isinstance(data, str):
        return str(data)
    return data


def _indent_comments(lines: list[str]) -> list[str]:
    out = list(lines)
    indent = 0
    for index in range(len(out) - 1, -1, -1):
        line = out[index]
        stripped = line.lstrip()
        if stripped.startswith("#"):
            out[index] = " " * indent + stripped
        elif stripped and stripped != "---":
            indent = len(line) - len(stripped)
        elif stripped == "---":
            indent = 0
    return out


def _same(before: Any, formatted: str, expressions: int) -> bool:
    """The safety check: the same data, and every template expression exactly once."""
    try:
        after = _plain(list(_yaml().load_all(_split_header(formatted)[1])))
    except YAMLError:
        return False
    return after == before and all(
        formatted.count(_PLACEHOLDER.format(i)) == 1 for i in range(expressions)
    )


def format_text(text: str) -> tuple[str | None, str | None]:
    """(formatted text, None), or (None, why the text is left as written)."""
    if _BLOCK.search(text):
        return None, "Jinja blocks ({% %} or {# #}): left as written"
    expressions: list[str] = []

    def hold(match: re.Match[str]) -> str:
        expressions.append(match.group(0))
        return _PLACEHOLDER.format(len(expressions) - 1)

    held = _EXPRESSION.sub(hold, text)
    header, body = _split_header(held)
    yaml = _yaml()
    try:
        docs = list(yaml.load_all(body))
    except YAMLError as exc:
        problem = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid YAML"
        return None, f"does not parse as YAML ({problem}): left as written"
    if not any(_is_manifest(d) for d in docs):
        return None, "no jsops manifest in this file: left as written"
    for doc in docs:
        if _is_manifest(doc):
            _reorder(doc, TOP_ORDER)
            if isinstance(doc.get("metadata"), CommentedMap):
                _reorder(doc["metadata"], METADATA_ORDER)
        _flow_width(doc, 0, None)
    out = io.StringIO()
    yaml.dump_all(docs, out)
    lines = [line.rstrip() for line in out.getvalue().strip("\n").splitlines()]
    before = _plain(list(_yaml().load_all(body)))
    # Comment lines indented as the line they precede; kept as they were if that would
    # touch a block scalar's text (the check below sees it).
    for candidate in (_indent_comments(lines), lines):
        formatted = header + "\n".join(candidate) + "\n"
        if _same(before, formatted, len(expressions)):
            break
    else:
        return None, "formatting would change its meaning: left as written"
    for index, expression in enumerate(expressions):
        formatted = formatted.replace(_PLACEHOLDER.format(index), expression)
    return formatted, None


def format_paths(paths: Sequence[str | Path], within: Path | None = None) -> list[FormatResult]:
    """Format every *.yaml / *.yml file under ``paths`` (nothing is written here); a file
    outside ``within`` (a symbolic link out of the project) is an error, never written
    through (``reconciler.load.discover``)."""
    files, problems = discover(paths, within)
    if problems:
        raise JsopsError("\n".join(str(p) for p in problems))
    results = []
    for path in files:
        try:
            original = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise JsopsError(f"{display_path(path)}: cannot read ({exc})") from None
        text, skipped = format_text(original)
        results.append(FormatResult(path, text, original, skipped))
    return results


def write_results(results: Sequence[FormatResult]) -> list[Path]:
    """Write the files that change; the paths written."""
    written = []
    for result in results:
        if result.changed and result.text is not None:
            result.path.write_text(result.text, encoding="utf-8")
            written.append(result.path)
    return written
