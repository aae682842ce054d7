"""Plan renderers: golden text and markdown, human units, and the JSON round trip.

No server: the plan is built directly from ``reconciler.plan`` values. Regenerate the
golden files with ``JSOPS_UPDATE_GOLDEN=1 pytest tests/test_render.py`` and review the
diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from reconciler import planfile, render
from reconciler.diff import FieldDiff
from reconciler.errors import JsopsError
from reconciler.models import Address
from reconciler.plan import Action, Change, Plan, Reason

GOLDEN = Path(__file__).parent / "data" / "golden"
DAY = 86_400 * 10**9
GIB = 1024**3


def sample_plan() -> Plan:
    """One plan with every action (noops last, as plan_from_json puts them)."""
    owner = {"jsops.owner": "payments"}
    return Plan(
        environment="dev",
        project="payments",
        api_level=5,
        server_version="2.15.1",
        created_at="2026-01-02T03:04:05+00:00",
        unmanaged=["Stream LEFTOVER"],
        changes=[
            Change(
                Address("Consumer", "old", stream="EVENTS"),
                Action.DELETE,
                reason=Reason.NOT_IN_MANIFESTS,
                destructive=True,
                loss={"num_pending": 3, "num_ack_pending": 1, "num_redelivered": 0},
                live_digest="00000000000000c1",
            ),
            Change(
                Address("Stream", "OLD"),
                Action.DELETE,
                reason=Reason.NOT_IN_MANIFESTS,
                destructive=True,
                loss={"messages": 1, "bytes": 0, "consumers": 0},
                live_digest="00000000000000a1",
            ),
            Change(
                Address("Stream", "ORDERS"),
                Action.CREATE,
                reason=Reason.NEW,
                location="manifests/orders.yaml:3:11",
                diff=[
                    FieldDiff("subjects", None, ["tenant.acme.orders.>"]),
                    FieldDiff("max_age", None, 7 * DAY),
                    FieldDiff("max_bytes", None, GIB),
                    FieldDiff("metadata", None, owner),
                ],
                send={
                    "name": "ORDERS",
                    "subjects": ["tenant.acme.orders.>"],
                    "max_age": 7 * DAY,
                    "max_bytes": GIB,
                    "metadata": owner,
                },
            ),
            Change(
                Address("Stream", "EVENTS"),
                Action.UPDATE,
                reason=Reason.CHANGED,
                location="manifests/events.yaml:3:11",
                live_digest="00000000000000e1",
                diff=[
                    FieldDiff("max_age", 7 * DAY, 14 * DAY),
                    FieldDiff("max_bytes", GIB, -1),
                    FieldDiff("description", None, "all | events"),
                ],
                send={"name": "EVENTS", "max_age": 14 * DAY, "metadata": owner},
            ),
            Change(
                Address("Stream", "AUDIT"),
                Action.REPLACE,
                reason=Reason.CANNOT_UPDATE,
                location="manifests/audit.yaml:3:11",
                replace_paths=["storage"],
                replace_reasons=["storage type cannot change"],
                destructive=True,
                loss={"messages": 1234, "bytes": 5 * 1024**2, "consumers": 1},
                live_digest="00000000000000d1",
                prevent_destroy=True,
                diff=[
                    FieldDiff("storage", "file", "memory"),
                    FieldDiff("duplicate_window", 120 * 10**9, 60 * 10**9),
                ],
                send={"name": "AUDIT", "storage": "memory", "metadata": owner},
            ),
            Change(
                Address("Consumer", "reader", stream="AUDIT"),
                Action.REPLACE,
                reason=Reason.STREAM_REPLACED,
                location="manifests/audit.yaml:12:11",
                destructive=True,
                loss={"num_pending": 10, "num_ack_pending": 2, "num_redelivered": 4},
                live_digest="00000000000000d2",
                depends_on=["Stream AUDIT"],
                send={"durable_name": "reader", "metadata": owner},
            ),
            Change(
                Address("Consumer", "processor", stream="ORDERS"),
                Action.CREATE,
                reason=Reason.NEW,
                location="manifests/orders.yaml:12:11",
                depends_on=["Stream ORDERS"],
                diff=[
                    FieldDiff("ack_policy", None, "explicit"),
                    FieldDiff("ack_wait", None, 30 * 10**9),
                    FieldDiff("backoff", None, [10**9, 5 * 10**9, 90 * 60 * 10**9]),
                    FieldDiff("max_deliver", None, 5),
                ],
                send={"durable_name": "processor", "ack_policy": "explicit", "metadata": owner},
            ),
            Change(
                Address("Stream", "LOGS"),
                Action.NOOP,
                location="manifests/logs.yaml:3:11",
                live_digest="00000000000000f1",
            ),
        ],
    )


def _check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("JSOPS_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing golden file {path} (run with JSOPS_UPDATE_GOLDEN=1)"
    assert text == path.read_text(encoding="utf-8")


def test_text_matches_golden() -> None:
    text = render.render_text(sample_plan(), color=False)
    assert "\x1b[" not in text
    _check_golden("plan.txt", text)


def test_text_with_noop_lists_unchanged_resources() -> None:
    text = render.render_text(sample_plan(), show_noop=True)
    assert "    Stream LOGS" in text
    assert "Stream LOGS" not in render.render_text(sample_plan())


def test_text_colors_only_when_asked() -> None:
    colored = render.render_text(sample_plan(), color=True)
    assert "\x1b[" in colored
    assert click_unstyle(colored) == render.render_text(sample_plan(), color=False)


def click_unstyle(text: str) -> str:
    import click

    return click.unstyle(text)


def test_markdown_matches_golden() -> None:
    _check_golden("plan.md", render.render_markdown(sample_plan()))


def test_markdown_of_an_empty_plan_says_no_changes() -> None:
    plan = Plan("dev", "payments", [], created_at="x")
    text = render.render_markdown(plan)
    assert "(no changes)" in text
    assert "| resource |" not in text


def test_text_units_are_human() -> None:
    text = render.render_text(sample_plan())
    assert "max_age: 7d -> 14d" in text
    assert "max_bytes: 1GiB" in text
    assert "max_bytes: 1GiB -> unlimited" in text
    assert "backoff: [1s, 5s, 1h30m]" in text
    assert "duplicate_window: 2m -> 1m" in text
    assert 'storage: "file" -> "memory"  # forces replacement' in text
    assert "loses 1234 messages (5MiB), 1 consumer" in text
    assert text.rstrip().endswith("Stream LEFTOVER")


@pytest.mark.parametrize(
    ("kind", "path", "value", "shown"),
    [
        pytest.param("Stream", "max_age", 7 * DAY, "7d", id="max_age days"),
        pytest.param("Stream", "max_age", 5400 * 10**9, "1h30m", id="max_age compound"),
        pytest.param("Stream", "max_age", 0, "0s", id="max_age zero"),
        pytest.param("Stream", "max_bytes", GIB, "1GiB", id="max_bytes GiB"),
        pytest.param("Stream", "max_bytes", 10**9, "1GB", id="max_bytes GB"),
        pytest.param("Stream", "max_bytes", -1, "unlimited", id="max_bytes unlimited"),
        pytest.param("Stream", "max_msgs", -1, "unlimited", id="max_msgs unlimited"),
        pytest.param("Stream", "max_msgs", 1000, "1000", id="plain int"),
        pytest.param("Consumer", "backoff", [10**9, 2 * 10**9], "[1s, 2s]", id="backoff list"),
        pytest.param("Consumer", "ack_wait", 30 * 10**9, "30s", id="consumer ack_wait"),
        pytest.param("Stream", "storage", "file", '"file"', id="string quoted"),
        pytest.param("Stream", "allow_direct", True, "true", id="bool"),
        pytest.param("Stream", "description", None, "(none)", id="none"),
        pytest.param("Stream", "consumer_limits.inactive_threshold", 60 * 10**9, "1m", id="nested"),
    ],
)
def test_human_units(kind: str, path: str, value: Any, shown: str) -> None:
    assert render.human(kind, path, value) == shown


def test_summary_line() -> None:
    assert render.summary_line(sample_plan()) == (
        "Plan: 2 to create, 1 to update, 2 to replace, 2 to delete, 1 unchanged."
    )
    empty = Plan("dev", "p", [Change(Address("Stream", "S"), Action.NOOP)])
    assert render.summary_line(empty) == "No changes. 1 resource(s) up to date."


def test_json_round_trips() -> None:
    plan = sample_plan()
    data = planfile.plan_to_json(plan)
    assert planfile.plan_from_json(data) == plan
    # and through the text form, as a plan file is written and read
    assert planfile.plan_from_json(json.loads(render.render_json(plan))) == plan


def test_json_shape_is_the_design_contract() -> None:
    data = json.loads(render.render_json(sample_plan()))
    assert data["format_version"] == 1
    assert data["environment"] == "dev"
    assert data["summary"] == {"create": 2, "update": 1, "replace": 2, "delete": 2, "noop": 1}
    # unchanged resources are counted in the summary, not listed among the changes
    assert [c["action"] for c in data["changes"]] == [
        "delete",
        "delete",
        "create",
        "update",
        "replace",
        "replace",
        "create",
    ]
    for change in data["changes"]:
        assert {
            "action",
            "kind",
            "name",
            "stream",
            "account",
            "destructive",
            "reason",
            "diff",
        } <= set(change)
        for diff in change["diff"]:
            assert set(diff) == {"path", "before", "after"}
    update = data["changes"][3]
    assert update["kind"] == "Stream" and update["name"] == "EVENTS"
    assert update["stream"] is None and update["reason"] == "changed"
    assert update["diff"][0] == {"path": "max_age", "before": 7 * DAY, "after": 14 * DAY}
    consumer = data["changes"][0]
    assert (consumer["kind"], consumer["name"], consumer["stream"]) == ("Consumer", "old", "EVENTS")


def test_plan_file_ignores_unknown_keys() -> None:
    data = planfile.plan_to_json(sample_plan())
    data["from_the_future"] = {"x": 1}
    for change in data["changes"]:
        change["drift"] = False
    assert planfile.plan_from_json(data) == sample_plan()


@pytest.mark.parametrize("version", [0, 2, "1", None])
def test_plan_file_with_another_format_version_is_refused(version: Any) -> None:
    data = planfile.plan_to_json(sample_plan())
    data["format_version"] = version
    with pytest.raises(JsopsError, match=r"format_version .*this jsops reads format_version 1"):
        planfile.plan_from_json(data)


def test_plan_file_with_unknown_action_is_refused() -> None:
    data = planfile.plan_to_json(sample_plan())
    data["changes"][0]["action"] = "explode"
    with pytest.raises(JsopsError, match="unknown action 'explode'"):
        planfile.plan_from_json(data)
