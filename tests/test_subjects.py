"""covers/overlaps against a brute-force matcher over a bounded universe.

Patterns are built from the tokens a, b, c, ``*`` and ``>`` (``>`` last only), at
most MAX_LEN tokens. The literal universe uses the tokens a, b, c and d, where d
appears in no pattern (it stands for "any other token", which ``*`` and ``>``
match and no literal does), with lengths up to MAX_LEN + 1. That bound is enough:

* overlaps: if two patterns share a literal, they share one no longer than the
  longer pattern (each ``>`` can stop after one token), whose tokens can be taken
  from the patterns or replaced by d;
* covers: if ``f`` matches a literal that ``p`` does not, there is such a literal
  of length at most max(len(p), len(f)) + 1 (one more token than ``p`` has, when
  ``f`` ends in ``>`` and ``p`` does not), again over the patterns' tokens plus d.
"""

from __future__ import annotations

import pytest
from harness.subjects import brute_match, universe
from harness.subjects import matched as matched_in
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.subjects import covers, overlaps

MAX_LEN = 3
UNIVERSE = universe(MAX_LEN)


def matched(pattern: str) -> frozenset[str]:
    return matched_in(pattern, MAX_LEN)


patterns = st.builds(
    lambda head, tail: ".".join([*head, tail]),
    st.lists(st.sampled_from(["a", "b", "c", "*"]), max_size=MAX_LEN - 1),
    st.sampled_from(["a", "b", "c", "*", ">"]),
)
EXAMPLES = settings(max_examples=400, deadline=None)


@EXAMPLES
@given(patterns, patterns)
def test_overlaps_is_exact(a: str, b: str) -> None:
    assert overlaps(a, b) == bool(matched(a) & matched(b))
    assert overlaps(a, b) == overlaps(b, a)


@EXAMPLES
@given(patterns, patterns)
def test_covers_is_exact(p: str, f: str) -> None:
    assert covers(p, f) == (matched(f) <= matched(p))


@EXAMPLES
@given(patterns, st.sampled_from(UNIVERSE))
def test_covers_a_literal_is_brute_match(p: str, literal: str) -> None:
    assert covers(p, literal) == brute_match(p, literal)


@EXAMPLES
@given(patterns)
def test_relations_are_reflexive(p: str) -> None:
    assert covers(p, p)
    assert overlaps(p, p)


@pytest.mark.parametrize(
    ("pattern", "subject", "covered", "overlapping"),
    [
        ("orders.>", "orders.eu.created", True, True),
        ("orders.>", "orders", False, False),
        ("orders.*", "orders.>", False, True),
        (">", "a.b.c", True, True),
        ("a.*.c", "a.b.*", False, True),
        ("a.b*", "a.bc", False, False),  # partial wildcards are literals
        ("*.eu.created", "orders.>", False, True),
        ("orders.*.created", "orders.eu.>", False, True),
    ],
)
def test_examples(pattern: str, subject: str, covered: bool, overlapping: bool) -> None:
    assert covers(pattern, subject) is covered
    assert overlaps(pattern, subject) is overlapping
