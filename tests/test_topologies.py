"""``jsops server`` local topologies, run as real CLI subprocesses: a cluster serving R3
streams, a hub and a leaf node with JetStream domains, operator mode across a cluster,
JetStream limits, NATS_CLUSTER_ENABLED, and a clean stop of every node."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest
from harness.operator import connect
from harness.servers import js_request_sync

from reconciler.accounts import (
    AuthStore,
    build_account_jwt,
    mint_user_creds,
    push_account_jwt,
)
from reconciler.errors import UsageError
from reconciler.server import (
    READY_TIMEOUT,
    PortInUse,
    ephemeral_port_start,
    find_nats_server,
    plan_topology,
    port_open,
    retry_port_clash,
)

JSOPS = str(Path(sys.executable).with_name("jsops"))
FREE = ["--port", "0", "--http-port", "0"]
REBOOT = "starting again on other free ports"
READY = re.compile(r"^jsops: .* ready; client URLs: (\S+)$", re.MULTILINE)
NODE = re.compile(
    r"^jsops: (?:(\S+): )?nats-server pid (\d+) on (\S+), monitoring (\S+?)[,\s]", re.MULTILINE
)


@dataclass
class Node:
    name: str | None
    pid: int
    url: str
    monitor: str


@dataclass
class Run:
    proc: subprocess.Popen[bytes]
    stderr_file: Path
    urls: list[str]
    nodes: list[Node]

    @property
    def stderr(self) -> str:
        return self.stderr_file.read_text(errors="replace")

    def varz(self, i: int) -> dict[str, Any]:
        with urllib.request.urlopen(self.nodes[i].monitor + "/varz", timeout=2) as resp:
            data: dict[str, Any] = json.loads(resp.read())
        return data

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)


def _pid_gone(pid: int) -> bool:
    """No such process, or only a zombie left for its new parent to reap."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("APP_ROOT", CLUSTER_VAR)}
    env["NATS_HOST"] = "127.0.0.1"
    env.update(extra)
    return env


CLUSTER_VAR = "NATS_CLUSTER_ENABLED"


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Any]:
    """Start ``jsops server ARGS`` and wait until it says ready; on teardown stop what
    is left by our own pids (the CLI, then any nats-server child it announced)."""
    runs: list[Run] = []

    # jsops server's own readiness wait (a slow cluster is its error to report), plus
    # the CLI's start-up
    def start(
        *args: str, timeout: float = READY_TIMEOUT + 15, cwd: Path = tmp_path, **env: str
    ) -> Run:
        err = tmp_path / f"jsops-server-{len(runs)}.err"
        with open(err, "wb") as sink:
            proc = subprocess.Popen(
                [JSOPS, "server", *args],
                cwd=cwd,
                env=_env(**env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=sink,
            )
        run = Run(proc, err, [], [])
        runs.append(run)
        deadline = time.monotonic() + timeout
        while True:
            text = run.stderr
            found = READY.search(text)
            if found:
                break
            if proc.poll() is not None and "address already in use" in text.lower():
                # a port given on the command line was taken since it was picked
                raise PortInUse(f"jsops server exited {proc.returncode}:\n{text}")
            assert proc.poll() is None, f"jsops server exited {proc.returncode}:\n{text}"
            assert time.monotonic() < deadline, f"jsops server not ready:\n{text}"
            time.sleep(0.05)
        run.urls = found.group(1).split(",")
        # the nodes of the last boot (one whose picked port was taken is booted again)
        last = text.rsplit(REBOOT, 1)[-1]
        run.nodes = [Node(m[0] or None, int(m[1]), m[2], m[3]) for m in NODE.findall(last)]
        assert [n.url for n in run.nodes] == run.urls
        return run

    yield start
    for run in runs:
        if run.proc.poll() is None:
            run.proc.send_signal(signal.SIGTERM)
            try:
                run.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                run.proc.kill()
                run.proc.wait()
        for node in run.nodes:
            if not _pid_gone(node.pid):
                os.kill(node.pid, signal.SIGKILL)


def _until(check: Any, timeout: float = 15.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _create(url: str, config: dict[str, Any]) -> dict[str, Any]:
    """STREAM.CREATE: at once, jsops server says ready once an R3 stream can be placed.
    The request may take long: an R3 create's reply waits for the new stream's Raft group
    to elect a leader, which a loaded 2-core CI machine has kept waiting over 5 s."""
    reply = js_request_sync(url, f"$JS.API.STREAM.CREATE.{config['name']}", config, timeout=30)
    assert "error" not in reply, reply
    return reply


def _assert_all_stopped(run: Run) -> None:
    for node in run.nodes:
        assert _pid_gone(node.pid), f"nats-server pid {node.pid} outlived jsops server"
        assert not port_open("127.0.0.1", int(node.url.rsplit(":", 1)[1]))


# --- cluster -----------------------------------------------------------------------------


def test_cluster_of_3_serves_an_r3_stream_and_sigterm_stops_every_node(
    tmp_path: Path, launch: Any
) -> None:
    data = tmp_path / "data"
    run = launch("--cluster", "3", *FREE, "--cluster-port", "0", "--data", str(data))
    assert len(run.urls) == 3 and len({n.pid for n in run.nodes}) == 3
    assert "cluster jsops of 3 nodes ready" in run.stderr
    _create(run.urls[0], {"name": "R3", "subjects": ["r3.>"], "num_replicas": 3})

    def replicated() -> dict[str, Any] | None:
        info = js_request_sync(run.urls[2], "$JS.API.STREAM.INFO.R3")
        cluster = info.get("cluster") or {}
        replicas = cluster.get("replicas") or []
        if cluster.get("leader") and len(replicas) == 2 and all(r["current"] for r in replicas):
            return cluster
        return None

    cluster = _until(replicated, what="a leader and 2 current replicas")
    names = {cluster["leader"], *(r["name"] for r in cluster["replicas"])}
    assert names == {"n1", "n2", "n3"}
    for label in ("n1", "n2", "n3"):  # one store per node under the data root
        assert (data / label / "jetstream").is_dir()

    assert run.stop(signal.SIGTERM) == 0, run.stderr
    _assert_all_stopped(run)
    assert run.stderr.count("Server Exiting") == 3  # every node's own log reached us
    assert "jsops: nats-server stopped" in run.stderr


def test_nats_cluster_enabled_makes_3_nodes_with_the_limits_asked(launch: Any) -> None:
    run = launch(
        *FREE, "--cluster-port", "0", "--max-mem", "64MiB", "--max-file", "1GiB",
        "--data", "data", **{CLUSTER_VAR: "1"},
    )  # fmt: skip
    assert len(run.nodes) == 3
    for i in range(3):
        varz = run.varz(i)
        assert varz["jetstream"]["config"]["max_memory"] == 64 * 1024**2
        assert varz["jetstream"]["config"]["max_storage"] == 1024**3
        assert varz["cluster"]["name"] == "jsops"
    info = js_request_sync(run.urls[1], "$JS.API.INFO")
    assert "error" not in info, info
    # Ctrl-C stops the cluster too
    assert run.stop(signal.SIGINT) == 0, run.stderr
    _assert_all_stopped(run)


def test_a_node_dying_stops_the_others_and_exits_1(launch: Any) -> None:
    run = launch("--cluster", "2", *FREE, "--cluster-port", "0", "--data", "data")
    os.kill(run.nodes[1].pid, signal.SIGKILL)
    assert run.proc.wait(timeout=30) == 1
    assert "nats-server n2 exited unexpectedly" in run.stderr
    _assert_all_stopped(run)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_killing_jsops_server_outright_takes_its_nodes_along(launch: Any) -> None:
    run = launch("--cluster", "2", *FREE, "--cluster-port", "0", "--data", "data")
    run.proc.kill()  # no chance to stop them itself: the kernel tells the nodes
    run.proc.wait(timeout=10)
    _until(lambda: all(_pid_gone(n.pid) for n in run.nodes), 15, "the nodes to exit")


# --- hub and leaf ------------------------------------------------------------------------


def test_leaf_node_with_its_own_domain_feeds_a_mirror_on_the_hub(launch: Any) -> None:
    hub = launch("--domain", "hub", *FREE, "--leafnodes-port", "0")
    found = re.search(r"leafnodes (nats-leaf://\S+?),", hub.stderr)
    assert found, hub.stderr
    leaf = launch("--leaf", found.group(1), "--domain", "dev", *FREE)
    assert "leaf node (JetStream domain dev; hub nats-leaf://" in leaf.stderr
    assert leaf.varz(0)["server_name"] == "dev-n1"
    _until(
        lambda: "error" not in js_request_sync(hub.urls[0], "$JS.dev.API.INFO", timeout=1),
        what="the leaf's JetStream seen from the hub",
    )
    _create(leaf.urls[0], {"name": "ORDERS", "subjects": ["orders.>"]})
    _create(
        hub.urls[0],
        {"name": "ORDERS", "mirror": {"name": "ORDERS", "external": {"api": "$JS.dev.API"}}},
    )

    async def publish() -> None:
        nc = await nats.connect(leaf.urls[0])
        try:
            for i in range(3):
                await nc.request(f"orders.{i}", b"x", timeout=5)  # JetStream acks it
        finally:
            await nc.close()

    asyncio.run(publish())

    def mirrored() -> bool:
        info = js_request_sync(hub.urls[0], "$JS.API.STREAM.INFO.ORDERS")
        return bool(info.get("state", {}).get("messages") == 3)

    _until(mirrored, what="3 messages mirrored from the leaf to the hub")
    assert leaf.stop() == 0 and hub.stop() == 0
    _assert_all_stopped(leaf)
    _assert_all_stopped(hub)


# --- operator mode -----------------------------------------------------------------------


def test_auth_store_operator_mode_across_a_cluster(tmp_path: Path, launch: Any) -> None:
    auth = tmp_path / "auth"
    run = launch(
        "--auth", str(auth), "--cluster", "3", *FREE, "--cluster-port", "0", "--data", "data"
    )
    assert f"operator mode from {auth}" in run.stderr
    store = AuthStore.open(auth)  # created like `jsops auth init`
    for label in ("n1", "n2", "n3"):  # each node its own full resolver dir
        assert (tmp_path / "data" / label / "jwt").is_dir()

    async def main() -> None:
        with pytest.raises(Exception, match=r"(?i)authorization"):
            await nats.connect(run.urls[0], allow_reconnect=False, max_reconnect_attempts=1)
        token = build_account_jwt(store, "ACME", jetstream={"max_streams": 5})
        nc = await connect(run.urls[0], store.sys_creds_path)
        try:  # every node's resolver answers the push
            await push_account_jwt(nc, token, expect_servers=3)
        finally:
            await nc.close()
        user = await connect(run.urls[2], mint_user_creds(store, "ACME", "dev"))
        try:
            # a node enables JetStream for an account a moment after its JWT arrives
            # ("JetStream not enabled for account", 10039, until then)
            deadline = time.monotonic() + 15
            while True:
                msg = await user.request("$JS.API.INFO", b"", timeout=5)
                info = json.loads(msg.data)
                if "error" not in info or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
        finally:
            await user.close()
        assert "error" not in info and info["limits"]["max_streams"] == 5

    asyncio.run(main())
    assert run.stop() == 0
    _assert_all_stopped(run)


def test_leaf_of_an_operator_mode_hub_binds_with_leaf_creds(tmp_path: Path, launch: Any) -> None:
    hub = launch("--auth", "auth", "--domain", "hub", *FREE, "--leafnodes-port", "0")
    hub_leafnodes = re.search(r"leafnodes (nats-leaf://\S+?),", hub.stderr)
    assert hub_leafnodes, hub.stderr
    store = AuthStore.open(tmp_path / "auth")
    token = build_account_jwt(store, "ACME", jetstream={"max_streams": 5})

    async def push() -> None:
        nc = await connect(hub.urls[0], store.sys_creds_path)
        try:
            await push_account_jwt(nc, token, expect_servers=1)
        finally:
            await nc.close()

    asyncio.run(push())
    creds = tmp_path / "leaf.creds"
    creds.write_text(mint_user_creds(store, "ACME", "leaf"))
    leaf = launch("--leaf", hub_leafnodes.group(1), "--leaf-creds", str(creds), *FREE)
    assert "leaf node (JetStream domain leaf;" in leaf.stderr  # the default domain

    async def from_the_hub() -> dict[str, Any]:
        """A hub user of ACME reaches the leaf's JetStream across the bound account."""
        user = await connect(hub.urls[0], mint_user_creds(store, "ACME", "u"))
        try:
            for _ in range(100):
                try:
                    msg = await user.request("$JS.leaf.API.INFO", b"", timeout=0.5)
                    reply: dict[str, Any] = json.loads(msg.data)
                    return reply
                except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                    await asyncio.sleep(0.1)
            raise AssertionError("the leaf's JetStream never answered on the hub")
        finally:
            await user.close()

    info = asyncio.run(from_the_hub())
    assert info.get("domain") == "leaf" and "error" not in info, info
    assert leaf.stop() == 0 and hub.stop() == 0
    _assert_all_stopped(leaf)
    _assert_all_stopped(hub)


# --- docs/local-topologies.md, followed ------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
# the walkthrough's ports (the hub's defaults made explicit) -> how many count up from each
DOC_PORTS = {4222: 3, 8222: 3, 6222: 3, 7422: 3, 4232: 1, 8232: 1}
HUB_DEFAULTS = ["--port", "4222", "--http-port", "8222", "--cluster-port", "6222"]


def _walkthrough() -> list[tuple[str, str]]:
    text = (ROOT / "docs" / "local-topologies.md").read_text()
    start = text.index("## Walkthrough")
    section = text[start : text.index("\n## ", start + 1)]
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(section)]


def _port_map() -> dict[int, int]:
    """Each documented port -> a free one, keeping the runs of consecutive ports."""
    import socket

    def bindable(port: int) -> bool:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
        return True

    mapping: dict[int, int] = {}
    taken: set[int] = set()
    for doc_port, count in DOC_PORTS.items():
        for _ in range(500):
            # below the ephemeral range: no client's local port can take one first
            base = 10000 + secrets.randbelow(ephemeral_port_start() - 10000 - count)
            run = [base + i for i in range(count)]
            if not taken.intersection(run) and all(bindable(p) for p in run):
                break
        else:
            raise AssertionError("no free port range")
        taken.update(run)
        mapping.update({doc_port + i: base + i for i in range(count)})
    return mapping


def test_the_local_topologies_walkthrough_works(tmp_path: Path, launch: Any) -> None:
    """The walkthrough's files written where it says and its commands run as it says,
    in a fresh directory, on free ports: a dev leaf promoted to an R3 prod mirror.
    (Its ports are given on the command line, as the walkthrough does: one taken by
    another process since it was picked starts the walkthrough again, elsewhere.)"""
    tries = iter(range(1, 4))
    retry_port_clash(lambda: _walkthrough_in(tmp_path / f"try{next(tries)}", launch))


def _walkthrough_in(tmp_path: Path, launch: Any) -> None:
    tmp_path.mkdir()
    ports = _port_map()
    pattern = re.compile(r"\b(" + "|".join(str(p) for p in ports) + r")\b")

    def local(text: str) -> str:
        return pattern.sub(lambda m: str(ports[int(m.group(1))]), text)

    blocks = _walkthrough()
    servers: dict[str, Run] = {}
    results: dict[str, subprocess.CompletedProcess[str]] = {}
    env = _env(NO_COLOR="1")
    for lang, text in blocks:
        if lang == "yaml":
            name = text.splitlines()[0].removeprefix("# ").strip()
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text(local(text))
            continue
        assert lang == "sh", lang
        for line in text.splitlines():
            command = line.split("  #", 1)[0].strip()
            background = command.endswith("&")
            argv = command.rstrip("&").split()
            assert argv[0] == "jsops", line
            if background:
                assert argv[1] == "server", line
                args = argv[2:] if "--leaf" in argv else HUB_DEFAULTS + argv[2:]
                servers["leaf" if "--leaf" in argv else "hub"] = launch(
                    *local(" ".join(args)).split(), cwd=tmp_path
                )
                continue
            done = subprocess.run(
                [JSOPS, *local(" ".join(argv[1:])).split()],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            results[" ".join(argv[1:])] = done
            assert done.returncode == 0, f"{line}\n{done.stdout}{done.stderr}"
    hub, leaf = servers["hub"], servers["leaf"]
    assert len(hub.urls) == 3 and "cluster prod of 3 nodes" in hub.stderr
    assert "+ Stream ORDERS" in results["plan -e prod"].stdout
    promoted = (tmp_path / "manifests" / "promoted" / "ORDERS.yaml").read_text()
    assert "domain: dev" in promoted and "num_replicas: 3" in promoted
    for label in ("n1", "n2", "n3"):
        assert (tmp_path / ".data" / "nats-js" / "prod" / label / "jetstream").is_dir()
    assert (tmp_path / ".data" / "nats-js" / "dev" / "jetstream").is_dir()

    async def publish() -> None:  # what the walkthrough does with `nats pub`
        nc = await nats.connect(leaf.urls[0])
        try:
            for i in range(3):
                await nc.request(f"orders.{i}", b"hello", timeout=5)
        finally:
            await nc.close()

    asyncio.run(publish())

    def mirrored() -> dict[str, Any] | None:
        info = js_request_sync(hub.urls[1], "$JS.API.STREAM.INFO.ORDERS")
        replicas = (info.get("cluster") or {}).get("replicas") or []
        if info.get("state", {}).get("messages") == 3 and len(replicas) == 2:
            return info
        return None

    info = _until(mirrored, 20, "3 messages in prod's R3 mirror")
    assert info["config"]["mirror"]["external"]["api"] == "$JS.dev.API"
    assert info["cluster"]["leader"].startswith("prod-n")
    assert hub.stop() == 0 and leaf.stop() == 0
    _assert_all_stopped(hub)
    _assert_all_stopped(leaf)


# --- planning (no processes) ---------------------------------------------------------------


def test_plan_counts_ports_upward_and_keeps_domains_apart(tmp_path: Path) -> None:
    topo = plan_topology(
        nodes=3, port=14222, http_port=18222, cluster_port=16222, leafnodes_port=17422,
        domain="prod", app_root=tmp_path,
    )  # fmt: skip
    assert topo.root == tmp_path / "nats-js" / "prod"
    assert [n.port for n in topo.nodes] == [14222, 14223, 14224]
    assert [n.http_port for n in topo.nodes] == [18222, 18223, 18224]
    assert [n.cluster_port for n in topo.nodes] == [16222, 16223, 16224]
    assert topo.leafnodes_urls == [f"nats-leaf://127.0.0.1:{p}" for p in (17422, 17423, 17424)]
    assert [n.name for n in topo.nodes] == ["prod-n1", "prod-n2", "prod-n3"]
    assert [n.store_dir for n in topo.nodes] == [topo.root / f"n{i}" for i in (1, 2, 3)]
    leaf = plan_topology(leaf=["127.0.0.1:17422"], app_root=tmp_path)
    assert leaf.domain == "leaf" and leaf.root == tmp_path / "nats-js" / "leaf"
    assert leaf.leaf_urls == ("nats-leaf://127.0.0.1:17422",)
    single = plan_topology(app_root=tmp_path)
    assert single.root == single.nodes[0].store_dir == tmp_path / "nats-js"


def test_every_planned_config_is_accepted_by_nats_server(tmp_path: Path) -> None:
    creds = tmp_path / "leaf.creds"
    creds.write_text("")
    plans = [
        plan_topology(
            nodes=3, domain="prod", leafnodes_port=0, port=0, http_port=0, cluster_port=0,
            auth_dir=tmp_path / "auth", max_mem="1GiB", max_file="10GiB",
            data_dir=tmp_path / "hub",
        ),
        plan_topology(
            leaf=["nats-leaf://127.0.0.1:7422,127.0.0.1:7423"], leaf_creds=creds,
            port=0, http_port=0, data_dir=tmp_path / "leaf",
        ),
    ]  # fmt: skip
    for topo in plans:
        for node in topo.nodes:
            conf = topo.root / f"{node.name}.conf"
            conf.parent.mkdir(parents=True, exist_ok=True)
            conf.write_text(node.config_text)
            done = subprocess.run(
                [find_nats_server(), "-c", str(conf), "-t"], capture_output=True, text=True
            )
            assert done.returncode == 0, f"{node.config_text}\n{done.stdout}{done.stderr}"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"leaf": ["h:7422"], "auth_dir": Path("a")}, "--leaf with --auth"),
        ({"leaf_creds": Path("x.creds")}, "--leaf-creds needs --leaf"),
        ({"max_mem": "1G"}, '--max-mem: invalid size "1G": unknown unit "G" (write "1GiB"'),
        ({"max_file": "0"}, "--max-file: must be a positive size"),
        ({"domain": "a.b"}, "--domain 'a.b'"),
        ({"nodes": 3, "port": 65534}, "client port 65534: needs 3 port(s)"),
        ({"nodes": 2, "port": 7000, "http_port": 7001}, "port ranges overlap"),
    ],
)
def test_bad_options_are_refused_before_anything_starts(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(UsageError) as caught:
        plan_topology(**kwargs)
    assert message in str(caught.value)


def test_cli_usage_error_is_one_line_and_exit_1(tmp_path: Path) -> None:
    done = subprocess.run(
        [JSOPS, "server", "--max-mem", "2G", "--data", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        '--max-mem: invalid size "2G": unknown unit "G" (write "2GiB" for 1024^n or "2GB" '
        "for 1000^n)"
    ], done.stderr
    assert not (tmp_path / "d").exists()  # refused before anything was created
