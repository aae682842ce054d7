"""Changes that lose data say so: lowered stream limits, and consumer replaces.

1. An update that lowers ``max_msgs``, ``max_bytes``, ``max_msgs_per_subject`` or
   ``max_age`` below what the stream holds now is destructive, with the estimated loss
   in the text, JSON and markdown plans; apply refuses it (zero writes) unless
   ``--allow-data-loss``.
2. A consumer replace says that delivery restarts per the new ``deliver_policy`` and
   how many already processed messages come again.

Each test has its own project and stream names on the shared server.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nats
import pytest
from harness.manifests import consumer_doc, fetch_and_ack, stream_doc
from harness.project import make_project
from harness.servers import JsWriteCounter, SingleServer, js_request_sync, unique_name

if TYPE_CHECKING:
    from harness.project import TestProject


def publish(url: str, subjects: list[str]) -> None:
    async def run() -> None:
        nc = await nats.connect(url)
        try:
            for i, subject in enumerate(subjects):
                reply = await nc.request(subject, f"m{i}".encode(), timeout=5)
                assert "error" not in json.loads(reply.data)
        finally:
            await nc.close()

    asyncio.run(run())


def messages(url: str, name: str) -> int:
    return int(js_request_sync(url, f"$JS.API.STREAM.INFO.{name}")["state"]["messages"])


def plan_json(project: TestProject) -> dict[str, Any]:
    code, out, err = project.cli("plan", "--format", "json")
    assert code == 0, err
    return json.loads(out)


def only_change(plan: dict[str, Any]) -> dict[str, Any]:
    (change,) = plan["changes"]
    return change


@pytest.fixture
def project(tmp_path: Path, nats_server: SingleServer) -> TestProject:
    return make_project(tmp_path, nats_server.url)


def test_lowered_max_msgs_is_destructive_and_refused_without_the_flag(
    project: TestProject, nats_server: SingleServer
) -> None:
    url, name = nats_server.url, unique_name("LOSS")
    project.write("s.yaml", stream_doc(name))
    assert project.cli("apply", "--auto-approve")[0] == 0
    publish(url, [f"{name.lower()}.a"] * 10)
    project.write("s.yaml", stream_doc(name, max_msgs=3))

    change = only_change(plan_json(project))
    assert change["action"] == "update" and change["destructive"] is True
    assert change["loss"]["messages"] == 7 and change["loss_paths"] == ["max_msgs"]
    code, out, _ = project.cli("plan")
    assert code == 0 and "loses about 7 messages" in out and "max_msgs lowered" in out
    code, out, _ = project.cli("plan", "--format", "markdown")
    assert "destructive change" in out and "loses about 7 messages" in out

    with JsWriteCounter(url) as counter:
        code, _, err = project.cli("apply", "--auto-approve")
    assert code == 1 and "--allow-data-loss" in err and f"Stream {name}" in err
    assert "would lose about 7 messages" in err
    assert counter.writes == []
    assert messages(url, name) == 10

    code, _, err = project.cli("apply", "--auto-approve", "--allow-data-loss")
    assert code == 0, err
    assert messages(url, name) == 3
    assert not plan_json(project)["changes"]  # at the limit now: nothing more to lose


def test_raised_or_unreached_limits_are_not_destructive(
    project: TestProject, nats_server: SingleServer
) -> None:
    url, name = nats_server.url, unique_name("LOSS")
    project.write("s.yaml", stream_doc(name, max_msgs=100))
    assert project.cli("apply", "--auto-approve")[0] == 0
    publish(url, [f"{name.lower()}.a"] * 10)
    project.write("s.yaml", stream_doc(name, max_msgs=20, max_msgs_per_subject=50))
    change = only_change(plan_json(project))
    assert change["destructive"] is False and change["loss"] is None
    # discard: new keeps what is stored when max_msgs comes down
    project.write("s.yaml", stream_doc(name, max_msgs=3, discard="new"))
    assert only_change(plan_json(project))["destructive"] is False
    assert project.cli("apply", "--auto-approve")[0] == 0
    assert messages(url, name) == 10


def test_lowered_max_age_below_the_oldest_message(
    project: TestProject, nats_server: SingleServer
) -> None:
    url, name = nats_server.url, unique_name("LOSS")
    project.write("s.yaml", stream_doc(name))
    assert project.cli("apply", "--auto-approve")[0] == 0
    publish(url, [f"{name.lower()}.a"] * 4)
    time.sleep(1.2)
    project.write("s.yaml", stream_doc(name, max_age="1s"))
    change = only_change(plan_json(project))
    assert change["destructive"] is True and change["loss_paths"] == ["max_age"]
    assert change["loss"]["messages"] == 4  # every message is older than 1s
    with JsWriteCounter(url) as counter:
        code, _, err = project.cli("apply", "--auto-approve")
    assert code == 1 and "max_age lowered" in err and counter.writes == []
    assert messages(url, name) == 4
    # a max_age every message is younger than loses nothing
    project.write("s.yaml", stream_doc(name, max_age="1h"))
    assert only_change(plan_json(project))["destructive"] is False


def test_lowered_per_subject_limit_and_max_bytes(
    project: TestProject, nats_server: SingleServer
) -> None:
    url, name = nats_server.url, unique_name("LOSS")
    low = name.lower()
    project.write("s.yaml", stream_doc(name))
    assert project.cli("apply", "--auto-approve")[0] == 0
    publish(url, [f"{low}.a"] * 6 + [f"{low}.b"] * 2 + [f"{low}.c"])
    project.write("s.yaml", stream_doc(name, max_msgs_per_subject=2))
    change = only_change(plan_json(project))
    # a keeps 2 of 6, b and c lose nothing: exact, from the per-subject counts
    assert change["destructive"] is True and change["loss"]["messages"] == 4
    assert change["loss_paths"] == ["max_msgs_per_subject"]

    size = int(js_request_sync(url, f"$JS.API.STREAM.INFO.{name}")["state"]["bytes"])
    project.write("s.yaml", stream_doc(name, max_bytes=size // 3))
    change = only_change(plan_json(project))
    assert change["destructive"] is True and change["loss_paths"] == ["max_bytes"]
    assert 5 <= change["loss"]["messages"] <= 7  # an estimate: two thirds of 9
    assert project.cli("apply", "--auto-approve", "--allow-data-loss")[0] == 0
    assert messages(url, name) == 9 - change["loss"]["messages"]


def test_consumer_replace_says_how_many_processed_messages_come_again(
    project: TestProject, nats_server: SingleServer
) -> None:
    url, name = nats_server.url, unique_name("LOSS")
    consumer = "processor"
    project.write(
        "s.yaml",
        stream_doc(name) + "---\n" + consumer_doc(name, consumer, ack_policy="explicit"),
    )
    assert project.cli("apply", "--auto-approve")[0] == 0
    publish(url, [f"{name.lower()}.a"] * 500)
    fetch_and_ack(url, name, consumer, 200)
    project.write(
        "s.yaml",
        stream_doc(name) + "---\n" + consumer_doc(name, consumer, ack_policy="all"),
    )

    change = only_change(plan_json(project))
    assert change["action"] == "replace" and change["destructive"] is True
    assert change["loss"]["redelivered"] == 200
    assert change["loss"]["num_pending"] == 300
    _, out, _ = project.cli("plan")
    expected = "delivery restarts (deliver_policy all): 200 already processed messages"
    assert expected in out and "are redelivered" in out
    _, out, _ = project.cli("plan", "--format", "markdown")
    assert expected in out

    # deliver_policy new: nothing comes again, the 300 pending are never delivered
    project.write(
        "s.yaml",
        stream_doc(name)
        + "---\n"
        + consumer_doc(name, consumer, ack_policy="all", deliver_policy="new"),
    )
    change = only_change(plan_json(project))
    assert change["loss"]["redelivered"] == 0 and change["loss"]["skipped"] == 300
    _, out, _ = project.cli("plan")
    assert "300 pending messages never delivered" in out
