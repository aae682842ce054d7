"""Manifest templates are untrusted input: they render in a sandbox.

A pull request may carry a manifest written to run code in CI. Each payload below
must end as one located template error, exit 1, with no side effect and not one
request sent to the server; the documented filters and methods still work.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from harness.project import make_project
from harness.servers import JsWriteCounter, SingleServer

STREAM = """\
apiVersion: jsops/v1
kind: Stream
metadata: {{name: {name}}}
spec:
  subjects: ["{name}.>"]
  description: "{payload}"
"""


def _payloads(marker: Path) -> list[str]:
    return [
        f"{{{{ cycler.__init__.__globals__.os.popen('touch {marker}').read() }}}}",
        f"{{{{ lipsum.__globals__['os'].popen('touch {marker}').read() }}}}",
        "{{ lipsum.__globals__['os'].environ['JSOPS_TEST_SECRET'] }}",
        "{{ ''.__class__.__mro__ }}",
        "{{ env.__class__.__mro__[1].__subclasses__() }}",
        "{{ values.__class__.__init__.__globals__ }}",
        "{{ env.format.__globals__ }}",
        "{{ namespace }}{{ range(10) }}",
        f"{{{{ self._TemplateReference__context.cycler.__init__.__globals__.os.popen('touch {marker}') }}}}",  # noqa: E501
        "{{ 'x' * 900000000 }}",
        "{{ '%900000000s' % 1 }}",
        "{{ 'a'.ljust(900000000) }}",
        "{{ '{:>900000000}'.format(1) }}",
        "{{ (10 ** 900) ** 900 ** 9 }}",
    ]


@pytest.mark.parametrize("index", range(14))
def test_payload_is_a_located_error_with_no_side_effect(
    index: int,
    tmp_path: Path,
    nats_server: SingleServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    marker = tmp_path / "pwned"
    payload = _payloads(marker)[index]
    monkeypatch.setenv("JSOPS_TEST_SECRET", "s3cr3t-value")
    proj = make_project(tmp_path, nats_server.url)
    proj.write("evil.yaml", STREAM.format(name="EVIL", payload=payload.replace('"', '\\"')))
    with JsWriteCounter(nats_server.url) as counter:
        for command in (["validate"], ["plan"], ["apply", "--auto-approve"]):
            code, out, err = proj.cli(*command)
            assert code == 1, (command, out, err)
            lines = err.strip().splitlines()
            assert len(lines) == 1, err
            assert lines[0].startswith("manifests/evil.yaml:6:"), err
            assert "template" in lines[0], err
            assert "Traceback" not in err and "s3cr3t" not in out + err
    assert counter.requests == []
    assert not marker.exists()


def test_documented_filters_and_methods_render(tmp_path: Path, nats_server: SingleServer) -> None:
    proj = make_project(
        tmp_path,
        nats_server.url,
        envs={"test": {"servers": [nats_server.url], "values": {"team": " Pay-Ments ", "n": 2}}},
    )
    proj.write(
        "ok.yaml",
        """\
        apiVersion: jsops/v1
        kind: Stream
        metadata: {name: "OK_{{ env | upper }}"}
        spec:
          subjects: ["{{ values.team.strip().lower() | replace('-', '') }}.>"]
          num_replicas: {{ values.get('replicas', 1) }}
          max_msgs: {{ values.n * 1000 }}
          description: "{{ '%s-%03d' % (values.team|trim, values.n) }} {{ [3, 1]|sort|join(',') }}"
        """,
    )
    code, out, err = proj.cli("plan", "--format", "json")
    assert code == 0, err
    assert '"name": "OK_TEST"' in out
    assert '"payments.>"' in out
    assert "Pay-Ments-002 1,3" in out
