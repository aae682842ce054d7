"""Limits a server or an account sets change the defaults the server derives, and what
it accepts: jsops sends what the server would pick, and refuses at plan time what it
would refuse.

One private server: its ``jetstream.limits`` cap the duplicate window at 1m (a bucket's
default, 2m, is refused there), and account ACK caps ``max_ack_pending`` at 500 (the
default of an ack consumer, 1000, is refused there: 10121).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.manifests import consumer_doc, stream_doc
from harness.project import make_project
from harness.servers import JsWriteCounter, SingleServer, js_request_sync, start_single, unique_name

ACK_LIMIT = 500


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SingleServer]:
    config = (
        'jetstream { limits { duplicate_window: "1m" } }\n'
        "accounts {\n"
        f"  ACK: {{ jetstream: {{ max_ack_pending: {ACK_LIMIT} }},"
        " users: [ {user: ack, password: ack} ] }\n"
        "  FREE: { jetstream: enabled, users: [ {user: free, password: free} ] }\n"
        "}\n"
    )
    handle = start_single(tmp_path_factory.mktemp("limits"), config_extra=config)
    yield handle
    handle.stop()


def _url(server: SingleServer, user: str = "ack") -> str:
    return server.url.replace("nats://", f"nats://{user}:{user}@")


def test_an_ack_consumer_gets_the_account_s_max_ack_pending_as_a_raw_create_would(
    tmp_path: Path, limited: SingleServer
) -> None:
    """An ack consumer that leaves max_ack_pending unset is created with the account's
    500 (jsops sent 1000, and the server refused every such consumer), the next plan is
    noop, and a manifest asking for more than the account allows is a located plan
    error with nothing sent. (The streams pin duplicate_window under the server's 1m.)"""
    url = _url(limited)
    project = make_project(tmp_path, url)
    name = unique_name("ACK")
    raw = unique_name("RAW")
    project.write(
        "s.yaml",
        stream_doc(name, duplicate_window="30s")
        + "---\n"
        + consumer_doc(name, "work", ack_policy="explicit")
        + "---\n"
        + consumer_doc(name, "fire", ack_policy="none"),
    )
    code, _out, err = project.cli("apply", "--auto-approve")
    assert code == 0, err
    info = js_request_sync(url, f"$JS.API.CONSUMER.INFO.{name}.work")
    assert info["config"]["max_ack_pending"] == ACK_LIMIT
    code, out, err = project.cli("plan", "--detailed-exitcode")
    assert code == 0, out + err

    # the same as a consumer created raw, without the field
    made = js_request_sync(
        url,
        f"$JS.API.STREAM.CREATE.{raw}",
        {"name": raw, "subjects": [f"{raw.lower()}.>"], "duplicate_window": 30 * 10**9},
    )
    assert "error" not in made, made
    created = js_request_sync(
        url,
        f"$JS.API.CONSUMER.CREATE.{raw}.c",
        {"stream_name": raw, "config": {"durable_name": "c", "ack_policy": "explicit"}},
    )
    assert created["config"]["max_ack_pending"] == info["config"]["max_ack_pending"]

    project.write(
        "s.yaml",
        stream_doc(name, duplicate_window="30s")
        + "---\n"
        + consumer_doc(name, "work", ack_policy="explicit", max_ack_pending=800),
    )
    with JsWriteCounter(url) as counter:
        code, out, err = project.cli("apply", "--auto-approve")
    assert code == 1 and counter.writes == []
    assert "manifests/s.yaml:" in err
    assert f"max_ack_pending 800 is over the account's max_ack_pending of {ACK_LIMIT}" in err


def test_apply_works_on_a_server_that_caps_the_duplicate_window(
    tmp_path: Path, limited: SingleServer
) -> None:
    """The apply lock's bucket is made with a 1s duplicate window, which any cap allows:
    with the bucket default of 2m it could never be made under this server's 1m cap,
    and every apply failed, whatever the manifests said."""
    url = _url(limited, "free")
    project = make_project(tmp_path, url)
    name = unique_name("DUP")
    project.write("s.yaml", stream_doc(name, duplicate_window="1m"))
    code, _out, err = project.cli("apply", "--auto-approve")
    assert code == 0, err
    info = js_request_sync(url, f"$JS.API.STREAM.INFO.{name}")
    assert info["config"]["duplicate_window"] == 60 * 10**9
    lock = js_request_sync(url, "$JS.API.STREAM.INFO.KV_jsops_lock")
    assert lock["config"]["duplicate_window"] == 10**9
