"""A brute-force subject matcher, written independently of reconciler.subjects and
reconciler.policy, for property tests that check those against it."""

from __future__ import annotations

import itertools
from functools import cache

LITERAL_TOKENS = ("a", "b", "c", "d")
MAX_LEN = 4


def universe(max_len: int = MAX_LEN) -> list[str]:
    """Every literal subject of the tokens up to ``max_len + 1`` tokens: longer than any
    generated pattern, with a token (d) no pattern uses, so ``>`` and ``*`` are told apart."""
    return [
        ".".join(combo)
        for n in range(1, max_len + 2)
        for combo in itertools.product(LITERAL_TOKENS, repeat=n)
    ]


def brute_match(pattern: str, literal: str) -> bool:
    """Does ``pattern`` match the literal subject ``literal``."""
    p, s = pattern.split("."), literal.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(p) == len(s)


@cache
def matched(pattern: str, max_len: int = MAX_LEN) -> frozenset[str]:
    """The literal subjects of the universe that ``pattern`` matches."""
    return frozenset(lit for lit in universe(max_len) if brute_match(pattern, lit))
