"""Loading: discover manifest files, render them with Jinja2, parse the YAML.

Parsing is done twice only when needed: every file is parsed once with the fast
C-backed safe loader (libyaml via ruamel.yaml.clib), which yields plain data; the
round-trip loader, which keeps the line and column of every key but is about seven
times slower, runs only for a file in which something must be located (an error,
or a plan that shows where a resource was declared). Large repositories therefore
pay for positions only where they are used.

Positions refer to the file as the user wrote it whenever the template has no
block statements (``{% if %}``, ``{% for %}``): expressions (``{{ values.x }}``)
never add or remove lines. In a file with block statements, lines may move, so a
position there refers to the rendered text and the message says so.
"""

from __future__ import annotations

import os
import re
import traceback
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from reconciler.errors import Diagnostic, Location

YAML_SUFFIXES = (".yaml", ".yml")
_BLOCK_TAG = re.compile(r"{%")
_DOC_START = re.compile(r"^---(?:\s|$)", re.MULTILINE)

Path_ = tuple[str | int, ...]


def display_path(path: Path) -> str:
    """A path as users will want to read it: relative to the working dir when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


@dataclass
class SourceFile:
    """One manifest file: its text as written, as rendered, and (lazily) its positions."""

    path: str
    text: str
    rendered: str
    templated_blocks: bool
    _positions: list[Any] | None = field(default=None, repr=False)

    def positions(self) -> list[Any]:
        """Round-trip parse of the rendered text: one CommentedMap/Seq per document."""
        if self._positions is None:
            yaml = YAML(typ="rt")
            try:
                self._positions = [d for d in yaml.load_all(self.rendered)]
            except YAMLError:
                self._positions = []
        return self._positions


@dataclass
class Document:
    """One YAML document (one resource) of a manifest file, as plain data."""

    source: SourceFile
    index: int
    data: Any
    start_line: int

    @property
    def file(self) -> str:
        return self.source.path

    def locate(self, path: Path_ = ()) -> Location:
        """Where ``path`` (keys and list indexes) is in the file; the nearest parent if absent."""
        docs = self.source.positions()
        node = docs[self.index] if self.index < len(docs) else None
        line, col = self.start_line, 1
        for key in path:
            if isinstance(node, CommentedMap) and key in node:
                kl, kc = node.lc.key(key)
                line, col = kl + 1, kc + 1
                node = node[key]
            elif isinstance(node, CommentedSeq) and isinstance(key, int) and key < len(node):
                il, ic = node.lc.item(key)
                line, col = il + 1, ic + 1
                node = node[key]
            else:
                break
        if path == () and isinstance(node, CommentedMap) and node:
            first = next(iter(node))
            kl, kc = node.lc.key(first)
            line, col = kl + 1, kc + 1
        return Location(self.file, line, col)

    def locate_value(self, path: Path_) -> Location:
        """Where the value at ``path`` starts (rather than its key)."""
        docs = self.source.positions()
        node = docs[self.index] if self.index < len(docs) else None
        parents = path[:-1]
        for key in parents:
            try:
                node = node[key]  # type: ignore[index]
            except (KeyError, IndexError, TypeError):
                return self.locate(path)
        last = path[-1] if path else None
        if isinstance(node, CommentedMap) and last in node:
            vl, vc = node.lc.value(last)
            return Location(self.file, vl + 1, vc + 1)
        return self.locate(path)


@dataclass
class LoadResult:
    documents: list[Document]
    diagnostics: list[Diagnostic]
    files: list[SourceFile]


def discover(paths: Iterable[str | Path]) -> tuple[list[Path], list[Diagnostic]]:
    """Every *.yaml / *.yml file under ``paths`` (recursive, sorted, no duplicates)."""
    found: list[Path] = []
    problems: list[Diagnostic] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            candidates = sorted(
                p for p in path.rglob("*") if p.suffix in YAML_SUFFIXES and p.is_file()
            )
        elif path.is_file():
            candidates = [path]
        else:
            problems.append(
                Diagnostic(Location(str(raw)), "no such file or directory", code="not_found")
            )
            continue
        for candidate in candidates:
            key = candidate.resolve()
            if key not in seen:
                seen.add(key)
                found.append(candidate)
    return found, problems


def _jinja_env() -> jinja2.Environment:
    return jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def _template_error_location(exc: Exception, name: str, text: str) -> tuple[int, int]:
    line = getattr(exc, "lineno", None) or 0
    if not line:
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            if frame.filename == name and frame.lineno:
                line = frame.lineno
                break
    col = 1
    lines = text.splitlines()
    if line and line <= len(lines):
        match = re.search(r"'([^']+)' is undefined|has no attribute '([^']+)'", str(exc))
        token = match and (match.group(1) or match.group(2))
        where = lines[line - 1].find(token) if token else -1
        if where < 0:
            where = lines[line - 1].find("{{")
        col = where + 1 if where >= 0 else 1
    return line, col


def render(
    path: str, text: str, variables: Mapping[str, Any], env: jinja2.Environment | None = None
) -> tuple[str | None, Diagnostic | None]:
    """Render a manifest template; an error becomes a located Diagnostic."""
    if "{{" not in text and "{%" not in text and "{#" not in text:
        return text, None
    env = env or _jinja_env()
    try:
        template = env.from_string(text)
        template.filename = path
        return template.render(**variables), None
    except jinja2.TemplateSyntaxError as exc:
        return None, Diagnostic(
            Location(path, exc.lineno or 0, 1),
            f"template syntax error: {exc.message}",
            code="template_syntax",
        )
    except jinja2.UndefinedError as exc:
        line, col = _template_error_location(exc, path, text)
        message = str(exc.message or exc)
        match = re.match(r"'(\w+)' is undefined", message)
        if match:
            message = f"undefined template variable '{match.group(1)}'"
        else:
            message = f"undefined template variable: {message}"
        return None, Diagnostic(Location(path, line, col), message, code="template_undefined")
    except Exception as exc:  # a template may raise anything (filters, arithmetic)
        line, col = _template_error_location(exc, path, text)
        return None, Diagnostic(
            Location(path, line, col), f"template error: {exc}", code="template_error"
        )


def _yaml_error(path: str, exc: YAMLError) -> Diagnostic:
    if isinstance(exc, MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if mark is not None:
            return Diagnostic(
                Location(path, mark.line + 1, mark.column + 1),
                f"YAML syntax error: {problem}",
                code="yaml_syntax",
            )
        return Diagnostic(Location(path), f"YAML syntax error: {problem}", code="yaml_syntax")
    return Diagnostic(Location(path), f"YAML error: {exc}", code="yaml_syntax")


def _doc_start_lines(text: str) -> list[int]:
    """1-based first line of each YAML document, from the ``---`` separators."""
    starts = [m.start() for m in _DOC_START.finditer(text)]
    lines: list[int] = []
    if not starts or (text[: starts[0]].strip(" \t\r\n") and not _only_comments(text[: starts[0]])):
        lines.append(1)
    for pos in starts:
        lines.append(text.count("\n", 0, pos) + 2)
    return lines


def _only_comments(chunk: str) -> bool:
    return all(not ln.strip() or ln.lstrip().startswith(("#", "%")) for ln in chunk.splitlines())


def _plain(node: Any) -> Any:
    """Round-trip containers and scalars as plain Python data (as the safe loader gives)."""
    if isinstance(node, dict):
        return {_plain(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    for base in (int, float, str):
        if isinstance(node, base):
            return base(node)
    return node


def parse(source: SourceFile) -> tuple[list[Document], list[Diagnostic]]:
    """Parse one rendered file into its non-empty documents."""
    try:
        raw_docs = list(YAML(typ="safe", pure=False).load_all(source.rendered))
    except YAMLError:
        # libyaml follows YAML 1.1 in places where the round-trip (YAML 1.2) parser is
        # more lenient (e.g. "[nats://h:4222]" in a flow sequence): the round-trip parser
        # decides, and words its errors better.
        try:
            raw_docs = [_plain(d) for d in YAML(typ="rt").load_all(source.rendered)]
        except YAMLError as exc:
            return [], [_yaml_error(source.path, exc)]
    starts = _doc_start_lines(source.rendered)
    documents = []
    for index, data in enumerate(raw_docs):
        if data is None:
            continue
        start = starts[index] if index < len(starts) else 1
        documents.append(Document(source, index, data, start))
    return documents, []


def load_manifests(paths: Sequence[str | Path], variables: Mapping[str, Any]) -> LoadResult:
    """Discover, render and parse every manifest file; collect every problem."""
    files, diagnostics = discover(paths)
    env = _jinja_env()
    documents: list[Document] = []
    sources: list[SourceFile] = []
    for path in files:
        shown = display_path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            diagnostics.append(Diagnostic(Location(shown), f"cannot read file: {exc}"))
            continue
        rendered, problem = render(shown, text, variables, env)
        if problem is not None:
            diagnostics.append(problem)
            continue
        assert rendered is not None
        source = SourceFile(shown, text, rendered, bool(_BLOCK_TAG.search(text)))
        sources.append(source)
        docs, problems = parse(source)
        documents.extend(docs)
        diagnostics.extend(problems)
    return LoadResult(documents, diagnostics, sources)


def iter_yaml_files(root: Path) -> Iterator[Path]:
    for dirpath, _dirs, names in os.walk(root):
        for name in sorted(names):
            if name.endswith(YAML_SUFFIXES):
                yield Path(dirpath) / name
