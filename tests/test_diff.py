"""diff_config: which fields changed, as dotted JetStream API paths in API units."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.diff import FieldDiff, diff_config


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param({"max_age": 1}, {"max_age": 1}, [], id="equal configs have no diff"),
        pytest.param({"max_age": 1}, {"max_age": 2}, [("max_age", 1, 2)], id="a scalar"),
        pytest.param({}, {"max_msgs": 5}, [("max_msgs", None, 5)], id="a field added"),
        pytest.param({"max_msgs": 5}, {}, [("max_msgs", 5, None)], id="a field removed"),
        pytest.param(
            {"placement": {"cluster": "a", "tags": ["x"]}},
            {"placement": {"cluster": "b", "tags": ["x"]}},
            [("placement.cluster", "a", "b")],
            id="nested mappings give dotted paths",
        ),
        pytest.param(
            {"sources": [{"name": "A", "filter_subject": "a.>"}, {"name": "B"}]},
            {"sources": [{"name": "A", "filter_subject": "a.x"}, {"name": "B"}]},
            [("sources.0.filter_subject", "a.>", "a.x")],
            id="lists of mappings of one length diff by index",
        ),
        pytest.param(
            {"sources": [{"name": "A"}]},
            {"sources": [{"name": "A"}, {"name": "B"}]},
            [("sources", [{"name": "A"}], [{"name": "A"}, {"name": "B"}])],
            id="lists of another length are reported whole",
        ),
        pytest.param(
            {"subjects": ["a", "b"]},
            {"subjects": ["a", "c"]},
            [("subjects", ["a", "b"], ["a", "c"])],
            id="lists of scalars are reported whole",
        ),
        pytest.param(
            {"a": 1, "b": 1},
            {"b": 2, "a": 2},
            [("b", 1, 2), ("a", 1, 2)],
            id="in the order of the desired config",
        ),
    ],
)
def test_diff_config(
    before: dict[str, Any], after: dict[str, Any], expected: list[tuple[str, Any, Any]]
) -> None:
    assert diff_config(before, after) == [FieldDiff(*row) for row in expected]


def test_a_create_and_a_delete_diff_against_nothing() -> None:
    assert diff_config(None, {"max_age": 1}) == [FieldDiff("max_age", None, 1)]
    assert diff_config({"max_age": 1}, None) == [FieldDiff("max_age", 1, None)]


def test_to_json_is_the_plan_file_shape() -> None:
    assert FieldDiff("max_age", 1, 2).to_json() == {"path": "max_age", "before": 1, "after": 2}
