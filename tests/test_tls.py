"""TLS: an environment's `tls: {ca}` (and a tls:// URL) reaches a server that requires TLS;
without the CA the failure is one clear line."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.project import make_project
from harness.servers import SingleServer, start_single, unique_name

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def _certs(base: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1, made with openssl."""
    ca_key, ca, key, csr, cert = (base / n for n in ("ca.key", "ca.pem", "s.key", "s.csr", "s.pem"))
    ext = base / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
        "-days",
        "2",
        "-subj",
        "/CN=jsops-test-ca",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        "-subj",
        "/CN=127.0.0.1",
    )
    run(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(cert),
        "-days",
        "2",
        "-extfile",
        str(ext),
    )
    return ca, cert, key


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SingleServer, Path]]:
    base = tmp_path_factory.mktemp("tls")
    ca, cert, key = _certs(base)
    handle = start_single(base, config_extra=f'tls {{ cert_file: "{cert}", key_file: "{key}" }}\n')
    yield handle, ca
    handle.stop()


def test_tls_with_the_ca_connects(tmp_path: Path, tls_server) -> None:
    server, ca = tls_server
    url = server.url.replace("nats://", "tls://")
    project = make_project(tmp_path, url, envs={"test": {"servers": [url], "tls": {"ca": str(ca)}}})
    project.write(
        "a.yaml",
        f"""
        apiVersion: jsops/v1
        kind: Stream
        metadata: {{name: {unique_name("TLS")}}}
    """,
    )
    code, _out, err = project.cli("apply", "--auto-approve")
    assert code == 0, err
    code, _out, err = project.cli("plan", "--detailed-exitcode")
    assert code == 0, err


def test_tls_without_the_ca_is_one_line(tmp_path: Path, tls_server) -> None:
    server, _ca = tls_server
    url = server.url.replace("nats://", "tls://")
    project = make_project(tmp_path, url, envs={"test": {"servers": [url]}})
    code, out, err = project.cli("plan")
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cannot connect to tls://127.0.0.1:"), err
    assert "TLS handshake failed" in lines[0]
    assert "Traceback" not in err


class Relay:
    """A loopback TCP relay in front of a server that records every byte a client sends."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.sent = bytearray()
        self.connections = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, record: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if record:
                    with self._lock:
                        self.sent.extend(data)
                dst.sendall(data)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._listener.close()


PASSWORD = "pl41ntext-S3CRET"
TOKEN = "t0ken-S3CRET-value"


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SingleServer]:
    """A plaintext server (no TLS at all) with a user/password and a token user."""
    base = tmp_path_factory.mktemp("plain")
    auth = f'authorization {{ users: [{{user: alice, password: "{PASSWORD}"}}] }}\n'
    handle = start_single(base, config_extra=auth)
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _certs(tmp_path_factory.mktemp("ca"))[0]


def _tls_cases(ca: Path) -> dict[str, tuple[dict[str, object], list[str], dict[str, str]]]:
    """name -> (environment settings, extra CLI args, environment variables); {url} is the relay."""
    creds = {"user": "alice", "password": PASSWORD}
    return {
        "tls-url": ({"servers": ["tls://{url}"], **creds}, [], {}),
        "tls-url-and-ca": ({"servers": ["tls://{url}"], "tls": {"ca": str(ca)}, **creds}, [], {}),
        "nats-url-with-tls-ca": (
            {"servers": ["nats://{url}"], "tls": {"ca": str(ca)}, **creds},
            [],
            {},
        ),
        "token-with---server-tls": ({"token": TOKEN}, ["--server", "tls://{url}"], {}),
        "userinfo-in-tls-url": ({"servers": [f"tls://alice:{PASSWORD}@{{url}}"]}, [], {}),
        "NATS_URL-tls": (creds, [], {"NATS_URL": "tls://{url}"}),
        "context-with-ca": ({"context": "relay"}, [], {}),
    }


@pytest.mark.parametrize("case", list(_tls_cases(Path("ca.pem"))))
def test_tls_required_never_falls_back_to_plaintext(
    case: str, tmp_path: Path, plain_server: SingleServer, ca_file: Path
) -> None:
    """A server (here a relay to a plaintext server) that does not offer TLS, while the
    settings ask for TLS: one line, exit 1, and no CONNECT (no credential) crossed."""
    relay = Relay(plain_server.server.port)
    try:
        hostport = f"127.0.0.1:{relay.port}"
        settings, args, env = _tls_cases(ca_file)[case]
        text = json.dumps(settings).replace("{url}", hostport)
        envs = {"test": json.loads(text)}
        project = make_project(tmp_path, plain_server.url, envs=envs)
        context_dir = Path(os.environ["XDG_CONFIG_HOME"]) / "nats" / "context"
        context_dir.mkdir(parents=True, exist_ok=True)
        (context_dir / "relay.json").write_text(
            json.dumps(
                {
                    "url": f"nats://{hostport}",
                    "user": "alice",
                    "password": PASSWORD,
                    "ca": str(ca_file),
                }
            )
        )
        args = [a.replace("{url}", hostport) for a in args]
        env = {k: v.replace("{url}", hostport) for k, v in env.items()}
        code, out, err = project.cli(*args, "plan", env=env)
    finally:
        relay.close()
    assert code == 1, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("cannot connect to "), err
    assert "does not offer TLS" in lines[0], err
    assert relay.connections, "the client never reached the relay"
    assert b"CONNECT" not in relay.sent
    assert PASSWORD.encode() not in relay.sent and TOKEN.encode() not in relay.sent
    assert PASSWORD not in out + err and TOKEN not in out + err


def test_plaintext_without_tls_settings_still_connects(
    tmp_path: Path, plain_server: SingleServer
) -> None:
    """Control: the same relay and credentials, no TLS asked for: the plan runs."""
    relay = Relay(plain_server.server.port)
    try:
        url = f"nats://127.0.0.1:{relay.port}"
        envs = {"test": {"servers": [url], "user": "alice", "password": PASSWORD}}
        code, _out, err = make_project(tmp_path, url, envs=envs).cli("plan")
    finally:
        relay.close()
    assert code == 0, err
    assert b"CONNECT" in relay.sent
