"""Manifest templates: Jinja2 rendering with a map from rendered lines back to source.

Imported only when a file is a template, so that repositories of plain YAML never load
Jinja2. Positions refer to the file as written: each rendered line is mapped to its
source line by rendering once more with line markers in the template's literal text
(the map is trusted only if removing the markers gives exactly the plain rendering;
otherwise messages say "(line in rendered template)").

Manifests come from pull requests, so templates are untrusted input: they render in
Jinja2's ``ImmutableSandboxedEnvironment`` with no globals (only ``env`` and ``values``
are in scope), only the filters in :data:`FILTERS`, and ``*``/``**`` results bounded
(:data:`MAX_PRODUCT`). Touching an unsafe attribute (``__class__``, ``__globals__``...)
is a located ``template error``, never a side effect.
"""

from __future__ import annotations

import functools
import re
import traceback
from collections.abc import Iterator, Mapping
from typing import Any

import jinja2
import jinja2.lexer
import jinja2.sandbox
from jinja2.exceptions import SecurityError
from jinja2.tests import TESTS

from reconciler.diagnostics import did_you_mean, one_line
from reconciler.errors import Diagnostic, Location

_MARK = "\x00"
_MARKER = re.compile(r"\x00(\d+)\x00")
_LINE_START_MARKER = re.compile(r"[ \t]*\x00(\d+)\x00")
_CAPTURES_TEXT = re.compile(r"{%[-+]?\s*(?:set|filter|macro|call)\b")


# The filters a manifest may use (documented in the README's manifest reference).
FILTERS = (
    "abs", "capitalize", "d", "default", "first", "float", "int", "join", "last", "length",
    "list", "lower", "max", "min", "replace", "round", "sort", "string", "title", "tojson",
    "trim", "unique", "upper",
)  # fmt: skip
# The methods a template may call (``values.name.lower()``, ``values.get("x", 1)``).
METHODS: dict[type, frozenset[str]] = {
    str: frozenset((
        "capitalize", "count", "endswith", "find", "isdigit", "lower", "lstrip", "removeprefix",
        "removesuffix", "rsplit", "rstrip", "split", "startswith", "strip", "title", "upper",
    )),
    dict: frozenset(("get", "items", "keys", "values")),
}  # fmt: skip
MAX_PRODUCT = 1_000_000  # largest string/list a ``*`` may build, largest ``**`` result digits


class _Sandbox(jinja2.sandbox.ImmutableSandboxedEnvironment):
    """No globals (``range``, ``lipsum``, ``cycler``... are gone), a fixed set of filters,
    and ``*``/``**`` that cannot build a huge value from a small template."""

    intercepted_binops = frozenset(["*", "**", "%"])

    def __init__(self) -> None:
        super().__init__(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
        self.globals.clear()
        self.tests.clear()
        self.tests.update({name: test for name, test in _TESTS.items()})
        self.filters = {name: self.filters[name] for name in FILTERS}
        self.filters["replace"] = _bounded_replace

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if not __self.is_safe_callable(__obj):
            name = getattr(__obj, "__qualname__", None) or type(__obj).__name__
            raise SecurityError(f"calling {name}() is not allowed in a template")
        return super().call(__context, __obj, *args, **kwargs)

    def is_safe_callable(self, obj: Any) -> bool:
        """Only the read-only ``str`` and ``dict`` methods of :data:`METHODS`."""
        if isinstance(obj, jinja2.Undefined):
            return True  # calling it raises the usual "is undefined" error
        owner = getattr(obj, "__self__", None)
        name = getattr(obj, "__name__", "")
        return isinstance(owner, (str, dict)) and name in METHODS.get(type(owner), ())

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if _too_large(operator, left, right):
            raise SecurityError(f"the result of {operator} is too large")
        return super().call_binop(context, operator, left, right)


_WIDTH = re.compile(r"%[-#0 +]*(\d+)|%[-#0 +]*\d*\.(\d+)")


def _bounded_replace(value: Any, old: str, new: str, count: int | None = None) -> str:
    text = str(value)
    times = text.count(old) if old else len(text) + 1
    if len(text) + times * max(len(new) - len(old), 0) > MAX_PRODUCT:
        raise SecurityError("the result of replace is too large")
    return text.replace(old, new) if count is None else text.replace(old, new, count)


def _too_large(operator: str, left: Any, right: Any) -> bool:
    if operator == "%":
        widths = (int(w or p) for w, p in _WIDTH.findall(left)) if isinstance(left, str) else ()
        return any(width > MAX_PRODUCT for width in widths)
    if operator == "*":
        return any(
            isinstance(seq, (str, list, tuple))
            and isinstance(times, int)
            and len(seq) * times > MAX_PRODUCT
            for seq, times in ((left, right), (right, left))
        )
    ints = isinstance(left, int) and isinstance(right, int)
    return ints and right > 0 and abs(left) > 1 and right * abs(left).bit_length() > 4 * MAX_PRODUCT


_TESTS = {
    name: TESTS[name]
    for name in ("defined", "undefined", "none", "number", "string", "mapping", "sequence",
                 "true", "false", "eq", "ne", "lt", "le", "gt", "ge", "in")
}  # fmt: skip


@functools.cache
def _jinja_env() -> jinja2.Environment:
    return _Sandbox()


class _LineMarkingLexer(jinja2.lexer.Lexer):
    """Puts ``\\0<source line>\\0`` after every newline of the template's literal text.

    Data tokens arrive here with whitespace control (``{%-``, ``-%}``) already
    applied, so a marker never changes what is stripped.
    """

    def tokeniter(
        self, source: str, name: str | None, filename: str | None = None, state: str | None = None
    ) -> Iterator[tuple[int, str, str]]:
        for lineno, token, value in super().tokeniter(source, name, filename, state):
            if token == "data" and "\n" in value:
                head, *rest = value.split("\n")
                value = head + "".join(
                    f"\n{_MARK}{lineno + i}{_MARK}{part}" for i, part in enumerate(rest, 1)
                )
            yield lineno, token, value


class _LineMarkingEnvironment(_Sandbox):
    @functools.cached_property
    def lexer(self) -> jinja2.lexer.Lexer:
        return _LineMarkingLexer(self)


@functools.cache
def _marking_env() -> jinja2.Environment:
    return _LineMarkingEnvironment()


def _render_marked(text: str, variables: Mapping[str, Any]) -> str | None:
    """The template rendered with line markers, or None if it fails in any way."""
    try:
        return _marking_env().from_string(text).render(**variables)
    except Exception:  # the plain rendering reports the error
        return None


def _lines_of(marked: str) -> list[int]:
    """The source line of each line of a marked rendering."""
    line_map: list[int] = []
    current = 1
    for line in marked.split("\n"):
        start = _LINE_START_MARKER.match(line)
        line_map.append(int(start.group(1)) if start else current)
        found = _MARKER.findall(line)
        current = int(found[-1]) if found else line_map[-1]
    return line_map


def _line_map(text: str, rendered: str, variables: Mapping[str, Any]) -> list[int] | None:
    """Source line of every rendered line, or None when it cannot be established exactly."""
    if _MARK in text:
        return None
    marked = _render_marked(text, variables)
    if marked is None or _MARKER.sub("", marked) != rendered:
        return None
    return _lines_of(marked)


_UNDEFINED = re.compile(r"^'([^']+)' is undefined$")
_NO_ATTRIBUTE = re.compile(r"has no (?:attribute|element) '([^']+)'$")
_TAG = re.compile(r"{{.*?}}|{%.*?%}", re.DOTALL)


def _error_line(exc: Exception, name: str) -> int:
    line = getattr(exc, "lineno", None) or 0
    if not line:
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            if frame.filename == name and frame.lineno:
                line = frame.lineno
                break
    return line


def _find_in_tags(source_line: str, pattern: str) -> tuple[str, int] | None:
    """The first match of ``pattern`` inside a ``{{ }}``/``{% %}`` tag, and the tag's column."""
    for tag in _TAG.finditer(source_line):
        match = re.search(pattern, tag.group())
        if match:
            return match.group(), tag.start() + 1
    return None


def _undefined_diagnostic(
    exc: jinja2.UndefinedError, path: str, text: str, variables: Mapping[str, Any]
) -> Diagnostic:
    """``undefined template variable "values.x"`` at the ``{{`` (or ``{%``) that uses it."""
    line = _error_line(exc, path)
    lines = text.splitlines()
    source_line = lines[line - 1] if 0 < line <= len(lines) else ""
    message = str(exc.message or exc)
    top = _UNDEFINED.match(message)
    attr = _NO_ATTRIBUTE.search(message)
    if not (top or attr):  # e.g. calling an undefined object: keep Jinja's words
        found = _find_in_tags(source_line, r"\S")
        location = Location(path, line, found[1] if found else 1 if line else 0)
        return Diagnostic(
            location, f"template error: {one_line(message)}", code="template_undefined"
        )
    hint: str | None
    if top:
        name = top.group(1)
        found = _find_in_tags(source_line, rf"(?<![\w.]){re.escape(name)}\b")
        hint = did_you_mean(name, variables)
    else:
        assert attr is not None
        key = attr.group(1)
        found = _find_in_tags(source_line, _dotted_pattern(key))
        name = _BRACKET_KEY.sub(r".\1", found[0]) if found else key
        values = variables.get("values")
        hint = None
        if name == f"values.{key}" and isinstance(values, Mapping):
            hint = did_you_mean(key, values, prefix="values.")
    col = found[1] if found else 1 if line else 0
    return Diagnostic(
        Location(path, line, col),
        f'undefined template variable "{name}"',
        code="template_undefined",
        hint=hint,
    )


_BRACKET_KEY = re.compile(r"\[\s*['\"]([^'\"]*)['\"]\s*\]")


def _dotted_pattern(key: str) -> str:
    """``a.b.KEY`` or ``a["b"]["KEY"]``: an attribute path that ends with ``key``."""
    last = rf"(?:\.{re.escape(key)}\b|\[\s*['\"]{re.escape(key)}['\"]\s*\])"
    return rf"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\[[^\]]*\])*?{last}"


def render(
    path: str, text: str, variables: Mapping[str, Any], env: jinja2.Environment | None = None
) -> tuple[str | None, Diagnostic | None]:
    """Render a manifest template; an error becomes a located Diagnostic."""
    env = env or _jinja_env()
    try:
        template = env.from_string(text)
        template.filename = path
        return template.render(**variables), None
    except jinja2.TemplateSyntaxError as exc:
        return None, Diagnostic(
            Location(path, exc.lineno or 0, 1 if exc.lineno else 0),
            f"template syntax error: {one_line(str(exc.message))}",
            code="template_syntax",
        )
    except jinja2.UndefinedError as exc:
        return None, _undefined_diagnostic(exc, path, text, variables)
    except Exception as exc:  # a template may raise anything (filters, arithmetic)
        line = _error_line(exc, path)
        lines = text.splitlines()
        found = _find_in_tags(lines[line - 1], r"\S") if 0 < line <= len(lines) else None
        return None, Diagnostic(
            Location(path, line, found[1] if found else (1 if line else 0)),
            f"template error: {one_line(str(exc))}",
            code="template_error",
        )


def render_lines(
    shown: str, text: str, variables: Mapping[str, Any]
) -> tuple[str | None, list[int] | None, Diagnostic | None]:
    """Render a template file: its rendered text and line map (``SourceFile.line_map``:
    None when it cannot be established exactly), or its error."""
    if _MARK not in text and not _CAPTURES_TEXT.search(text):
        # Literal text only ever goes straight to the output here, so the marked
        # rendering without its markers *is* the rendering: one pass is enough.
        marked = _render_marked(text, variables)
        if marked is not None:
            return _MARKER.sub("", marked), _lines_of(marked), None
    rendered, problem = render(shown, text, variables)
    if rendered is None:
        return None, None, problem
    return rendered, _line_map(text, rendered, variables), None
