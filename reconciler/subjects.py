"""Wildcard-aware subject relations: does a pattern cover a filter, do two overlap.

Tokens are split on ``.``; ``*`` matches exactly one token, ``>`` one or more
trailing tokens (NATS semantics; partial wildcards such as ``a*`` are literals).
Both functions are exact: ``covers(p, f)`` is True iff every literal subject that
``f`` matches is matched by ``p``; ``overlaps(a, b)`` is True iff some literal
subject is matched by both (tests/test_subjects.py checks them by brute force).

Overlap among many subjects is found with :class:`SubjectTrie`, a token trie that
answers "which stored subjects overlap this one" by walking only the branches a query
can match, so policy's overlap checks stay near-linear in the number of subjects
(``bench/overlap.py``; tests/test_overlap.py checks it against ``overlaps``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def tokens(subject: str) -> list[str]:
    return subject.split(".")


def covers(pattern: str, subject: str) -> bool:
    """True when every subject matched by ``subject`` is matched by ``pattern``."""
    p, s = tokens(pattern), tokens(subject)
    for i, ptok in enumerate(p):
        if ptok == ">":
            return len(s) > i
        if i >= len(s):
            return False
        stok = s[i]
        if stok == ">":
            return False
        if ptok == "*":
            continue
        if stok == "*" or ptok != stok:
            return False
    return len(s) == len(p)


def overlaps(a: str, b: str) -> bool:
    """True when some literal subject is matched by both ``a`` and ``b``."""
    ta, tb = tokens(a), tokens(b)
    for i in range(max(len(ta), len(tb))):
        x = ta[i] if i < len(ta) else None
        y = tb[i] if i < len(tb) else None
        if x == ">" or y == ">":
            return x is not None and y is not None
        if x is None or y is None:
            return False
        if x != y and x != "*" and y != "*":
            return False
    return True


def under_prefix(prefix: str, subject: str) -> bool:
    """True when ``subject`` is ``prefix`` or starts with its tokens (literally).

    A wildcard in one of the prefix's positions is not under it (``tenant.*.x`` may
    be another tenant's); neither is a transform function there (``{{wildcard(1)}}``).
    """
    want = prefix.split(".")
    return subject.split(".")[: len(want)] == want


# A trie node is a plain dict: token -> child node, and under the key None (never a
# token) the list of (subject, value) entries whose last token is this node. Dicts
# rather than node objects keep the trie to about one tracked object per token, which
# matters next to the large heap a validation run has just built (fewer objects,
# fewer garbage-collector passes over it).
_Node = dict[Any, Any]
_ENTRIES = None


class SubjectTrie(Generic[T]):
    """Subjects (with wildcards) and a value each, queried by wildcard-aware overlap.

    Tokens split on ``.``; ``*`` matches one token, ``>`` one or more trailing
    tokens, on both sides (stored subjects and queries). ``overlapping(q)`` returns
    every stored ``(subject, value)`` such that some literal subject is matched by
    both ``subject`` and ``q``, each exactly once. It visits only the trie nodes ``q``
    can match: a literal query token follows that token's branch and the ``*``
    branch, a ``*`` follows every branch of its level, a ``>`` takes the whole
    subtree below (everything it returns overlaps), and a stored ``>`` is returned
    where it hangs. The cost is the number of nodes the query's wildcards open up
    plus the size of the answer, not the number of stored subjects.
    """

    __slots__ = ("_root", "_size")

    def __init__(self) -> None:
        self._root: _Node = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def insert(self, subject: str, value: T) -> None:
        node = self._root
        for token in subject.split("."):
            child = node.get(token)
            if child is None:
                child = node[token] = {}
            node = child
        entries = node.get(_ENTRIES)
        if entries is None:
            node[_ENTRIES] = [(subject, value)]
        else:
            entries.append((subject, value))
        self._size += 1

    def overlapping(self, subject: str) -> list[tuple[str, T]]:
        """Every stored ``(subject, value)`` that overlaps ``subject``."""
        query = subject.split(".")
        end = len(query)
        out: list[tuple[str, T]] = []
        stack: list[tuple[_Node, int]] = [(self._root, 0)]
        while stack:
            node, i = stack.pop()
            if i == end:
                out.extend(node.get(_ENTRIES) or ())  # same length, every token compatible
                continue
            token = query[i]
            if token == ">":  # one or more tokens: every stored subject that goes on
                pending = [child for key, child in node.items() if key is not _ENTRIES]
                while pending:
                    below = pending.pop()
                    for key, child in below.items():
                        if key is _ENTRIES:
                            out.extend(child)
                        else:
                            pending.append(child)
                continue
            tail = node.get(">")
            if tail is not None:  # a stored "...>" here matches the 1+ query tokens left
                out.extend(tail.get(_ENTRIES) or ())
            if token == "*":
                stack.extend(
                    (child, i + 1)
                    for key, child in node.items()
                    if key is not _ENTRIES and key != ">"
                )
            else:
                for key in (token, "*"):
                    child = node.get(key)
                    if child is not None:
                        stack.append((child, i + 1))
        return out


# --- subject transform destinations ---------------------------------------------------
#
# The server's rules for a mapping ``src -> dest`` (server/subject_transform.go
# NewSubjectTransform, indexPlaceHolders; server/sublist.go ValidateMapping, which
# checkStreamCfg runs first from 2.11 on), checked offline. They changed between
# releases, so each is checked as every supported release does it: a manifest passes
# validation when some supported release accepts it (a release-specific check is
# ``release=``). Streams use the non-strict transform: a destination need not use every
# wildcard of its source.

Release = tuple[int, int, int]

# Where a mapping is: checkStreamCfg checks them differently.
TRANSFORM = "subject_transform"  # the stream's input transform
MIRROR = "mirror"  # a mirror's subject_transforms[] (and an external source's)
SOURCE = "source"  # a source's subject_transforms[] (origin in the same domain)
REPUBLISH = "republish"  # republish (src defaults to ">")

# The releases at which the rules below change, each standing for itself and the
# releases up to the next one (within the supported lines 2.10-2.15).
RULE_POINTS: tuple[Release, ...] = (
    (2, 10, 0),
    (2, 10, 16),
    (2, 11, 0),
    (2, 11, 8),
    (2, 12, 0),
    (2, 15, 0),
)


@dataclass(frozen=True)
class MappingFunction:
    """A ``{{name(args)}}`` destination function: its arguments, its first release,
    and the first release whose ValidateMapping lists it (``left`` and ``right`` only
    from 2.15: before, a stream's subject_transform and its origins' transforms refuse
    them from 2.11 on, local sources' from 2.10; republish always takes them)."""

    pattern: str  # the server's regex of the name (each word's first letter any case)
    args: str  # "wildcard", "partition", "index_int", "split", "random"
    since: Release
    listed: Release = (2, 10, 0)

    def prechecked(self, release: Release) -> bool:
        """Does ValidateMapping (2.10: ValidateMappingDestination) of ``release`` know it?"""
        return release >= self.since and release >= self.listed


MAPPING_FUNCTIONS: dict[str, MappingFunction] = {
    "wildcard": MappingFunction("[wW]ildcard", "wildcard", (2, 10, 0)),
    "partition": MappingFunction("[pP]artition", "partition", (2, 10, 0)),
    "splitFromLeft": MappingFunction("[sS]plit[fF]rom[lL]eft", "index_int", (2, 10, 0)),
    "splitFromRight": MappingFunction("[sS]plit[fF]rom[rR]ight", "index_int", (2, 10, 0)),
    "sliceFromLeft": MappingFunction("[sS]lice[fF]rom[lL]eft", "index_int", (2, 10, 0)),
    "sliceFromRight": MappingFunction("[sS]lice[fF]rom[rR]ight", "index_int", (2, 10, 0)),
    "right": MappingFunction("[rR]ight", "index_int", (2, 10, 16), listed=(2, 15, 0)),
    "left": MappingFunction("[lL]eft", "index_int", (2, 10, 16), listed=(2, 15, 0)),
    "split": MappingFunction("[sS]plit", "split", (2, 10, 0)),
    "random": MappingFunction("[rR]andom", "random", (2, 12, 0)),
}
# The order the server tries them in (indexPlaceHolders).
_FUNCTION_ORDER = (
    "wildcard",
    "partition",
    "splitFromLeft",
    "splitFromRight",
    "sliceFromLeft",
    "sliceFromRight",
    "right",
    "left",
    "split",
    "random",
)
_FUNCTION_RES = {
    name: re.compile(r"\{\{\s*" + MAPPING_FUNCTIONS[name].pattern + r"\s*\((.*)\)\s*\}\}")
    for name in _FUNCTION_ORDER
}
_ARG_SEP = re.compile(r",\s*")
_ATOI = re.compile(r"[+-]?[0-9]+")
_MAX_INT32 = 2**31 - 1
_MAX_INT64 = 2**63 - 1
_MAPPING_WHITESPACE = re.compile(r"[\t\n\f\r ]")
# partition(n) without token indexes, random(), and partition/random after a source
# without wildcards (2.12); 32-bit integer arguments of the index_int functions (2.11.8)
_PARTITION_SHORTHAND: Release = (2, 12, 0)
_INT32_ARGS: Release = (2, 11, 8)
_PRECHECK: Release = (2, 11, 0)  # ValidateMapping for subject_transform and origins


def release_tuple(release: str | Release) -> Release:
    if isinstance(release, tuple):
        return release
    found = re.search(r"(\d+)\.(\d+)\.(\d+)", release)
    if not found:
        raise ValueError(f"not a nats-server version: {release!r}")
    major, minor, patch = (int(g) for g in found.groups())
    return major, minor, patch


def _atoi(text: str, *, bits: int = 64) -> int | None:
    """Go's strconv.Atoi (64-bit) / ParseInt(text, 10, 32) of a space-trimmed argument."""
    text = text.strip(" ")
    if not _ATOI.fullmatch(text):
        return None
    value = int(text)
    limit = _MAX_INT32 if bits == 32 else _MAX_INT64
    if not -limit - 1 <= value <= limit:
        return None
    return value


class _Bad(Exception):
    pass


def _function(token: str, release: Release) -> tuple[str, list[int]] | None:
    """indexPlaceHolders: None for a literal token, else (function, wildcard indexes);
    raises _Bad with the reason the server refuses the token."""
    if len(token) > 1 and token[0] == "$":  # $1 (Atoi, untrimmed; "$x" is a literal)
        index = _atoi(token[1:]) if token[1:] == token[1:].strip(" ") else None
        return None if index is None else ("wildcard", [index])
    if not (len(token) > 4 and token.startswith("{{") and token.endswith("}}")):
        return None
    for name in _FUNCTION_ORDER:
        spec = MAPPING_FUNCTIONS[name]
        if release < spec.since:
            continue
        found = _FUNCTION_RES[name].search(token)
        if found is None:
            continue
        args = _ARG_SEP.split(found.group(1))
        return name, _arguments(name, spec.args, args, release)
    raise _Bad(_unknown(token, release, prechecked=False))


def _unknown(token: str, release: Release, *, prechecked: bool) -> str:
    known = ", ".join(
        name
        for name in _FUNCTION_ORDER
        if (
            MAPPING_FUNCTIONS[name].prechecked(release)
            if prechecked
            else release >= MAPPING_FUNCTIONS[name].since
        )
    )
    return f"unknown mapping function {token} (known: {known})"


def _arguments(name: str, kind: str, args: list[str], release: Release) -> list[int]:
    """The wildcard indexes a function's arguments name, or _Bad."""

    def need(count: int) -> None:
        if len(args) < count:
            raise _Bad(f"{name}() needs {count} argument{'s' if count > 1 else ''}")
        if len(args) > count:
            raise _Bad(f"{name}() takes {count} argument{'s' if count > 1 else ''}")

    def number(text: str, what: str, *, bits: int = 64, max32: bool = False) -> int:
        value = _atoi(text, bits=bits)
        if value is None or (max32 and value > _MAX_INT32):
            raise _Bad(
                f"{name}(): {what} {text.strip()!r} is not an integer"
                + (" that fits in 32 bits" if bits == 32 or max32 else "")
            )
        return value

    if kind == "wildcard":
        if args == [""]:
            raise _Bad("wildcard() needs 1 argument")
        need(1)
        return [number(args[0], "wildcard index")]
    if kind == "random":
        if len(args) != 1:
            raise _Bad("random() takes 1 argument")
        number(args[0], "the range", max32=True)
        return []
    if kind == "partition":
        new = release >= _PARTITION_SHORTHAND
        if len(args) < (1 if new else 2):
            raise _Bad(
                "partition() needs the number of partitions and wildcard indexes"
                if not new
                else "partition() needs the number of partitions"
            )
        number(args[0], "the number of partitions", max32=new)
        return [number(arg, "wildcard index") for arg in args[1:]]
    need(2)
    index = number(args[0], "wildcard index")
    if kind == "split":
        if " " in args[1] or "." in args[1]:
            raise _Bad(f'split(): the delimiter {args[1]!r} must not contain " " or "."')
    else:
        number(
            args[1],
            "the size" if "lice" in name or name in ("left", "right") else "the position",
            bits=32 if release >= _INT32_ARGS else 64,
        )
    return [index]


def _subject_info(subject: str) -> tuple[bool, list[str], int, bool]:
    """subjectInfo: valid, tokens, number of ``*``, has ``>``."""
    tokens = subject.split(".")
    pwcs, fwc = 0, False
    for token in tokens:
        if token == "" or fwc:
            return False, tokens, 0, False
        if token == ">":
            fwc = True
        elif token == "*":
            pwcs += 1
    return True, tokens, pwcs, fwc


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _check(src: str, dest: str, where: str, release: Release) -> str | None:
    """Why ``release`` refuses the mapping in ``where``, or None."""
    if dest == "":
        return None
    if where == SOURCE and not src and release < _PRECHECK:
        return "src is required (2.10 refuses a source's transform without one)"
    src = src or ">"
    if (where != REPUBLISH and release >= _PRECHECK) or where == SOURCE:
        # ValidateMapping (2.10: ValidateMappingDestination, of local sources only)
        fwc = False
        for token in dest.split("."):
            if token == "" or fwc:
                return "has an empty token" if token == "" else '">" must be the last token'
            if len(token) > 4 and token.startswith("{{") and token.endswith("}}"):
                if not any(
                    _FUNCTION_RES[n].search(token)
                    for n in _FUNCTION_ORDER
                    if MAPPING_FUNCTIONS[n].prechecked(release)
                ):
                    which = next(
                        (n for n in _FUNCTION_ORDER if _FUNCTION_RES[n].search(token)), None
                    )
                    if which is not None and release >= MAPPING_FUNCTIONS[which].since:
                        return (
                            f"{which}() is not accepted here before nats-server 2.15: the "
                            "server's mapping check does not list it (republish takes it)"
                        )
                    return _unknown(token, release, prechecked=True)
                continue
            if token == ">":
                fwc = True
            elif _MAPPING_WHITESPACE.search(token):
                return "must not contain whitespace"
    s_ok, _, pwcs, s_fwc = _subject_info(src)
    d_ok, d_tokens, d_pwcs, d_fwc = _subject_info(dest)
    if not s_ok:
        return f"src {json.dumps(src)} is not a valid subject"
    if not d_ok:
        return "has an empty token" if "" in d_tokens else '">" must be the last token'
    if d_pwcs:
        return 'must not contain "*" (name a wildcard of src with $1 or {{wildcard(1)}})'
    if s_fwc != d_fwc:
        return (
            f'must end in ">" as src {json.dumps(src)} does'
            if s_fwc
            else f'must not end in ">": src {json.dumps(src)} does not'
        )
    shorthand = release >= _PARTITION_SHORTHAND
    for token in d_tokens:
        try:
            found = _function(token, release)
        except _Bad as exc:
            return str(exc)
        if found is None:
            continue
        name, indexes = found
        if pwcs == 0 and not s_fwc:
            if shorthand and name in ("random", "partition"):
                continue
            return f"{token} names a wildcard, but src {json.dumps(src)} has none"
        if name == "random":
            continue
        if pwcs == 0 and not shorthand:
            return f'{token} names a wildcard, but src {json.dumps(src)} has no "*"'
        for index in indexes:
            if index > pwcs:
                return (
                    f"wildcard index {index} is out of range: src {json.dumps(src)} "
                    f"has {_plural(pwcs, 'wildcard')}"
                )
    return None


def transform_problems(
    src: str | None, dest: str, *, where: str = TRANSFORM, release: str | Release | None = None
) -> list[str]:
    """Why the server refuses the mapping ``src -> dest`` (``[]`` when it takes it).

    ``where`` is TRANSFORM, MIRROR, SOURCE or REPUBLISH. Without ``release`` the mapping is
    refused only when every supported release refuses it (the message is the newest
    release's reason); with it, as that release does.
    """
    src = src or ""
    # A literal destination (or a plain ">") is judged as 2.10 or as the newest release
    # judges it (they differ in whitespace and in a source's missing src only).
    literal = "$" not in dest and "{{" not in dest
    points = (RULE_POINTS[0], RULE_POINTS[-1]) if literal else RULE_POINTS
    if release is not None:
        problem = _check(src, dest, where, release_tuple(release))
        return [] if problem is None else [problem]
    newest = None
    for point in reversed(points):
        problem = _check(src, dest, where, point)
        if problem is None:
            return []
        newest = newest or problem
    return [newest] if newest else []
