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
