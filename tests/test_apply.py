"""apply: prune, prevent_destroy, saved plans, confirmation, and partial failures.

Every test runs against the shared JetStream server with its own project (its name is
the owner tag) and unique stream names, so prune in one test never sees another's
resources. Writes are counted on the server with ``JsWriteCounter``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from harness.project import make_project
from harness.servers import JsWriteCounter, SingleServer, js_request_sync, unique_name

if TYPE_CHECKING:  # imported by name, pytest would try to collect the class
    from harness.project import TestProject

DAY = 86_400 * 10**9


def stream_doc(name: str, *, prevent_destroy: bool = False, **spec: Any) -> str:
    spec.setdefault("subjects", [f"{name.lower()}.>"])
    meta: dict[str, Any] = {"name": name}
    if prevent_destroy:
        meta["prevent_destroy"] = True
    return (
        "apiVersion: jsops/v1\nkind: Stream\n"
        f"metadata: {json.dumps(meta)}\nspec: {json.dumps(spec)}\n"
    )


def consumer_doc(stream: str, name: str, *, prevent_destroy: bool = False, **spec: Any) -> str:
    spec.setdefault("ack_policy", "explicit")
    meta: dict[str, Any] = {"name": name, "stream": stream}
    if prevent_destroy:
        meta["prevent_destroy"] = True
    return (
        "apiVersion: jsops/v1\nkind: Consumer\n"
        f"metadata: {json.dumps(meta)}\nspec: {json.dumps(spec)}\n"
    )


def docs(*parts: str) -> str:
    return "---\n".join(parts)


def stream_info(url: str, name: str) -> dict[str, Any] | None:
    reply = js_request_sync(url, f"$JS.API.STREAM.INFO.{name}")
    return None if "error" in reply else reply


def consumer_info(url: str, stream: str, name: str) -> dict[str, Any] | None:
    reply = js_request_sync(url, f"$JS.API.CONSUMER.INFO.{stream}.{name}")
    return None if "error" in reply else reply


def raw_create_stream(url: str, name: str, **config: Any) -> dict[str, Any]:
    config.setdefault("subjects", [f"{name.lower()}.>"])
    reply = js_request_sync(url, f"$JS.API.STREAM.CREATE.{name}", {"name": name, **config})
    assert "error" not in reply, reply
    return reply


def apply_ok(project: TestProject, *args: str) -> str:
    code, _, err = project.cli("apply", "--auto-approve", *args)
    assert code == 0, err
    return err


@pytest.fixture
def project(tmp_path: Path, nats_server: SingleServer) -> TestProject:
    return make_project(tmp_path, nats_server.url)


# ------------------------------------------------------------------------ prune


def test_prune_deletes_only_owned_undeclared_resources(
    tmp_path: Path, nats_server: SingleServer, project: TestProject
) -> None:
    url = nats_server.url
    keep, gone = unique_name("KEEP"), unique_name("GONE")
    project.write(
        "streams.yaml",
        docs(
            stream_doc(keep),
            consumer_doc(keep, "stays"),
            consumer_doc(keep, "dropped"),
            stream_doc(gone),
            consumer_doc(gone, "c1"),
        ),
    )
    apply_ok(project)
    # Not ours: a stream made by hand (no owner tag), a hand consumer on our stream,
    # and another project's stream.
    hand = unique_name("HAND")
    raw_create_stream(url, hand)
    hand_consumer = js_request_sync(
        url,
        f"$JS.API.CONSUMER.CREATE.{keep}.byhand",
        {"stream_name": keep, "config": {"durable_name": "byhand", "ack_policy": "explicit"}},
    )
    assert "error" not in hand_consumer, hand_consumer
    other = make_project(tmp_path, url)
    theirs = unique_name("THEIRS")
    other.write("s.yaml", stream_doc(theirs))
    apply_ok(other)

    project.write("streams.yaml", docs(stream_doc(keep), consumer_doc(keep, "stays")))

    # Without --prune: only a note, nothing deleted, and a plan without changes.
    code, out, err = project.cli("plan", "--detailed-exitcode")
    assert code == 0, err
    assert "Unmanaged" in out
    for owned in (f"Stream {gone}", f"Consumer {gone}/c1", f"Consumer {keep}/dropped"):
        assert owned in out
    code, out, err = project.cli("plan", "--format", "json")
    plan = json.loads(out)
    assert plan["changes"] == []
    assert sorted(plan["unmanaged"]) == sorted(
        [f"Stream {gone}", f"Consumer {gone}/c1", f"Consumer {keep}/dropped"]
    )
    with JsWriteCounter(url) as counter:
        code, _, err = project.cli("apply", "--auto-approve")
    assert code == 0, err
    assert counter.writes == []

    # With --prune: exactly our three, consumers before their stream.
    code, out, err = project.cli("plan", "--prune", "--format", "json")
    assert code == 0, err
    plan = json.loads(out)
    planned = [(c["action"], c["kind"], c["name"], c["stream"]) for c in plan["changes"]]
    assert sorted(planned) == sorted(
        [
            ("delete", "Consumer", "c1", gone),
            ("delete", "Consumer", "dropped", keep),
            ("delete", "Stream", gone, None),
        ]
    )
    assert planned[-1] == ("delete", "Stream", gone, None)
    for foreign in (hand, theirs, "byhand"):
        assert foreign not in out
    assert all(c["destructive"] for c in plan["changes"])

    with JsWriteCounter(url) as counter:
        code, out, err = project.cli("apply", "--prune", "--auto-approve")
    assert code == 0, err
    assert counter.writes.index(f"$JS.API.CONSUMER.DELETE.{gone}.c1") < counter.writes.index(
        f"$JS.API.STREAM.DELETE.{gone}"
    )
    assert sorted(counter.writes) == sorted(
        [
            f"$JS.API.CONSUMER.DELETE.{gone}.c1",
            f"$JS.API.CONSUMER.DELETE.{keep}.dropped",
            f"$JS.API.STREAM.DELETE.{gone}",
        ]
    )
    assert stream_info(url, gone) is None
    assert consumer_info(url, keep, "dropped") is None
    assert consumer_info(url, keep, "stays") is not None
    assert consumer_info(url, keep, "byhand") is not None
    assert stream_info(url, hand) is not None
    assert stream_info(url, theirs) is not None

    # Prune is idempotent, and never reaches the resources it does not own.
    with JsWriteCounter(url) as counter:
        code, _, err = project.cli("apply", "--prune", "--auto-approve")
    assert code == 0, err
    assert counter.writes == []
    js_request_sync(url, f"$JS.API.STREAM.DELETE.{hand}")


def test_saved_prune_plan_of_a_consumer_with_explicit_replicas(
    nats_server: SingleServer, project: TestProject
) -> None:
    """The stale check canonicalizes a consumer the way the plan did (no false alarm)."""
    url = nats_server.url
    name = unique_name("REPLICAS")
    project.write(
        "s.yaml",
        docs(
            stream_doc(name, consumer_limits={"max_ack_pending": 50}),
            consumer_doc(name, "c", num_replicas=1),
        ),
    )
    apply_ok(project)
    project.write("s.yaml", stream_doc(name, consumer_limits={"max_ack_pending": 50}))
    code, _, err = project.cli("plan", "--prune", "--out", "plan.json")
    assert code == 0, err
    code, _, err = project.cli("apply", "plan.json", "--prune")
    assert code == 0, err
    assert consumer_info(url, name, "c") is None


def test_saved_plan_with_deletes_needs_prune(
    nats_server: SingleServer, project: TestProject
) -> None:
    url = nats_server.url
    name = unique_name("PRUNED")
    project.write("s.yaml", stream_doc(name))
    apply_ok(project)
    project.write("s.yaml", stream_doc(unique_name("KEPT")))  # something stays declared
    code, _, err = project.cli("plan", "--prune", "--out", "plan.json")
    assert code == 0, err

    with JsWriteCounter(url) as counter:
        code, _, err = project.cli("apply", "plan.json")
    assert code == 1
    assert f"Stream {name}: delete needs --prune" in err
    assert "Traceback" not in err
    assert counter.writes == []
    assert stream_info(url, name) is not None

    code, _, err = project.cli("apply", "plan.json", "--prune")
    assert code == 0, err
    assert stream_info(url, name) is None


# -------------------------------------------------------------- prevent_destroy


@pytest.mark.parametrize(
    "protect",
    [
        pytest.param("stream", id="protected stream"),
        pytest.param("consumer", id="protected consumer"),
    ],
)
def test_prevent_destroy_refuses_replace_even_with_allow_replace(
    nats_server: SingleServer, project: TestProject, protect: str
) -> None:
    url = nats_server.url
    name = unique_name("SAFE")

    def write(storage: str) -> None:
        project.write(
            "s.yaml",
            docs(
                stream_doc(name, storage=storage, prevent_destroy=protect == "stream"),
                consumer_doc(name, "c", prevent_destroy=protect == "consumer"),
            ),
        )

    write("file")
    apply_ok(project)
    ack = js_request_sync(url, f"{name.lower()}.x", {"n": 1})  # publish one message
    assert ack.get("stream") == name, ack
    write("memory")  # storage cannot change in place: replace (and the consumer with it)
    protected = f"Stream {name}" if protect == "stream" else f"Consumer {name}/c"

    code, out, err = project.cli("plan")
    assert code == 0, err
    assert "prevent_destroy" in out

    with JsWriteCounter(url) as counter:
        code, out, err = project.cli("apply", "--allow-replace", "--auto-approve")
    assert code == 1
    assert f"{protected}: replace refused by prevent_destroy" in err
    if protect == "stream":
        assert "(would lose 1 message (" in err
    assert "nothing was changed" in err
    assert "Traceback" not in err
    assert counter.writes == []
    assert stream_info(url, name)["config"]["storage"] == "file"  # type: ignore[index]

    # a saved plan is refused the same way
    code, _, err = project.cli("plan", "--out", "plan.json")
    assert code == 0, err
    with JsWriteCounter(url) as counter:
        code, _, err = project.cli("apply", "plan.json", "--allow-replace")
    assert code == 1
    assert "refused by prevent_destroy" in err
    assert counter.writes == []


def test_replace_needs_allow_replace(nats_server: SingleServer, project: TestProject) -> None:
    url = nats_server.url
    name = unique_name("REPL")
    project.write("s.yaml", stream_doc(name, storage="file"))
    apply_ok(project)
    project.write("s.yaml", stream_doc(name, storage="memory"))
    with JsWriteCounter(url) as counter:
        code, _, err = project.cli("apply", "--auto-approve")
    assert code == 1
    assert f"Stream {name}: replace needs --allow-replace (storage" in err
    assert counter.writes == []
    code, _, err = project.cli("apply", "--auto-approve", "--allow-replace")
    assert code == 0, err
    assert stream_info(url, name)["config"]["storage"] == "memory"  # type: ignore[index]


# ------------------------------------------------------------------ saved plans


def test_saved_plan_applies_exactly_what_it_holds(
    nats_server: SingleServer, project: TestProject
) -> None:
    url = nats_server.url
    a, b, later = unique_name("SA"), unique_name("SB"), unique_name("LATER")
    project.write("a.yaml", stream_doc(a, max_age="7d"))
    apply_ok(project)
    project.write("a.yaml", stream_doc(a, max_age="14d"))
    project.write("b.yaml", docs(stream_doc(b), consumer_doc(b, "c")))
    code, out, err = project.cli("plan", "--out", "plan.json")
    assert out.startswith("jsops plan:")
    assert code == 0, err
    assert "plan saved to plan.json" in err
    saved = json.loads((project.root / "plan.json").read_text())
    assert saved["summary"] == {"create": 2, "update": 1, "replace": 0, "delete": 0, "noop": 0}

    # the manifests move on after the plan: apply PLANFILE plans again, finds another
    # plan, and refuses it without writing
    project.write("later.yaml", stream_doc(later))
    project.write("a.yaml", stream_doc(a, max_age="30d"))
    with JsWriteCounter(url) as counter:
        code, _, err = project.cli("apply", "plan.json")
    assert code == 1
    assert "the plan is stale, nothing was changed" in err
    assert f"Stream {a}: differs from a plan made now (diff, send)" in err
    assert f"Stream {later}: missing from the plan file" in err
    assert counter.writes == []

    # back to the manifests the plan was made from: it applies, exactly
    project.remove("later.yaml")
    project.write("a.yaml", stream_doc(a, max_age="14d"))
    with JsWriteCounter(url) as counter:
        code, _, err = project.cli("apply", "plan.json")
    assert code == 0, err
    assert sorted(counter.writes) == sorted(
        [
            f"$JS.API.STREAM.UPDATE.{a}",
            f"$JS.API.STREAM.CREATE.{b}",
            f"$JS.API.CONSUMER.CREATE.{b}.c",
        ]
    )
    assert "Apply complete: 3 done, 0 failed, 0 skipped." in err
    assert stream_info(url, a)["config"]["max_age"] == 14 * DAY  # type: ignore[index]
    assert consumer_info(url, b, "c") is not None
    assert stream_info(url, later) is None

    # applying the same plan again: every resource changed since (by that apply)
    with JsWriteCounter(url) as counter:
        code, _, err = project.cli("apply", "plan.json")
    assert code == 1
    assert "stale" in err
    assert counter.writes == []


def _raw_update_max_age(url: str, name: str) -> None:
    config = stream_info(url, name)["config"]  # type: ignore[index]
    reply = js_request_sync(url, f"$JS.API.STREAM.UPDATE.{name}", {**config, "max_age": 3 * DAY})
    assert "error" not in reply, reply


def _raw_update_consumer(url: str, stream: str, name: str) -> None:
    config = consumer_info(url, stream, name)["config"]  # type: ignore[index]
    reply = js_request_sync(
        url,
        f"$JS.API.CONSUMER.CREATE.{stream}.{name}",
        {"stream_name": stream, "config": {**config, "max_deliver": 9}, "action": "update"},
    )
    assert "error" not in reply, reply


@pytest.mark.parametrize(
    "what",
    [
        pytest.param("updated", id="stream updated out of band"),
        pytest.param("deleted", id="stream deleted out of band"),
        pytest.param("created", id="planned create made by someone else"),
        pytest.param("consumer", id="consumer updated out of band"),
        pytest.param("unchanged_neighbour", id="only a neighbour changed"),
    ],
)
def test_stale_saved_plan_is_refused_and_writes_nothing(
    nats_server: SingleServer, project: TestProject, what: str
) -> None:
    url = nats_server.url
    name, new = unique_name("STALE"), unique_name("NEW")
    project.write("a.yaml", docs(stream_doc(name, max_age="7d"), consumer_doc(name, "c")))
    apply_ok(project)
    project.write(
        "a.yaml",
        docs(stream_doc(name, max_age="14d"), consumer_doc(name, "c", max_deliver=5)),
    )
    project.write("b.yaml", stream_doc(new))
    code, _, err = project.cli("plan", "--out", "plan.json")
    assert code == 0, err

    stale = {
        "updated": f"Stream {name}: changed since the plan was made",
        "deleted": f"Stream {name}: no longer exists",
        "created": f"Stream {new}: now exists",
        "consumer": f"Consumer {name}/c: changed since the plan was made",
    }.get(what)
    if what == "updated":
        _raw_update_max_age(url, name)
    elif what == "deleted":
        js_request_sync(url, f"$JS.API.STREAM.DELETE.{name}")
    elif what == "created":
        raw_create_stream(url, new)
    elif what == "consumer":
        _raw_update_consumer(url, name, "c")
    else:  # a stream this plan does not touch changes: the plan is still good
        raw_create_stream(url, unique_name("NEIGHBOUR"))

    with JsWriteCounter(url) as counter:
        code, _, err = project.cli("apply", "plan.json")
    if stale is None:
        assert code == 0, err
        return
    assert code == 1
    assert "the plan is stale, nothing was changed" in err
    assert stale in err
    assert "Traceback" not in err
    # only this test's names: other tests write to the shared server at the same time
    assert [w for w in counter.writes if name in w or new in w] == []


def test_plan_file_with_another_format_version_is_refused(
    nats_server: SingleServer, project: TestProject
) -> None:
    project.write("a.yaml", stream_doc(unique_name("FMT")))
    code, _, err = project.cli("plan", "--out", "plan.json")
    assert code == 0, err
    path = project.root / "plan.json"
    data = json.loads(path.read_text())
    data["format_version"] = 2
    path.write_text(json.dumps(data))
    with JsWriteCounter(nats_server.url) as counter:
        code, _, err = project.cli("apply", "plan.json")
    assert code == 1
    assert err.strip().splitlines() == [
        "plan.json: plan file has format_version 2; this jsops reads format_version 1 "
        "(make the plan again with this version)"
    ]
    assert counter.writes == []

    path.write_text("not json")
    code, _, err = project.cli("apply", "plan.json")
    assert code == 1
    assert "plan.json: not a jsops plan file" in err
    code, _, err = project.cli("apply", "missing.json")
    assert code == 1
    assert "missing.json: plan file not found" in err


def test_plan_for_one_environment_is_refused_in_another(
    tmp_path: Path, nats_server: SingleServer
) -> None:
    url = nats_server.url
    project = make_project(tmp_path, url, envs={"a": {"servers": [url]}, "b": {"servers": [url]}})
    name = unique_name("ENVS")
    project.write("a.yaml", stream_doc(name))
    code, _, err = project.cli("plan", "-e", "a", "--out", "plan.json")
    assert code == 0, err
    with JsWriteCounter(url) as counter:
        code, _, err = project.cli("apply", "plan.json", "-e", "b")
    assert code == 1
    assert err.strip() == 'the plan is for environment "a", not "b"'
    assert counter.writes == []
    # without -e the plan's own environment is used
    code, _, err = project.cli("apply", "plan.json")
    assert code == 0, err
    assert stream_info(url, name) is not None


def test_saved_plan_with_target_is_a_usage_error(project: TestProject) -> None:
    project.write("a.yaml", stream_doc(unique_name("TGT")))
    code, _, err = project.cli("plan", "--out", "plan.json")
    assert code == 0, err
    code, _, err = project.cli("apply", "plan.json", "--target", "Stream/X")
    assert code == 1
    assert "--target cannot be used with a plan file" in err


# ------------------------------------------------------------------ confirmation


def test_apply_without_tty_refuses_and_writes_nothing(
    nats_server: SingleServer, project: TestProject
) -> None:
    url = nats_server.url
    name = unique_name("TTY")
    project.write("a.yaml", stream_doc(name))
    with JsWriteCounter(url) as counter:
        code, out, err = project.cli("apply")
    assert code == 1
    assert f"+ Stream {name}" in out  # the plan is shown first
    assert "no terminal to ask on (pass --auto-approve)" in err
    assert "Traceback" not in err
    assert counter.writes == []
    assert stream_info(url, name) is None

    code, out, err = project.cli("apply", "--auto-approve")
    assert code == 0, err
    assert f"+ Stream {name}" in out
    assert "Apply complete: 1 done, 0 failed, 0 skipped." in err
    assert "Apply complete" not in out
    assert stream_info(url, name) is not None

    code, out, err = project.cli("apply")  # nothing to do: no confirmation needed
    assert code == 0, err
    assert "No changes." in err


# --------------------------------------------------------------- failed applies


def test_failed_change_skips_dependents_and_the_rest_goes_on(
    nats_server: SingleServer, project: TestProject
) -> None:
    url = nats_server.url
    bad, good = unique_name("BAD"), unique_name("GOOD")

    # A failure only the server can know: BAD sources a stream no manifest declares,
    # whose max_msg_size is larger than BAD's (validation never sees the origin, plan
    # does not compare them): the server refuses BAD's create.
    origin = unique_name("ORIGIN")
    created = js_request_sync(
        url,
        f"$JS.API.STREAM.CREATE.{origin}",
        {"name": origin, "subjects": [f"{origin.lower()}.>"], "max_msg_size": 2048},
    )
    assert "error" not in created, created

    def manifests(max_msg_size: int) -> str:
        return docs(
            stream_doc(bad, sources=[{"name": origin}], max_msg_size=max_msg_size),
            consumer_doc(bad, "c"),
            stream_doc(good),
            consumer_doc(good, "c"),
        )

    try:
        project.write("a.yaml", manifests(1024))
        code, _, err = project.cli("apply", "--auto-approve")
        assert code == 1
        assert "Traceback" not in err
        lines = err.splitlines()
        failed = [line for line in lines if f"Stream {bad}: create failed:" in line]
        assert len(failed) == 1, err
        assert "must have max message size >= " in failed[0]  # the server's words
        assert f"Consumer {bad}/c: create skipped: Stream {bad} did not complete" in lines
        assert f"done: create Stream {good}, create Consumer {good}/c" in lines
        assert "apply incomplete: 2 done, 1 failed, 1 skipped" in lines
        assert stream_info(url, good) is not None
        assert consumer_info(url, good, "c") is not None
        assert stream_info(url, bad) is None

        # once the manifest is fixed the same run completes the rest
        project.write("a.yaml", manifests(2048))
        code, _, err = project.cli("apply", "--auto-approve")
        assert code == 0, err
        assert "Apply complete: 2 done" in err
    finally:  # BAD would go on asking the deleted origin for its source consumer
        js_request_sync(url, f"$JS.API.STREAM.DELETE.{bad}")
        js_request_sync(url, f"$JS.API.STREAM.DELETE.{origin}")


def test_prune_refuses_a_protected_resource_whose_manifest_is_gone(nats_server, tmp_path):
    """prevent_destroy is written to the resource's metadata, so it still protects the
    resource after its manifest was deleted."""
    project = make_project(tmp_path, nats_server.url)
    keep, other = unique_name("KEEP"), unique_name("OTHER")
    project.write("keep.yaml", stream_doc(keep, prevent_destroy=True))
    project.write("other.yaml", stream_doc(other))
    code, _out, err = project.cli("apply", "--auto-approve")
    assert code == 0, err
    assert stream_info(nats_server.url, keep)["config"]["metadata"]["jsops.prevent_destroy"]
    project.remove("keep.yaml")
    with JsWriteCounter(nats_server.url) as counter:
        code, _out, err = project.cli("apply", "--auto-approve", "--prune")
    assert code == 1
    assert f"Stream {keep}: delete refused by prevent_destroy" in err
    assert counter.writes == []
    assert stream_info(nats_server.url, keep) is not None


def test_scheduler_skips_a_dependency_cycle_instead_of_hanging() -> None:
    """Plans never contain cycles; if one did, apply must end (skipping them), not hang."""
    import asyncio

    from reconciler.apply import ApplyResult, _run_phase
    from reconciler.models import Address
    from reconciler.plan import Action, Change

    a = Change(Address("Stream", "A"), Action.CREATE, depends_on=["Stream B"])
    b = Change(Address("Stream", "B"), Action.CREATE, depends_on=["Stream A"])
    result = ApplyResult()
    asyncio.run(asyncio.wait_for(_run_phase([a, b], None, result, {}, 4, None), 5))  # type: ignore[arg-type]
    assert sorted(c.address.name for c, _why in result.skipped) == ["A", "B"]
    assert result.done == [] and result.failed == []


def test_a_change_skipped_before_its_phase_starts_settles_its_dependents_once() -> None:
    """A change whose dependency in an earlier phase did not complete is skipped as its
    phase starts, and its own dependents with it: once each, not again as the phase
    releases what is ready (counted twice, a phase could end with a change still in
    flight, reported as neither done nor not done)."""
    import asyncio

    from reconciler.apply import ApplyResult, ApplyStatus, _run_phase
    from reconciler.models import Address
    from reconciler.plan import Action, Change

    stream = Change(Address("Stream", "A"), Action.CREATE, depends_on=["Stream GONE"])
    consumer = Change(Address("Consumer", "c", stream="A"), Action.CREATE, depends_on=["Stream A"])
    result = ApplyResult()
    outcome = {"Stream GONE": ApplyStatus.FAILED}
    events: list[str] = []
    asyncio.run(
        asyncio.wait_for(
            _run_phase(
                [stream, consumer],
                None,  # type: ignore[arg-type]
                result,
                outcome,
                4,
                lambda status, change, _why: events.append(f"{status} {change.key}"),
            ),
            5,
        )
    )
    assert [c.key for c, _why in result.skipped] == ["Stream A", "Consumer A/c"]
    assert events == ["skipped Stream A", "skipped Consumer A/c"]


def test_a_worker_whose_cancellation_is_lost_still_ends_the_apply() -> None:
    """An apply stopped mid-phase (its lock lost) cancels its workers; on Python 3.11 a
    worker cancelled in the same loop iteration as its reply arrives (nats-py waits with
    asyncio.wait_for) returns the reply instead and goes on: the apply must end anyway,
    not wait forever for that worker (it hung `jsops apply` resumed after a stop)."""
    import asyncio

    from reconciler.apply import ApplyResult, _run_phase
    from reconciler.errors import JsopsError
    from reconciler.models import Address
    from reconciler.plan import Action, Change

    async def main() -> None:
        loop = asyncio.get_running_loop()
        owner: asyncio.Task[None] | None = None

        async def guard() -> None:
            assert owner is not None
            reply = loop.create_future()
            owner.cancel()  # the lease is lost: the apply stops and cancels this worker...
            loop.call_soon(reply.set_result, None)  # ...just as its reply comes in
            await asyncio.wait_for(reply, 30)
            raise JsopsError("the apply lock was lost")  # the next guard says so

        change = Change(Address("Stream", "A"), Action.CREATE)
        conns: Any = None  # never reached: the guard stops the only change
        owner = asyncio.create_task(
            _run_phase([change], conns, ApplyResult(), {}, 4, None, None, guard)
        )
        done, _pending = await asyncio.wait([owner], timeout=5)
        assert done, "the apply did not end"
        assert owner.cancelled()
        assert asyncio.all_tasks() == {asyncio.current_task()}  # no worker left behind

    asyncio.run(main())


def test_for_each_runs_every_item_bounded_and_its_first_error_stops_the_rest() -> None:
    """The live reads' pool (reconciler.tasks.for_each): every item once, never more
    than the bound at once, and a failure ends the pool (no task left reading)."""
    import asyncio

    from reconciler.tasks import for_each

    async def main() -> None:
        seen: list[int] = []
        running = peak = 0

        async def work(item: int) -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.001 * (item % 3))
            seen.append(item)
            running -= 1

        await for_each(list(range(50)), work, 4)
        assert sorted(seen) == list(range(50)) and peak == 4

        async def failing(item: int) -> None:
            if item == 3:
                raise RuntimeError("boom")
            await asyncio.sleep(10)

        with pytest.raises(RuntimeError, match="boom"):
            await asyncio.wait_for(for_each(list(range(20)), failing, 4), 5)
        assert asyncio.all_tasks() == {asyncio.current_task()}

    asyncio.run(main())
