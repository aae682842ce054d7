"""Saved plans are verified, never executed as written (issue 9 item 2).

``apply PLANFILE`` plans again from the same manifests and live state and applies
that fresh plan only when it equals the saved one; a plan recorded against another
server, cluster or environment is refused. Every edit below is one an attacker (or a
careless merge) could make to a plan file between review and apply: each is refused
with exit 1 and zero JetStream write requests, counted on the server.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from harness.manifests import stream_doc
from harness.project import make_project
from harness.servers import (
    JsWriteCounter,
    SingleServer,
    js_request_sync,
    start_single,
    unique_name,
)

from reconciler.errors import JsopsError
from reconciler.planfile import MIN_BACKGROUND_CHECK, read_saved_plan

if TYPE_CHECKING:
    from harness.project import TestProject

DAY = 86_400 * 10**9
Edit = Callable[[dict[str, Any], "Case"], None]


def stream_info(url: str, name: str) -> dict[str, Any] | None:
    reply = js_request_sync(url, f"$JS.API.STREAM.INFO.{name}")
    return None if "error" in reply else reply


def raw_create(url: str, name: str, owner: str | None = None) -> None:
    config: dict[str, Any] = {"name": name, "subjects": [f"{name.lower()}.>"]}
    if owner:
        config["metadata"] = {"jsops.owner": owner}
    reply = js_request_sync(url, f"$JS.API.STREAM.CREATE.{name}", config)
    assert "error" not in reply, reply


@pytest.fixture(scope="module")
def prod_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SingleServer]:
    """A second server, "prod1": the production of these tests."""
    handle = start_single(tmp_path_factory.mktemp("prod"), name="prod1")
    yield handle
    handle.stop()


class Case:
    """A project with a protected stream, an updated stream, and other streams around."""

    def __init__(self, tmp_path: Path, dev: SingleServer, prod: SingleServer) -> None:
        self.dev, self.prod = dev, prod
        self.project: TestProject = make_project(
            tmp_path,
            dev.url,
            envs={
                "dev": {"servers": [dev.url], "values": {"age": "7d"}},
                "prod": {"servers": [prod.url], "values": {"age": "30d"}},
            },
        )
        self.orders, self.safe = unique_name("ORDERS"), unique_name("SAFE")
        self.unowned, self.billing = unique_name("HAND"), unique_name("BILLING")
        self.write(age="{{ values.age }}", storage="file")
        code, _, err = self.project.cli("apply", "-e", "dev", "--auto-approve")
        assert code == 0, err
        raw_create(dev.url, self.unowned)
        raw_create(dev.url, self.billing, owner="billing")
        self.write(age="14d", storage="memory")  # an update, and a refused replace
        code, _, err = self.project.cli("plan", "-e", "dev", "--out", "plan.json")
        assert code == 0, err
        self.path = self.project.root / "plan.json"

    def write(self, *, age: str, storage: str) -> None:
        self.project.write(
            "s.yaml",
            stream_doc(self.orders, max_age=age) + "---\n" + f"apiVersion: jsops/v1\nkind: Stream\n"
            f"metadata: {{name: {self.safe}, prevent_destroy: true}}\n"
            f"spec: {json.dumps({'subjects': [f'{self.safe.lower()}.>'], 'storage': storage})}\n",
        )

    def edit(self, change: Callable[[dict[str, Any]], None]) -> None:
        data = json.loads(self.path.read_text())
        change(data)
        self.path.write_text(json.dumps(data))

    def change(self, data: dict[str, Any], name: str) -> dict[str, Any]:
        return next(c for c in data["changes"] if c["name"] == name)


def _max_age(data: dict[str, Any], case: Case) -> None:
    change = case.change(data, case.orders)
    change["send"]["max_age"] = 60 * 10**9
    change["diff"] = [{"path": "max_age", "before": 7 * DAY, "after": 60 * 10**9}]


def _owner(data: dict[str, Any], case: Case) -> None:
    case.change(data, case.orders)["send"]["metadata"]["jsops.owner"] = "someone-else"


def _delete(name_of: Callable[[Case], str]) -> Edit:
    def edit(data: dict[str, Any], case: Case) -> None:
        name = name_of(case)
        data["changes"].append(
            {"action": "delete", "kind": "Stream", "name": name, "stream": None, "account": None}
        )

    return edit


def _unprotect(data: dict[str, Any], case: Case) -> None:
    # drop the refused replace's protection, as if it were safe to replace
    change = case.change(data, case.safe)
    change["prevent_destroy"] = False
    change["refused"] = []


def _environment(data: dict[str, Any], case: Case) -> None:
    data["environment"] = "prod"


def _action(data: dict[str, Any], case: Case) -> None:
    case.change(data, case.orders)["action"] = "replace"


def _digest(data: dict[str, Any], case: Case) -> None:
    # a recomputed fingerprint does not help: the plan is compared whole
    change = case.change(data, case.orders)
    change["send"]["max_age"] = 60 * 10**9
    change["live_digest"] = "0" * 16


EDITS = [
    pytest.param(_max_age, "differs from a plan made now (diff, send)", id="max_age changed"),
    pytest.param(_owner, "differs from a plan made now (send)", id="owner tag edited"),
    pytest.param(_delete(lambda c: c.unowned), "not in a plan made now", id="delete unowned"),
    pytest.param(
        _delete(lambda c: c.billing), "not in a plan made now", id="delete other project's"
    ),
    pytest.param(_unprotect, "prevent_destroy", id="prevent_destroy set false"),
    pytest.param(_environment, "the plan is for another target", id="environment edited"),
    pytest.param(_action, "differs from a plan made now (action)", id="action edited"),
    pytest.param(_digest, "changed since the plan was made", id="live digest edited"),
]


@pytest.mark.parametrize(("edit", "says"), EDITS)
def test_an_edited_plan_file_is_refused_with_zero_writes(
    tmp_path: Path, nats_server: SingleServer, prod_server: SingleServer, edit: Edit, says: str
) -> None:
    case = Case(tmp_path, nats_server, prod_server)
    case.edit(lambda data: edit(data, case))
    before = {n: stream_info(nats_server.url, n) for n in (case.orders, case.safe)}
    with (
        JsWriteCounter(nats_server.url) as dev_counter,
        JsWriteCounter(prod_server.url) as prod_counter,
    ):
        code, _, err = case.project.cli("apply", "plan.json", "--allow-replace")
    assert code == 1, err
    assert says in err
    assert "nothing was changed" in err
    assert "Traceback" not in err
    assert dev_counter.writes == [] and prod_counter.writes == []
    for name in (case.unowned, case.billing):
        assert stream_info(nats_server.url, name) is not None
    after = {n: stream_info(nats_server.url, n) for n in (case.orders, case.safe)}
    assert {n: i["config"] for n, i in after.items() if i} == {  # type: ignore[index]
        n: i["config"] for n, i in before.items() if i
    }
    assert stream_info(prod_server.url, case.orders) is None


def test_a_dev_plan_pointed_at_prod_servers_is_refused(
    tmp_path: Path, nats_server: SingleServer, prod_server: SingleServer
) -> None:
    """--server sends the dev plan to prod's server: the recorded identity differs."""
    case = Case(tmp_path, nats_server, prod_server)
    with JsWriteCounter(prod_server.url) as counter:
        code, _, err = case.project.cli("apply", "plan.json", "--server", prod_server.url)
    assert code == 1
    assert "the plan is for another target: it was made against server s1" in err
    assert "this is server prod1" in err
    assert counter.writes == []
    code, _, err = case.project.cli("apply", "plan.json", "-e", "prod")
    assert code == 1
    assert err.strip() == 'the plan is for environment "dev", not "prod"'


def test_an_unedited_plan_applies_the_fresh_plan_and_is_private(
    tmp_path: Path, nats_server: SingleServer, prod_server: SingleServer
) -> None:
    case = Case(tmp_path, nats_server, prod_server)
    assert stat.S_IMODE(case.path.stat().st_mode) == 0o600
    saved = json.loads(case.path.read_text())
    assert saved["identity"] == {
        "cluster": None,
        "server_name": "s1",
        "domain": None,
        "account": "$G",
    }
    # the protected stream's replace is refused whatever the flags: plan without it
    case.write(age="14d", storage="file")
    code, _, err = case.project.cli("plan", "-e", "dev", "--out", "plan.json")
    assert code == 0, err
    case.path.chmod(0o644)  # an existing file is made private again when rewritten
    code, _, err = case.project.cli("plan", "-e", "dev", "--out", "plan.json")
    assert code == 0, err
    assert stat.S_IMODE(case.path.stat().st_mode) == 0o600
    with JsWriteCounter(nats_server.url) as counter:
        code, _, err = case.project.cli("apply", "plan.json")
    assert code == 0, err
    assert counter.writes == [f"$JS.API.STREAM.UPDATE.{case.orders}"]
    info = stream_info(nats_server.url, case.orders)
    assert info is not None and info["config"]["max_age"] == 14 * DAY


def test_live_protection_is_checked_even_when_the_manifest_drops_it(
    tmp_path: Path, nats_server: SingleServer, prod_server: SingleServer
) -> None:
    """The live jsops.prevent_destroy tag refuses a replace even when the manifest no
    longer asks for protection: unprotect first (an update), replace afterwards."""
    case = Case(tmp_path, nats_server, prod_server)
    doc = stream_doc(case.safe, storage="memory")
    case.project.write("s.yaml", stream_doc(case.orders, max_age="7d") + "---\n" + doc)
    with JsWriteCounter(nats_server.url) as counter:
        code, _, err = case.project.cli("apply", "-e", "dev", "--allow-replace", "--auto-approve")
    assert code == 1
    assert f"Stream {case.safe}: replace refused by prevent_destroy" in err
    assert counter.writes == []


def test_a_plan_file_is_read_once_and_a_change_to_it_afterwards_changes_nothing(
    tmp_path: Path, nats_server: SingleServer, prod_server: SingleServer
) -> None:
    """apply reads the plan file once: checked whole, each change kept as a fingerprint
    of what it is compared on (refusals.fingerprint), so that 40,000 are not held, nor
    read twice, while planning again. A fresh plan with exactly those is the saved one;
    only one that differs has the file read again, to say where: the file must then be
    the one read, or a swapped file's changes would be judged under the first's header."""
    case = Case(tmp_path, nats_server, prod_server)
    case.write(age="14d", storage="file")  # a plan with no refusal: one update
    code, _, err = case.project.cli("plan", "-e", "dev", "--out", "plan.json")
    assert code == 0, err
    original = case.path.read_bytes()
    saved = read_saved_plan(case.path)
    case.path.write_text(json.dumps(json.loads(original), indent=2))  # same plan, new bytes
    case.write(age="21d", storage="file")  # a plan made now differs from the file's
    with JsWriteCounter(nats_server.url) as counter, pytest.raises(JsopsError) as err_info:
        case.project.apply(env="dev", saved=saved)
    assert str(err_info.value) == (
        f"{case.path}: the plan file changed while jsops planned again; nothing was applied"
    )
    assert counter.writes == []
    case.write(age="14d", storage="file")  # the plan read is the plan made now again
    with JsWriteCounter(nats_server.url) as counter:
        case.project.apply(env="dev", saved=saved)
    assert counter.writes == [f"$JS.API.STREAM.UPDATE.{case.orders}"]


def test_a_saved_plan_listing_a_change_twice_is_compared_change_by_change(
    tmp_path: Path, nats_server: SingleServer, prod_server: SingleServer
) -> None:
    """The fingerprints are kept by key: a key listed twice (the second time otherwise)
    matches nothing, and the comparison change by change names it."""
    case = Case(tmp_path, nats_server, prod_server)
    case.write(age="14d", storage="file")
    code, _, err = case.project.cli("plan", "-e", "dev", "--out", "plan.json")
    assert code == 0, err
    data = json.loads(case.path.read_text())
    first = data["changes"][0]
    data["changes"] = [{**first, "send": {**first["send"], "max_age": 1}}, first]
    case.path.write_text(json.dumps(data))
    with JsWriteCounter(nats_server.url) as counter:
        code, _, err = case.project.cli("apply", "-e", "dev", "plan.json")
    assert code == 1
    assert f"Stream {case.orders}: differs from a plan made now (send)" in err
    assert counter.writes == []


# -- a large plan file is checked in another process (planfile.open_saved_plan) ----------
# The CLI runs as its own process: forking is only done with no other thread running,
# and this test process has the server fixtures' threads.

LARGE = 480  # streams: a plan file of their creates is about 0.8 MB


def _jsops(root: Path, *args: str, workers: str = "auto") -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JSOPS_")}
    env["JSOPS_PARSE_WORKERS"] = workers
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout, done.stderr


def _large_plan(tmp_path: Path, url: str) -> tuple[TestProject, str, Path]:
    prefix = unique_name("BIG")
    project = make_project(tmp_path, url)
    project.write(
        "big.yaml",
        "---\n".join(
            stream_doc(f"{prefix}_{i:03d}", storage="memory", max_age="1h") for i in range(LARGE)
        ),
    )
    code, _, err = _jsops(project.root, "plan", "--out", "big.plan")
    assert code == 0, err
    path = project.root / "big.plan"
    assert path.stat().st_size >= MIN_BACKGROUND_CHECK
    return project, prefix, path


def _checked_elsewhere(err: str) -> bool:
    return "jsops: checked the plan file in another process" in err


def test_a_large_plan_file_is_checked_in_another_process_then_applied(
    tmp_path: Path, nats_server: SingleServer
) -> None:
    project, prefix, _ = _large_plan(tmp_path, nats_server.url)
    with JsWriteCounter(nats_server.url) as counter:
        code, out, err = _jsops(project.root, "-v", "apply", "big.plan")
    assert code == 0, err
    assert _checked_elsewhere(err)
    # compared on the fingerprints the checking process made, not read a second time
    assert f"jsops: the plan made now is the saved one: {LARGE} changes alike" in err
    assert f"Apply complete: {LARGE} done, 0 failed" in out + err
    created = sorted(s for s in counter.writes if s.startswith(f"$JS.API.STREAM.CREATE.{prefix}"))
    assert created == [f"$JS.API.STREAM.CREATE.{prefix}_{i:03d}" for i in range(LARGE)]


def test_a_bad_change_at_the_end_of_a_large_plan_file_is_named_first_and_nothing_connects(
    tmp_path: Path, nats_server: SingleServer
) -> None:
    """The check of the changes runs while the manifests load: a bad change found at the
    file's end still comes before a bad manifest, as when the file is read first, and no
    request of any kind reaches the server."""
    project, _, path = _large_plan(tmp_path, nats_server.url)
    lines = path.read_text().splitlines(keepends=True)
    last = max(i for i, line in enumerate(lines) if '"action": "create"' in line)
    lines[last] = lines[last].replace('"action": "create"', '"action": "explode"')
    path.write_text("".join(lines))
    manifest = project.root / "manifests" / "big.yaml"
    manifest.write_text(manifest.read_text().replace('"1h"', '"1 fortnight"', 1))
    results = {}
    for args, workers in ((["-v"], "auto"), ([], "auto"), ([], "1")):
        with JsWriteCounter(nats_server.url) as counter:
            results[(*args, workers)] = _jsops(
                project.root, *args, "apply", "big.plan", workers=workers
            )
        assert counter.requests == []
    code, _, err = results[("-v", "auto")]
    assert code == 1
    assert _checked_elsewhere(err)
    assert "big.plan: plan file is malformed: change 480: unknown action 'explode'" in err
    assert "fortnight" not in err
    assert results[("auto",)] == results[("1",)]  # word for word, exit code and all


def test_a_large_plan_file_whose_header_goes_on_after_its_changes_is_read_whole(
    tmp_path: Path, nats_server: SingleServer
) -> None:
    """The header is read from the members before the first change list; the check
    reads it again from the whole file. A member moved after the changes is taken from
    there (the file is read whole again here); a member written twice is refused."""
    project, _, path = _large_plan(tmp_path, nats_server.url)
    text = path.read_text()
    declared = f'  "declared": {LARGE},\n'
    assert declared in text
    moved = text.replace(declared, "").replace('  "summary"', declared + '  "summary"')
    path.write_text(moved)
    code, out, err = _jsops(project.root, "-v", "apply", "big.plan")
    assert code == 0, err
    assert "header goes on after its changes: reading it here" in err
    assert f"Apply complete: {LARGE} done" in out + err
    twice = text.replace('  "summary"', '  "environment": "elsewhere",\n  "summary"')
    path.write_text(twice)
    for workers in ("auto", "1"):
        code, _, err = _jsops(project.root, "apply", "big.plan", workers=workers)
        assert code == 1
        assert "big.plan: not a jsops plan file (the key 'environment' comes twice" in err


def test_a_malformed_plan_file_is_refused_before_anything_is_asked_of_the_server(
    tmp_path: Path, nats_server: SingleServer, prod_server: SingleServer
) -> None:
    """A saved plan with a field of the wrong type is named (file, change, field) and
    refused before apply connects: not one request reaches the server."""
    case = Case(tmp_path, nats_server, prod_server)
    changes = json.loads(case.path.read_text())["changes"]
    n = next(i for i, c in enumerate(changes) if c["diff"])

    def edit(data: dict[str, Any]) -> None:
        data["changes"][n]["diff"][0]["path"] = 5

    case.edit(edit)
    with JsWriteCounter(nats_server.url) as counter:
        code, _out, err = case.project.cli("apply", "-e", "dev", "plan.json")
    assert code == 1
    assert err == f"plan.json: plan file is malformed: change {n + 1}: diff.0 has no path string\n"
    assert counter.requests == [] and counter.writes == []
