"""TLS: an environment's `tls: {ca}` (and a tls:// URL) reaches a server that requires TLS;
without the CA the failure is one clear line."""

from __future__ import annotations

import shutil
import subprocess
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
