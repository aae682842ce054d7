"""Loading: discover manifest files, render them with Jinja2, parse the YAML.

Every file is composed once by the C-backed libyaml parser (ruamel.yaml.clib); the
plain data is constructed from the composed nodes, which are kept: their marks are
the positions, so locating a key costs nothing more. (The round-trip loader is
about seven times slower, and runs only to word a syntax error better.)

Positions refer to the file as the user wrote it. Rendering may move lines
(``{% if %}`` and ``{% for %}`` blocks, expressions whose value spans lines), so a
templated file is rendered a second time with a line marker after every newline of
its literal text; the markers give each rendered line the source line it came
from (a line produced inside an expression maps to the line of the expression).
The markers are kept only when removing them gives back the plain rendering
exactly; when they do not (a filter that measures or reshapes a ``{% set %}``
block, say), positions refer to the rendered text and every message located in
that file says so: "(line in rendered template)". A column after an expression
is mapped back when the rest of the line is literal text; otherwise it is the
column in the rendered line.

Input is bounded before it can cost much: a file is read as UTF-8 (a bad byte is a
located error), flow nesting is measured by a linear scan before libyaml sees the text
(its composer recurses in C, and crashes on very deep input), and each composed document
is checked for nesting depth (:data:`MAX_DEPTH`), recursive aliases and alias expansion
(:data:`MAX_ALIAS_NODES`, the "billion laughs") before anything is constructed from it.

YAML timestamps are not constructed: ``2026-01-02T15:04:05Z`` stays a string, so
the models check it (a bad date is then a located error, not a crash).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.constructor import ConstructorError, RoundTripConstructor, SafeConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.resolver import VersionedResolver

from reconciler.diagnostics import one_line
from reconciler.errors import Diagnostic, KeyPath, Location
from reconciler.parse_cache import ParseCache, key_of

YAML_SUFFIXES = (".yaml", ".yml")
MAX_DEPTH = 64  # nested collections in one document (manifests need fewer than 10)
MAX_ALIAS_NODES = 100_000  # nodes that aliases may add to a document by repeating others
MAX_SCAN_DEPTH = 1_000  # flow nesting the text scan lets through to libyaml
_TEMPLATE_OPENERS = ("{{", "{%", "{#")
# Tags whose body text a template can capture and inspect (set blocks, filter
# blocks, macros, call blocks): there, markers could change the result.


def display_path(path: Path) -> str:
    """A path as users will want to read it: relative to the working dir when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _located_construct(base: type[SafeConstructor]) -> type[SafeConstructor]:
    """A constructor that keeps timestamps as strings and locates bad scalar values.

    A value error inside YAML construction (``!!int x``) becomes a located
    ConstructorError instead of escaping as a bare ValueError.
    """

    class Constructor(base):  # type: ignore[misc, valid-type]  # safe or round-trip: a run-time base
        def construct_object(self, node: Any, deep: bool = False) -> Any:
            try:
                return super().construct_object(node, deep)
            except YAMLError:
                raise
            except (ValueError, TypeError, OverflowError, AttributeError) as exc:
                raise ConstructorError(
                    None, None, f"cannot read value: {exc}", node.start_mark
                ) from None

    Constructor.add_constructor("tag:yaml.org,2002:timestamp", base.construct_yaml_str)
    Constructor.__name__ = f"Located{base.__name__}"
    return Constructor


_SafeConstructor = _located_construct(SafeConstructor)
_RoundTripConstructor = _located_construct(RoundTripConstructor)


class _CachedResolver(VersionedResolver):
    """ruamel looks the YAML version up again for every scalar (through a failing
    attribute lookup with the C parser): a third of all parse time. One file has one
    version, so it is looked up once per loader."""

    _cached_resolver: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._scalar_tags: dict[tuple[Any, Any], Any] = {}

    @property
    def versioned_resolver(self) -> Any:
        if self._cached_resolver is None:
            self._cached_resolver = super().versioned_resolver
        return self._cached_resolver

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        # Manifests repeat the same plain scalars ("jsops/v1", "Stream", "explicit"...):
        # resolving one means trying every implicit-type regex, so remember the answer.
        if kind is ScalarNode:
            key = (value, implicit)
            tag = self._scalar_tags.get(key)
            if tag is None:
                tag = self._scalar_tags[key] = super().resolve(kind, value, implicit)
            return tag
        return super().resolve(kind, value, implicit)


def _safe_yaml(pure: bool = False) -> YAML:
    yaml = YAML(typ="safe", pure=pure)
    yaml.Resolver = _CachedResolver
    yaml.Constructor = _SafeConstructor
    return yaml


def _rt_yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.Constructor = _RoundTripConstructor
    return yaml


@dataclass
class SourceFile:
    """One manifest file: its text as written, as rendered, and (lazily) its positions.

    ``line_map[i]`` is the source line (1-based) of rendered line ``i + 1``; it is
    None when the file is not a template (the lines are the same) or when the map
    could not be verified (``exact_lines`` is then False).
    """

    path: str
    text: str
    rendered: str
    templated: bool = False
    line_map: list[int] | None = None
    _positions: list[Node | None] | None = field(default=None, repr=False)

    @property
    def exact_lines(self) -> bool:
        """True when positions refer to the file as written."""
        return not self.templated or self.line_map is not None

    def location(self, rendered_line: int, col: int) -> Location:
        """A Location for a 1-based line and column of the rendered text."""
        line = rendered_line
        if self.line_map is not None and 1 <= rendered_line <= len(self.line_map):
            line = self.line_map[rendered_line - 1]
            col = self._source_column(rendered_line, line, col)
        return Location(self.path, line, col, rendered=not self.exact_lines and line > 0)

    def _source_column(self, rendered_line: int, line: int, col: int) -> int:
        """The column in the source line, when the text around it is literal.

        An expression earlier on the line shifts columns: the rendered text from the
        column to the end of the line, found at the end of the source line, gives
        the source column back. Otherwise the rendered column is kept.
        """
        rendered = _line_at(self.rendered, rendered_line)
        source = _line_at(self.text, line)
        if rendered == source or rendered[: col - 1] == source[: col - 1]:
            return col
        rest = rendered[col - 1 :]
        if rest and source.endswith(rest):
            return len(source) - len(rest) + 1
        return col

    def release_positions(self) -> None:
        """Drop the composed nodes (a later ``positions()`` composes the file again)."""
        self._positions = None

    def positions(self) -> list[Node | None]:
        """The composed YAML node of each document (their marks are the positions)."""
        if self._positions is None:
            try:
                self._positions = list(_safe_yaml().compose_all(self.rendered))
            except YAMLError:
                try:  # YAML 1.2 where libyaml (1.1) refuses, as parse() does
                    self._positions = list(_safe_yaml(pure=True).compose_all(self.rendered))
                except YAMLError:
                    self._positions = []
        return self._positions


@dataclass(slots=True)
class Document:
    """One YAML document (one resource) of a manifest file, as plain data."""

    source: SourceFile
    index: int
    data: Any
    start_line: int
    name_location: Location | None = None  # of metadata.name, kept from the parse

    @property
    def file(self) -> str:
        return self.source.path

    def _node(self) -> Node | None:
        docs = self.source.positions()
        return docs[self.index] if self.index < len(docs) else None

    def locate(self, path: KeyPath = ()) -> Location:
        """Where ``path`` (keys and list indexes) is in the file; the nearest parent if absent."""
        node = self._node()
        line, col = self.start_line, 1
        for key in path:
            found = _child(node, key)
            if found is None:
                break
            mark, node = found
            line, col = mark.line + 1, mark.column + 1
        if path == () and isinstance(node, MappingNode) and node.value:
            mark = node.value[0][0].start_mark
            line, col = mark.line + 1, mark.column + 1
        return self.source.location(line, col)

    def locate_value(self, path: KeyPath) -> Location:
        """Where the value at ``path`` starts (rather than its key)."""
        node = self._node()
        for key in path:
            found = _child(node, key)
            if found is None:
                return self.locate(path)
            _mark, node = found
        if not path or node is None:
            return self.locate(path)
        mark = node.start_mark
        return self.source.location(mark.line + 1, mark.column + 1)


def _child(node: Node | None, key: Any) -> tuple[Any, Node] | None:
    """The mark of ``key`` (a mapping key or a list index) in ``node``, and its value node."""
    if isinstance(node, MappingNode):
        for key_node, value_node in reversed(node.value):
            if _is_key(key_node, key):
                return key_node.start_mark, value_node
    elif isinstance(node, SequenceNode) and type(key) is int and 0 <= key < len(node.value):
        item = node.value[key]
        return item.start_mark, item
    return None


def _is_key(node: Node, key: Any) -> bool:
    if not isinstance(node, ScalarNode):
        return False
    tag = node.tag or ""
    if key is None:
        return tag.endswith(":null")
    if isinstance(key, bool):
        return tag.endswith(":bool") and node.value.lower() == str(key).lower()
    if isinstance(key, int):
        return tag.endswith(":int") and node.value == str(key)
    return isinstance(key, str) and node.value == key and not tag.endswith((":int", ":null"))


def _line_at(text: str, line: int) -> str:
    lines = text.split("\n")
    return lines[line - 1].rstrip("\r") if 1 <= line <= len(lines) else ""


@dataclass
class LoadResult:
    documents: list[Document]
    diagnostics: list[Diagnostic]
    files: list[SourceFile]


def discover(
    paths: Iterable[str | Path], within: Path | None = None
) -> tuple[list[Path], list[Diagnostic]]:
    """Every *.yaml / *.yml file under ``paths`` (recursive, sorted, no duplicates).

    A file is read only from inside ``within`` (the project's directory, for the paths
    jsops.yaml names), or else from inside the directory it was found in. A symbolic
    link a pull request adds (``manifests/x.yaml -> ~/.kube/config``, a creds file) is
    a located error and is never opened: CI renders the manifests of a pull request
    next to production credentials. A file named on the command line is read as
    named."""
    found: list[Path] = []
    problems: list[Diagnostic] = []
    seen: set[Path] = set()
    bound = within.resolve() if within is not None else None
    for raw in paths:
        path = Path(raw).expanduser()
        inside: Path | None = bound
        if path.is_dir():
            candidates = sorted(
                p for p in path.rglob("*") if p.suffix in YAML_SUFFIXES and p.is_file()
            )
            inside = bound or path.resolve()
        elif path.is_file():
            candidates = [path]
        else:
            problems.append(
                Diagnostic(Location(str(raw)), "no such file or directory", code="not_found")
            )
            continue
        for candidate in candidates:
            key = candidate.resolve()
            if inside is not None and not key.is_relative_to(inside):
                problems.append(_outside(candidate, inside, within is not None))
                continue
            if key not in seen:
                seen.add(key)
                found.append(candidate)
    return found, problems


def _outside(path: Path, inside: Path, project: bool) -> Diagnostic:
    where = "the project's directory" if project else display_path(inside)
    how = (
        "is a symbolic link that leads outside"
        if path.absolute().is_relative_to(inside) or path.is_symlink()
        else "is outside"
    )
    return Diagnostic(
        Location(display_path(path)),
        f"{how} {where}: not read (manifests are read only from inside it)",
        code="outside_project",
    )


def render(
    path: str, text: str, variables: Mapping[str, Any], env: Any = None
) -> tuple[str | None, Diagnostic | None]:
    """Render a manifest template; an error becomes a located Diagnostic."""
    if not is_template(text):
        return text, None
    from reconciler.templating import render as render_template  # Jinja2 only when needed

    return render_template(path, text, variables, env)


def is_template(text: str) -> bool:
    return any(opener in text for opener in _TEMPLATE_OPENERS)


_DUPLICATE_KEY = re.compile(r'^found duplicate key (".*?"|\S+) with value')
_CONTEXT = re.compile(r"^while (?:parsing|scanning|constructing) (?:an? )?(.+)$")


def _yaml_error(source: SourceFile, exc: YAMLError) -> Diagnostic:
    path = source.path
    label = "YAML error" if isinstance(exc, ConstructorError) else "YAML syntax error"
    if isinstance(exc, MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = one_line(exc.problem or exc.context or "invalid YAML")
        duplicate = _DUPLICATE_KEY.match(problem)
        if duplicate:
            label, problem = "YAML error", f"duplicate key {duplicate.group(1)}"
        context = _CONTEXT.match(exc.context or "") if exc.problem else None
        if (
            context
            and exc.context_mark is not None
            and "next token" not in context.group(1)
            and (mark is None or exc.context_mark.line != mark.line)
        ):
            started = source.location(exc.context_mark.line + 1, exc.context_mark.column + 1)
            problem += f" (in the {context.group(1)} that starts on line {started.line})"
        if mark is not None:
            return Diagnostic(
                source.location(mark.line + 1, mark.column + 1),
                f"{label}: {problem}",
                code="yaml_syntax",
            )
        return Diagnostic(Location(path), f"{label}: {problem}", code="yaml_syntax")
    if isinstance(exc, ReaderError) and isinstance(exc.position, int):
        text = source.rendered
        pos = exc.position
        line = text.count("\n", 0, pos) + 1
        col = pos - (text.rfind("\n", 0, pos) + 1) + 1
        char = (
            exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or " ")
        )
        return Diagnostic(
            source.location(line, col),
            f"{label}: unacceptable character U+{char:04X}: {exc.reason}",
            code="yaml_syntax",
        )
    return Diagnostic(Location(path), f"{label}: {one_line(str(exc))}", code="yaml_syntax")


def _compose_and_construct(
    yaml: YAML, text: str, source: SourceFile
) -> tuple[list[Any], list[Any]]:
    nodes = list(yaml.compose_all(text))
    if "&" not in text:
        # No anchor, so no alias: each document is a tree (no loop, no expansion) and
        # only its depth is bounded, which the fast construction measures as it goes.
        return nodes, [_construct_tree(yaml, source, n) if n else None for n in nodes]
    for node in nodes:
        if node is not None:
            _check_structure(source, node)
    return nodes, [_construct(yaml, n) if n else None for n in nodes]


def _construct_tree(yaml: YAML, source: SourceFile, node: Node) -> Any:
    """:func:`_construct` of a document without aliases, its depth bounded."""
    try:
        return _fast(node)
    except _TooDeep as deep:
        raise _bounded(
            source, deep.node, f"YAML nesting is deeper than {MAX_DEPTH} levels", "too_deep"
        ) from None
    except _Unusual:
        _check_structure(source, node)
        return yaml.constructor.construct_document(node)


class _Bounded(Exception):
    """A document over the bounds (depth, aliases); carries the located diagnostic."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


def _bounded(source: SourceFile, node: Node, message: str, code: str) -> _Bounded:
    mark = node.start_mark
    return _Bounded(Diagnostic(source.location(mark.line + 1, mark.column + 1), message, code=code))


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_structure(source: SourceFile, root: Node) -> None:
    """Depth, recursive aliases and alias expansion of one composed document, without
    recursion and in time linear in its distinct nodes (an alias is the same node object
    again, so sizes are counted once per node and reused)."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    entered: set[int] = set()  # the ancestors of the node being entered
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        kids = _children(node)
        if done:
            entered.discard(key)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            if depth[key] > MAX_DEPTH:
                raise _bounded(
                    source, node, f"YAML nesting is deeper than {MAX_DEPTH} levels", "too_deep"
                )
            if size[key] > len(size) + MAX_ALIAS_NODES:
                raise _bounded(
                    source,
                    node,
                    f"YAML aliases expand to over {MAX_ALIAS_NODES:,} repeated nodes "
                    "(an alias bomb?)",
                    "alias_bomb",
                )
            continue
        if key in size:
            continue
        entered.add(key)
        stack.append((node, True))
        for kid in kids:
            if id(kid) in entered:
                raise _bounded(
                    source, node, "a YAML alias refers to a node that contains it", "alias_loop"
                )
            if id(kid) not in size:
                stack.append((kid, False))


_COMPACT = re.compile(r"^[ \t]*((?:[-?][ \t]+)+)", re.MULTILINE)


def _scan_depth(source: SourceFile) -> Diagnostic | None:
    """Flow nesting (``[``/``{``) of the text, measured before any parser runs: libyaml's
    composer recurses per level and crashes past some 100,000. Quoted scalars and
    comments are skipped; a bracket inside a plain scalar (``a[b``) is not an opener."""
    text = source.rendered
    if text.count("- ") + text.count("? ") > MAX_SCAN_DEPTH:  # compact ``- - - x`` nesting
        for match in _COMPACT.finditer(text):
            if match.group(1).count("-") + match.group(1).count("?") > MAX_SCAN_DEPTH:
                line = text.count("\n", 0, match.start()) + 1
                return Diagnostic(
                    source.location(line, 1),
                    f"YAML nesting is deeper than {MAX_DEPTH} levels",
                    code="too_deep",
                )
    if text.count("[") + text.count("{") <= MAX_SCAN_DEPTH:
        return None
    level, line, line_start, i, n = 0, 1, 0, 0, len(text)
    prev = "\n"  # the last significant character
    while i < n:
        ch = text[i]
        if ch == "\n":
            line, line_start = line + 1, i + 1
        elif ch in "[{" and prev in "\n:,[{-?":
            level += 1
            if level > MAX_SCAN_DEPTH:
                return Diagnostic(
                    source.location(line, i - line_start + 1),
                    f"YAML nesting is deeper than {MAX_DEPTH} levels",
                    code="too_deep",
                )
        elif ch in "]}" and level:
            level -= 1
        elif ch in "'\"" and prev in "\n:,[{-?":
            end = text.find(ch, i + 1) if ch == "'" else _closing_quote(text, i + 1)
            end = n - 1 if end < 0 else end
            skipped = text.count("\n", i, end)
            if skipped:
                line, line_start = line + skipped, text.rfind("\n", i, end) + 1
            i = end
        elif ch == "#" and (i == 0 or text[i - 1] in " \t\n"):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if ch not in " \t":
            prev = ch
        i += 1
    return None


def _closing_quote(text: str, start: int) -> int:
    i = start
    while True:
        i = text.find('"', i)
        if i < 0:
            return -1
        j = i
        while j > start and text[j - 1] == "\\":
            j -= 1
        if (i - j) % 2 == 0:
            return i
        i += 1


class _Unusual(Exception):
    """A node the fast path leaves to ruamel's constructor (tags, merges, floats...)."""


class _TooDeep(Exception):
    """The fast path went past :data:`MAX_DEPTH` nested collections, at ``node``."""

    def __init__(self, node: Node) -> None:
        super().__init__()
        self.node = node


_YAML_TAG = "tag:yaml.org,2002:"
_PLAIN_INT = re.compile(r"[-+]?[0-9]+")


def _fast(node: Node, depth: int = 1) -> Any:
    """Plain data from a composed node, for the shapes manifests use: mappings, lists,
    strings, decimal integers, booleans and nulls. Anything else raises _Unusual; a
    collection nested deeper than MAX_DEPTH raises _TooDeep."""
    if depth > MAX_DEPTH:  # the same bound as _check_structure's: no node below 64 levels
        raise _TooDeep(node)
    tag = node.ctag
    if tag.handle is not None or node.anchor is not None:
        raise _Unusual
    kind = tag.suffix
    if isinstance(node, ScalarNode):
        value = node.value
        if kind == _YAML_TAG + "str" or kind == _YAML_TAG + "timestamp":
            return value
        if kind == _YAML_TAG + "int" and _PLAIN_INT.fullmatch(value):
            return int(value)
        if kind == _YAML_TAG + "bool":
            return value.lower() == "true"
        if kind == _YAML_TAG + "null":
            return None
        raise _Unusual
    if isinstance(node, MappingNode) and kind == _YAML_TAG + "map":
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _fast(key_node, depth + 1)
            if key in out or key == "<<" or isinstance(key, (dict, list)):
                raise _Unusual  # duplicates and merges get ruamel's handling and errors
            out[key] = _fast(value_node, depth + 1)
        return out
    if isinstance(node, SequenceNode) and kind == _YAML_TAG + "seq":
        return [_fast(item, depth + 1) for item in node.value]
    raise _Unusual


def _construct(yaml: YAML, node: Node) -> Any:
    """A document's data: the fast path (about 4x quicker), else ruamel's constructor."""
    try:
        return _fast(node)
    except _Unusual:
        return yaml.constructor.construct_document(node)


def parse(source: SourceFile) -> tuple[list[Document], list[Diagnostic]]:
    """Parse one rendered file into its non-empty documents.

    The file is composed once by libyaml; the nodes keep every position, and the
    plain data is constructed from them, so locating a problem costs no second parse.
    """
    too_deep = _scan_depth(source)
    if too_deep is not None:
        return [], [too_deep]
    try:
        nodes, raw_docs = _compose_and_construct(_safe_yaml(), source.rendered, source)
    except _Bounded as bounded:
        return [], [bounded.diagnostic]
    except YAMLError as exc:
        error = exc
        # libyaml follows YAML 1.1 where the pure parser follows 1.2 and is more lenient
        # (e.g. ``servers: [nats://h:4222]``, a ':' inside a flow sequence): a file the
        # pure parser reads is valid, with positions kept the same way.
        try:
            nodes, raw_docs = _compose_and_construct(_safe_yaml(pure=True), source.rendered, source)
        except _Bounded as bounded:
            return [], [bounded.diagnostic]
        except (YAMLError, RecursionError):
            nodes = None
    if nodes is None:
        # The round-trip parser usually words its errors better, and marks them the same
        # way; libyaml's wording wins where the pure parser names internal tokens.
        try:
            list(_rt_yaml().load_all(source.rendered))
        except YAMLError as rt_exc:
            if "<block" not in str(getattr(rt_exc, "problem", "") or ""):
                error = rt_exc
        except RecursionError:  # libyaml's error is the one to report
            pass
        return [], [_yaml_error(source, error)]
    assert raw_docs is not None
    source._positions = nodes
    documents = []
    for index, (node, data) in enumerate(zip(nodes, raw_docs, strict=True)):
        if data is None or node is None:
            continue
        doc = Document(source, index, data, node.start_mark.line + 1)
        doc.name_location = doc.locate(("metadata", "name"))
        documents.append(doc)
    # The nodes are dropped now: a valid manifest needs no other position, and a file
    # with a problem to locate is composed again (only that file). This keeps the
    # memory of a large repository to its data, not its parse trees.
    source._positions = None
    return documents, []


def load_text(
    shown: str, text: str, variables: Mapping[str, Any]
) -> tuple[SourceFile | None, list[Diagnostic]]:
    """Render one manifest text named ``shown`` (not parsed yet); errors are located."""
    if not is_template(text):
        return SourceFile(shown, text, text), []
    from reconciler.templating import render_lines  # Jinja2 only when a file needs it

    rendered, line_map, problem = render_lines(shown, text, variables)
    if rendered is None:
        assert problem is not None
        return None, [problem]
    return SourceFile(shown, text, rendered, True, line_map), []


def read_source(path: Path, shown: str) -> tuple[str | None, Diagnostic | None]:
    """A file's text (UTF-8), or why it cannot be read; a bad byte is located."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return None, Diagnostic(Location(shown), f"cannot read file: {reason}", code="unreadable")
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        col = len(data[line_start : exc.start].decode("utf-8", "replace")) + 1
        return None, Diagnostic(
            Location(shown, line, col),
            f"invalid UTF-8 (byte 0x{data[exc.start]:02x}): the file must be UTF-8 text",
            code="bad_encoding",
        )


def load_file(
    path: Path, variables: Mapping[str, Any]
) -> tuple[SourceFile | None, list[Diagnostic]]:
    """Read and render one manifest file (not parsed yet)."""
    shown = display_path(path)
    text, problem = read_source(path, shown)
    if text is None:
        assert problem is not None
        return None, [problem]
    return load_text(shown, text, variables)


def load_manifests(
    paths: Sequence[str | Path],
    variables: Mapping[str, Any],
    cache: ParseCache | None = None,
    within: Path | None = None,
) -> LoadResult:
    """Discover, render and parse every manifest file; collect every problem.

    With a ``cache`` (``reconciler.parse_cache``), a file whose rendered text was parsed
    before without problems is not parsed again. ``within``: see :func:`discover`."""
    sources, diagnostics = load_sources(paths, variables, within)
    return parse_sources(sources, diagnostics, cache)


def load_sources(
    paths: Sequence[str | Path], variables: Mapping[str, Any], within: Path | None = None
) -> tuple[list[SourceFile], list[Diagnostic]]:
    """Discover and render every manifest file (not parsed yet); collect every problem."""
    files, diagnostics = discover(paths, within)
    sources: list[SourceFile] = []
    for path in files:
        source, problems = load_file(path, variables)
        diagnostics.extend(problems)
        if source is not None:
            sources.append(source)
    return sources, diagnostics


def parse_sources(
    sources: list[SourceFile], diagnostics: list[Diagnostic], cache: ParseCache | None = None
) -> LoadResult:
    """Parse rendered files (``load_sources``) into documents, through ``cache`` if any."""
    diagnostics = list(diagnostics)
    documents = list(parse_each(sources, diagnostics, cache))
    return LoadResult(documents, diagnostics, sources)


def parse_each(
    sources: Iterable[SourceFile],
    problems: list[Diagnostic],
    cache: ParseCache | None = None,
    *,
    save: bool = True,
) -> Iterator[Document]:
    """The documents of rendered files, parsed a file at a time as they are taken (through
    ``cache`` if any, saved after the last file unless ``save`` is false); each file's
    problems go to ``problems``."""
    for source in sources:
        docs, found = parse(source) if cache is None else _parse_cached(source, cache)
        problems.extend(found)
        yield from docs
    if cache is not None and save:
        cache.save()


def _parse_cached(source: SourceFile, cache: ParseCache) -> tuple[list[Document], list[Diagnostic]]:
    key = key_of(source.path, source.rendered)
    entries = cache.get(key)
    if entries is not None:
        return [
            Document(
                source,
                index,
                data,
                start,
                Location(source.path, line, col, rendered=bool(rendered)) if line else None,
            )
            for index, start, line, col, rendered, data in entries
        ], []
    docs, problems = parse(source)
    if not problems and all(isinstance(d.data, dict) for d in docs):
        cache.put(
            key,
            [
                [
                    d.index,
                    d.start_line,
                    d.name_location.line if d.name_location else 0,
                    d.name_location.col if d.name_location else 0,
                    bool(d.name_location and d.name_location.rendered),
                    d.data,
                ]
                for d in docs
            ],
        )
    return docs, problems
