"""Connection problems: one clear line on stderr, exit 1, no traceback, fast, no secrets.

Private servers (module scope) hold the credentials: one with two config-file
accounts (``JS`` with JetStream, ``NOJS`` without), one with token auth.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.project import make_project
from harness.servers import SingleServer, start_single, unique_name
from test_apply import stream_doc

from reconciler.server import find_nats_server, free_port

JS_PASSWORD = "js-Pa55word-OK"
NOJS_PASSWORD = "nojs-Pa55word-OK"
WRONG_PASSWORD = "wrong-S3cret-Pa55"
TOKEN = "t0ken-S3cret-OK"
WRONG_TOKEN = "wrong-t0ken-S3cret"
SECRETS = (JS_PASSWORD, NOJS_PASSWORD, WRONG_PASSWORD, TOKEN, WRONG_TOKEN)
FAST = 5.0  # seconds: nats-py's connect can otherwise retry for minutes


@pytest.fixture(scope="module")
def accounts_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SingleServer]:
    config = (
        "accounts {\n"
        f'  JS: {{ jetstream: enabled, users: [ {{user: js, password: "{JS_PASSWORD}"}} ] }}\n'
        f'  NOJS: {{ users: [ {{user: nojs, password: "{NOJS_PASSWORD}"}} ] }}\n'
        "}\n"
    )
    handle = start_single(tmp_path_factory.mktemp("accounts"), config_extra=config)
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SingleServer]:
    config = f'authorization {{ token: "{TOKEN}" }}\n'
    handle = start_single(tmp_path_factory.mktemp("token"), config_extra=config)
    yield handle
    handle.stop()


def run(tmp_path: Path, env: dict[str, Any], *args: str) -> tuple[int, str, str, float]:
    project = make_project(tmp_path, env["servers"][0], envs={"test": env})
    project.write("a.yaml", stream_doc(unique_name("CONN")))
    started = time.monotonic()
    code, out, err = project.cli(*args)
    return code, out, err, time.monotonic() - started


def assert_one_line_error(code: int, out: str, err: str, elapsed: float, expected: str) -> None:
    assert code == 1
    assert out == ""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0] == expected
    for secret in SECRETS:
        assert secret not in out + err
    assert elapsed < FAST


COMMANDS = [
    pytest.param(("plan",), id="plan"),
    pytest.param(("plan", "--format", "json"), id="plan json"),
    pytest.param(("apply", "--auto-approve"), id="apply"),
    pytest.param(("backup", "ORDERS", "--out", "backups"), id="backup"),
]


@pytest.mark.parametrize("args", COMMANDS)
def test_unreachable_server(tmp_path: Path, args: tuple[str, ...]) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    code, out, err, elapsed = run(tmp_path, {"servers": [url]}, *args)
    assert_one_line_error(
        code, out, err, elapsed, f"cannot connect to {url}: no server is reachable"
    )


def test_unreachable_servers_of_a_cluster(tmp_path: Path) -> None:
    urls = [f"nats://127.0.0.1:{free_port()}" for _ in range(3)]
    code, out, err, elapsed = run(tmp_path, {"servers": urls}, "plan")
    expected = f"cannot connect to {', '.join(urls)}: no server is reachable"
    assert_one_line_error(code, out, err, elapsed, expected)


def test_correct_password_connects(tmp_path: Path, accounts_server: SingleServer) -> None:
    env = {"servers": [accounts_server.url], "user": "js", "password": JS_PASSWORD}
    code, out, err, _ = run(tmp_path, env, "plan", "--detailed-exitcode")
    assert code == 2, err
    assert JS_PASSWORD not in out + err


@pytest.mark.parametrize("args", COMMANDS)
def test_wrong_password(
    tmp_path: Path, accounts_server: SingleServer, args: tuple[str, ...]
) -> None:
    env = {"servers": [accounts_server.url], "user": "js", "password": WRONG_PASSWORD}
    code, out, err, elapsed = run(tmp_path, env, *args)
    expected = (
        f"cannot connect to {accounts_server.url}: authorization violation (check the credentials)"
    )
    assert_one_line_error(code, out, err, elapsed, expected)


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        pytest.param("nats://js:{pw}@{host}", "nats://{host}", id="scheme"),
        pytest.param("js:{pw}@{host}", "{host}", id="no-scheme"),  # nats-py takes it too
        pytest.param("nats://js:a@{pw}@{host}", "nats://{host}", id="at-in-password"),
    ],
)
def test_wrong_password_in_the_url(
    tmp_path: Path, accounts_server: SingleServer, given: str, shown: str
) -> None:
    """A password given inside --server never shows (the URL is printed without it;
    as nats-py reads it, the last "@" ends the user and password)."""
    host = accounts_server.url.removeprefix("nats://")
    project = make_project(tmp_path, accounts_server.url)
    project.write("a.yaml", stream_doc(unique_name("URL")))
    started = time.monotonic()
    url = given.format(pw=WRONG_PASSWORD, host=host)
    code, out, err = project.cli("plan", "--server", url)
    where = shown.format(host=host)
    expected = f"cannot connect to {where}: authorization violation (check the credentials)"
    assert_one_line_error(code, out, err, time.monotonic() - started, expected)


def test_missing_credentials(tmp_path: Path, accounts_server: SingleServer) -> None:
    code, out, err, elapsed = run(tmp_path, {"servers": [accounts_server.url]}, "plan")
    expected = (
        f"cannot connect to {accounts_server.url}: authorization violation (check the credentials)"
    )
    assert_one_line_error(code, out, err, elapsed, expected)


def test_missing_creds_file(tmp_path: Path, nats_server: SingleServer) -> None:
    env = {"servers": [nats_server.url], "creds": str(tmp_path / "nope.creds")}
    code, out, err, elapsed = run(tmp_path, env, "plan")
    expected = f"credentials file not found: {tmp_path / 'nope.creds'}"
    assert_one_line_error(code, out, err, elapsed, expected)


def test_wrong_token(tmp_path: Path, token_server: SingleServer) -> None:
    env = {"servers": [token_server.url], "token": WRONG_TOKEN}
    code, out, err, elapsed = run(tmp_path, env, "plan")
    expected = (
        f"cannot connect to {token_server.url}: authorization violation (check the credentials)"
    )
    assert_one_line_error(code, out, err, elapsed, expected)
    # and the right one works (the server is not simply broken)
    env = {"servers": [token_server.url], "token": TOKEN}
    code, out, err, _ = run(tmp_path / "ok", env, "plan")
    assert code == 0, err
    assert TOKEN not in out + err


@pytest.mark.parametrize("args", COMMANDS)
def test_account_without_jetstream(
    tmp_path: Path, accounts_server: SingleServer, args: tuple[str, ...]
) -> None:
    env = {"servers": [accounts_server.url], "user": "nojs", "password": NOJS_PASSWORD}
    code, out, err, elapsed = run(tmp_path, env, *args)
    expected = f"JetStream is not enabled for this account on {accounts_server.url}"
    assert_one_line_error(code, out, err, elapsed, expected)


@pytest.mark.parametrize("args", COMMANDS)
def test_wrong_domain(tmp_path: Path, nats_server: SingleServer, args: tuple[str, ...]) -> None:
    env = {"servers": [nats_server.url], "domain": "nowhere"}
    code, out, err, elapsed = run(tmp_path, env, *args)
    expected = (
        f'JetStream domain "nowhere" does not answer on {nats_server.url} '
        "(wrong domain, or no JetStream there)"
    )
    assert_one_line_error(code, out, err, elapsed, expected)


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A nats-server without JetStream at all (start_single always enables it)."""
    port = free_port()
    log = tmp_path_factory.mktemp("plain") / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [find_nats_server(), "-a", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.02)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("args", COMMANDS)
def test_server_without_jetstream(tmp_path: Path, plain_server: str, args: tuple[str, ...]) -> None:
    code, out, err, elapsed = run(tmp_path, {"servers": [plain_server]}, *args)
    expected = (
        f"JetStream is not available on {plain_server} (not enabled on the server, "
        "or $JS.API is not reachable for this account)"
    )
    assert_one_line_error(code, out, err, elapsed, expected)


def _write_context(name: str, data: dict[str, Any]) -> Path:
    import json
    import os

    base = Path(os.environ["XDG_CONFIG_HOME"]) / "nats" / "context"
    base.mkdir(parents=True, exist_ok=True)
    path = base / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


def test_nats_context_gives_servers_and_credentials(
    tmp_path: Path, accounts_server: SingleServer
) -> None:
    _write_context("dev", {"url": accounts_server.url, "user": "js", "password": JS_PASSWORD})
    project = make_project(tmp_path, accounts_server.url, envs={"test": {"context": "dev"}})
    project.write("a.yaml", stream_doc(unique_name("CTX")))
    code, out, err = project.cli("plan", "--detailed-exitcode")
    assert code == 2, err
    assert JS_PASSWORD not in out + err
    # --context on the command line works without any environment settings
    project2 = make_project(tmp_path / "p2", accounts_server.url, envs={"test": {}})
    project2.write("a.yaml", stream_doc(unique_name("CTX")))
    code, _out, err = project2.cli("plan", "--context", "dev", "--detailed-exitcode")
    assert code == 2, err


def test_nats_context_env_var_and_nats_url(
    tmp_path: Path,
    accounts_server: SingleServer,
    nats_server: SingleServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project = make_project(tmp_path, nats_server.url, envs={"test": {}})
    project.write("a.yaml", stream_doc(unique_name("ENV")))
    monkeypatch.setenv("NATS_URL", nats_server.url)
    code, _out, err = project.cli("plan", "--detailed-exitcode")
    assert code == 2, err
    _write_context("viaenv", {"url": accounts_server.url, "user": "js", "password": "nope"})
    monkeypatch.setenv("NATS_CONTEXT", "viaenv")
    code, _out, err = project.cli("plan")
    assert code == 1 and "authorization violation" in err, err


def test_unknown_context_is_one_line(tmp_path: Path, nats_server: SingleServer) -> None:
    code, out, err, _elapsed = run(
        tmp_path, {"servers": [nats_server.url]}, "plan", "--context", "missing"
    )
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and 'nats context "missing" not found' in err


def test_nkey_seed_file_connects_and_is_never_printed(tmp_path: Path) -> None:
    """An environment's `nkey:` (a seed file) authenticates; the seed never shows."""
    import os

    import nkeys

    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(seed).public_key.decode()
    seed_file = tmp_path / "user.nk"
    seed_file.write_bytes(seed)
    config = "accounts { JS: { jetstream: enabled, users: [ {nkey: " + public + "} ] } }\n"
    server = start_single(tmp_path / "nkey-server", config_extra=config)
    try:
        env = {"servers": [server.url], "nkey": str(seed_file)}
        code, out, err, _ = run(tmp_path, env, "plan", "--detailed-exitcode")
        assert code == 2, err
        assert seed.decode() not in out + err
        wrong = tmp_path / "other.nk"
        wrong.write_bytes(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER))
        env = {"servers": [server.url], "nkey": str(wrong)}
        code, out, err, elapsed = run(tmp_path / "w", env, "plan")
        assert_one_line_error(
            code,
            out,
            err,
            elapsed,
            f"cannot connect to {server.url}: authorization violation (check the credentials)",
        )
    finally:
        server.stop()
