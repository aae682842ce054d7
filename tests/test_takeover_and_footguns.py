"""Another project's resources are never taken over silently (issue 9 item 5); prune
with nothing declared and a mistyped --target are refused (issue 9 item 10); an
environment that pins its servers' identity refuses to run anywhere else (issue 11
item 10). Writes are counted on the server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from harness.manifests import stream_doc
from harness.project import make_project
from harness.servers import JsWriteCounter, SingleServer, js_request_sync, unique_name

if TYPE_CHECKING:
    from harness.project import TestProject


def stream_config(url: str, name: str) -> dict[str, Any] | None:
    reply = js_request_sync(url, f"$JS.API.STREAM.INFO.{name}")
    return None if "error" in reply else reply["config"]


def raw_create(url: str, name: str, **config: Any) -> None:
    config.setdefault("subjects", [f"{name.lower()}.>"])
    reply = js_request_sync(url, f"$JS.API.STREAM.CREATE.{name}", {"name": name, **config})
    assert "error" not in reply, reply


@pytest.fixture
def project(tmp_path: Path, nats_server: SingleServer) -> TestProject:
    return make_project(tmp_path, nats_server.url)


# ------------------------------------------------------------------------ takeover


def test_another_projects_stream_is_refused_unless_allow_takeover(
    nats_server: SingleServer, project: TestProject
) -> None:
    url = nats_server.url
    name = unique_name("BILLED")
    raw_create(url, name, max_age=60 * 10**9, metadata={"jsops.owner": "billing"})
    project.write("s.yaml", stream_doc(name, max_age="2m"))

    code, out, err = project.cli("plan")
    assert code == 0, err
    assert f'~ Stream {name}  (refused: owned by project "billing" (--allow-takeover))' in out
    code, out, _ = project.cli("plan", "--format", "json")
    change = next(c for c in json.loads(out)["changes"] if c["name"] == name)
    assert change["owner"] == "billing"
    assert change["reason"] == "owned_by_another_project"
    assert change["refused"] == [
        {"code": "takeover", "detail": "billing", "override": "--allow-takeover"}
    ]
    code, out, _ = project.cli("plan", "--format", "markdown")
    assert 'refused: owned by project "billing" (--allow-takeover)' in out
    assert "1 change(s) refused" in out

    with JsWriteCounter(url) as counter:
        code, _, err = project.cli("apply", "--auto-approve")
    assert code == 1
    assert f'Stream {name}: update refused: owned by project "billing" (jsops.owner)' in err
    assert counter.writes == []
    assert stream_config(url, name)["metadata"]["jsops.owner"] == "billing"  # type: ignore[index]

    code, _, err = project.cli("apply", "--auto-approve", "--allow-takeover")
    assert code == 0, err
    config = stream_config(url, name)
    assert config is not None and config["metadata"]["jsops.owner"] == project.name
    assert config["max_age"] == 120 * 10**9


def test_an_unowned_stream_is_adopted_and_shown_as_adoption(
    nats_server: SingleServer, project: TestProject
) -> None:
    url = nats_server.url
    name = unique_name("HANDMADE")
    raw_create(url, name)
    project.write("s.yaml", stream_doc(name, max_msgs=10))
    code, out, err = project.cli("plan")
    assert code == 0, err
    assert f"~ Stream {name}  (adopt owner tag)" in out
    code, out, _ = project.cli("plan", "--format", "json")
    change = next(c for c in json.loads(out)["changes"] if c["name"] == name)
    assert (change["reason"], change["owner"], change["refused"]) == ("adopt_owner_tag", None, [])
    code, _, err = project.cli("apply", "--auto-approve")
    assert code == 0, err
    assert stream_config(url, name)["metadata"]["jsops.owner"] == project.name  # type: ignore[index]


# ------------------------------------------------------------------- empty prune


def test_prune_with_nothing_declared_is_refused_unless_allowed(
    nats_server: SingleServer, project: TestProject
) -> None:
    url = nats_server.url
    names = [unique_name("OWNED") for _ in range(2)]
    project.write("s.yaml", "---\n".join(stream_doc(n) for n in names))
    code, _, err = project.cli("apply", "--auto-approve")
    assert code == 0, err
    project.write("s.yaml", "")  # an emptied manifests folder
    said = 'prune refused: the manifests declare nothing for environment "test"'

    code, _, err = project.cli("plan", "--prune")
    assert code == 1
    assert said in err and "--allow-empty-prune" in err
    with JsWriteCounter(url) as counter:
        code, _, err = project.cli("apply", "--prune", "--auto-approve")
    assert code == 1
    assert said in err
    assert counter.writes == []
    assert all(stream_config(url, n) is not None for n in names)

    code, out, err = project.cli("plan", "--prune", "--allow-empty-prune")
    assert code == 0, err
    assert all(f"- Stream {n}" in out for n in names)
    code, _, err = project.cli("apply", "--prune", "--allow-empty-prune", "--auto-approve")
    assert code == 0, err
    assert all(stream_config(url, n) is None for n in names)


# ------------------------------------------------------------------- --target


def test_a_target_that_matches_nothing_is_an_error_with_a_hint(
    nats_server: SingleServer, project: TestProject
) -> None:
    name = unique_name("ORDERS")
    project.write("s.yaml", stream_doc(name))
    typo = f"Stream/{name[:-1]}"
    code, _, err = project.cli("plan", "--target", typo)
    assert code == 1
    assert err.strip() == (
        f"--target {typo}: no resource by that name is declared or live "
        f'(did you mean "Stream/{name}"?)'
    )
    with JsWriteCounter(nats_server.url) as counter:
        code, _, err = project.cli("apply", "--auto-approve", "--target", typo)
    assert code == 1 and "did you mean" in err
    assert counter.writes == []
    # a live stream no manifest declares is a valid target (it plans nothing here)
    other = unique_name("LIVEONLY")
    raw_create(nats_server.url, other)
    code, _, err = project.cli("plan", "--target", f"Stream/{other}")
    assert code == 0, err
    code, _, err = project.cli("plan", "--target", f"Stream/{name}")
    assert code == 0, err


# ------------------------------------------------------------ wrong-target interlock


@pytest.mark.parametrize(
    ("expect", "refused"),
    [
        pytest.param({"server_name": "s1"}, None, id="the expected server"),
        pytest.param({"server_name": "prod-1"}, 'server_name "prod-1" but found s1', id="name"),
        pytest.param({"cluster": "prod"}, 'cluster "prod" but found none', id="cluster"),
        pytest.param({"domain": "hub"}, 'domain "hub" but found none', id="domain"),
        pytest.param({"account": "$G"}, None, id="the expected account"),
    ],
)
def test_an_environment_pinned_to_other_servers_refuses_to_run(
    tmp_path: Path, nats_server: SingleServer, expect: dict[str, str], refused: str | None
) -> None:
    url = nats_server.url
    project = make_project(tmp_path, url, envs={"prod": {"servers": [url], "expect": expect}})
    name = unique_name("PINNED")
    project.write("s.yaml", stream_doc(name))
    code, _, err = project.cli("plan")
    if refused is None:
        assert code == 0, err
        return
    assert code == 1
    assert err.strip() == (
        f'environment "prod" expects {refused} on {url}: refusing to run there '
        "(environments.prod.expect in jsops.yaml)"
    )
    with JsWriteCounter(url) as counter:
        code, _, err = project.cli("apply", "--auto-approve")
    assert code == 1 and "refusing to run there" in err
    assert counter.writes == []
    assert stream_config(url, name) is None


def test_server_flag_cannot_point_a_pinned_environment_elsewhere(
    tmp_path: Path, nats_server: SingleServer, hub_and_leaf: Any
) -> None:
    """prod pins the hub; --server aimed at the test server is refused."""
    hub = hub_and_leaf.urls[0]
    project = make_project(
        tmp_path,
        hub,
        envs={"prod": {"servers": [hub], "expect": {"server_name": "hub"}}},
    )
    project.write("s.yaml", stream_doc(unique_name("PROD")))
    code, _, err = project.cli("plan")
    assert code == 0, err
    with JsWriteCounter(nats_server.url) as counter:
        code, _, err = project.cli("apply", "--auto-approve", "--server", nats_server.url)
    assert code == 1
    assert 'expects server_name "hub" but found s1' in err
    assert counter.writes == []
