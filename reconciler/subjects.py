"""Wildcard-aware subject relations: does a pattern cover a filter, do two overlap.

Tokens are split on ``.``; ``*`` matches exactly one token, ``>`` one or more
trailing tokens (NATS semantics; partial wildcards such as ``a*`` are literals).
Both functions are exact: ``covers(p, f)`` is True iff every literal subject that
``f`` matches is matched by ``p``; ``overlaps(a, b)`` is True iff some literal
subject is matched by both (tests/test_subjects.py checks them by brute force).
"""

from __future__ import annotations


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


def matches(pattern: str, literal: str) -> bool:
    """True when the literal subject ``literal`` is matched by ``pattern``."""
    return covers(pattern, literal)
