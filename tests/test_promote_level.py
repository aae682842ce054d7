"""``jsops promote --check-destination`` checks the destination's API level as a plan
does: a promoted field newer than it is an error naming the field and its release."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import releases
from harness.project import make_project
from harness.servers import SingleServer, start_single, unique_name


def test_promote_refuses_fields_the_destination_release_lacks(
    tmp_path: Path, nats_server: SingleServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:  # the destination runs the oldest release
        patch.setenv(releases.ENV_VAR, str(releases.ensure(releases.OLDEST)))
        old = start_single(tmp_path / "old")
    try:
        project = make_project(
            tmp_path,
            nats_server.url,
            envs={"dev": {"servers": [nats_server.url]}, "prod": {"servers": [old.url]}},
        )
        name = unique_name("PLV")
        project.write(
            "dev.yaml",
            f"apiVersion: jsops/v1\nkind: Stream\n"
            f"metadata: {{name: {name}, environments: [dev]}}\n"
            f'spec: {{subjects: ["{name.lower()}.>"], allow_msg_ttl: true}}\n',
        )
        args = ("promote", "--from", "dev", "--to", "prod", "--mode", "copy", "--out", "out")
        code, out, err = project.cli(*args, "--check-destination")
        assert code == 1, (out, err)
        assert (
            f"{name}.yaml: Stream {name}: allow_msg_ttl needs nats-server 2.11 or newer "
            f"(JetStream API level 1); nats-server {releases.OLDEST} has API level 0"
        ) in err
        assert not (project.root / "out").exists()
        code, _out, err = project.cli(*args)  # unchecked: written, for review
        assert code == 0, err
        assert (project.root / "out" / f"{name}.yaml").is_file()
    finally:
        old.stop()
