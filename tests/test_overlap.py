"""The overlap finder (reconciler.subjects.SubjectTrie) against a brute-force matcher.

Patterns are built from the tokens a, b, c, ``*`` and a final ``>``, at most MAX_LEN
tokens. Two patterns overlap iff some literal subject matches both; the literal
universe uses a, b, c and d (d is in no pattern: "any other token"), lengths up to
MAX_LEN + 1. That is enough: a shared literal, if any, can be chosen no longer than
the longer pattern (a ``>`` can stop after one token), from the patterns' tokens or d.
The matcher here is written independently of reconciler.subjects and reconciler.policy.
"""

from __future__ import annotations

import random
import time
from collections import Counter

from harness.subjects import brute_match, universe
from harness.subjects import matched as matched_in
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.environments import ProjectConfig
from reconciler.errors import Location
from reconciler.models import Address, Resource, StreamManifest
from reconciler.policy import check_overlap, check_policy
from reconciler.subjects import SubjectTrie

MAX_LEN = 4
UNIVERSE = universe(MAX_LEN)


def matched(pattern: str) -> frozenset[str]:
    return matched_in(pattern, MAX_LEN)


def brute_overlaps(a: str, b: str) -> bool:
    return bool(matched(a) & matched(b))


patterns = st.builds(
    lambda head, tail: ".".join([*head, tail]),
    st.lists(st.sampled_from(["a", "b", "c", "*"]), max_size=MAX_LEN - 1),
    st.sampled_from(["a", "b", "c", "*", ">"]),
)
EXAMPLES = settings(max_examples=300, deadline=None)


@EXAMPLES
@given(st.lists(patterns, max_size=25), patterns)
def test_trie_query_returns_exactly_the_overlapping_subjects_once_each(
    stored: list[str], query: str
) -> None:
    trie: SubjectTrie[int] = SubjectTrie()
    for i, subject in enumerate(stored):
        trie.insert(subject, i)
    assert len(trie) == len(stored)
    found = Counter(i for _, i in trie.overlapping(query))
    assert all(n == 1 for n in found.values())  # never the same entry twice
    assert set(found) == {i for i, s in enumerate(stored) if brute_overlaps(s, query)}
    assert all(stored[i] == s for s, i in trie.overlapping(query))


def overlapping_pairs(subjects: list[str]) -> list[tuple[int, int]]:
    """Every pair ``(i, j)``, ``i < j``, whose subjects overlap, found by inserting each
    subject after querying it (as policy's overlap check does)."""
    trie: SubjectTrie[int] = SubjectTrie()
    pairs: list[tuple[int, int]] = []
    for j, subject in enumerate(subjects):
        pairs.extend((i, j) for _, i in trie.overlapping(subject))
        trie.insert(subject, j)
    return sorted(pairs)


@EXAMPLES
@given(st.lists(patterns, max_size=30))
def test_overlapping_pairs_is_the_brute_force_pair_set(subjects: list[str]) -> None:
    expected = [
        (i, j)
        for i in range(len(subjects))
        for j in range(i + 1, len(subjects))
        if brute_overlaps(subjects[i], subjects[j])
    ]
    assert overlapping_pairs(subjects) == expected


def test_wildcards_on_both_sides() -> None:
    cases = {
        ("a.*.c", "a.b.>"): True,
        ("a.>", "a"): False,
        ("a.>", "a.b.c.d"): True,
        (">", "a"): True,
        ("*", "a.b"): False,
        ("*.b", "a.*"): True,
        ("a.*", "a.*.c"): False,
        ("a.b*", "a.bc"): False,  # partial wildcards are literal tokens
        ("a.b*", "a.*"): True,
        ("a.>", "*.>"): True,
        ("a.b.c", "a.b.c"): True,
    }
    for (a, b), expected in cases.items():
        for x, y in ((a, b), (b, a)):
            trie: SubjectTrie[str] = SubjectTrie()
            trie.insert(x, x)
            assert bool(trie.overlapping(y)) is expected, (x, y)


def _resources(subjects_per_stream: list[list[str]]) -> list[Resource]:
    out = []
    for i, subjects in enumerate(subjects_per_stream):
        manifest = StreamManifest.model_validate(
            {
                "apiVersion": "jsops/v1",
                "kind": "Stream",
                "metadata": {"name": f"S{i}"},
                "spec": {"subjects": subjects, "max_bytes": 1024},
            }
        )
        out.append(Resource(Address("Stream", f"S{i}"), manifest, Location("m.yaml", i + 1, 1)))
    return out


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(patterns, min_size=1, max_size=3, unique=True), max_size=12))
def test_check_overlap_reports_each_clashing_pair_of_streams(streams: list[list[str]]) -> None:
    # a stream's own subjects may overlap each other: the model reports that, not this check
    resources = _resources(streams)
    problems = check_overlap(resources)
    reported = {(p.location.line - 1, p.message) for p in problems}
    expected = set()
    for j, later in enumerate(streams):
        for subject in later:
            for i in range(j):
                clash = next((s for s in streams[i] if brute_overlaps(s, subject)), None)
                if clash is not None:
                    expected.add(
                        (
                            j,
                            f'subject "{subject}" of stream "S{j}" overlaps subject "{clash}" '
                            f'of stream "S{i}" at m.yaml:{i + 1}:1',
                        )
                    )
    assert reported == expected
    assert len(problems) == len(expected)


def realistic_subjects(n_streams: int, seed: int = 5) -> list[list[str]]:
    """Tenant-prefixed subjects with some wildcards (bench/overlap.py makes the same kind)."""
    rng = random.Random(seed)
    out = []
    for i in range(n_streams):
        tenant, domain = f"t{i // 20:03d}", f"d{i % 20}"
        base = f"tenant.{tenant}.{domain}"
        subjects = [rng.choice([f"{base}.>", f"{base}.*", f"{base}.*.created", f"{base}.x"])]
        if rng.random() < 0.3:
            subjects.append(f"{base}.events.{rng.choice(['*', '>', 'a'])}")
        out.append(list(dict.fromkeys(subjects)))
    return out


def test_five_thousand_streams_are_checked_in_well_under_a_second() -> None:
    resources = _resources(realistic_subjects(5000))
    config = ProjectConfig.model_validate({"tenants": {f"t{i:03d}": {} for i in range(250)}})
    start = time.process_time()  # CPU time: other processes on the machine do not count
    assert check_overlap(resources) == []
    problems = check_policy(resources, config)
    elapsed = time.process_time() - start
    assert problems == []
    assert elapsed < 1.0, f"{elapsed:.2f}s of CPU"


def test_the_finder_does_not_compare_all_pairs() -> None:
    """Queries touch the branches they can match, not every stored subject."""
    subjects = [s for group in realistic_subjects(5000) for s in group]
    trie: SubjectTrie[int] = SubjectTrie()
    for i, subject in enumerate(subjects):
        trie.insert(subject, i)
    start = time.perf_counter()
    for subject in subjects:
        trie.overlapping(subject)
    per_query = (time.perf_counter() - start) / len(subjects)
    start = time.perf_counter()
    for subject in subjects[:50]:
        for other in subjects:
            brute_match(subject, other)  # the cost of one linear scan, as a yardstick
    per_scan = (time.perf_counter() - start) / 50
    assert per_query * 20 < per_scan
