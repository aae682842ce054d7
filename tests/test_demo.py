"""`make demo` (reconciler.demo): the repository's manifests apply on the embedded
server, a second plan has no changes, and no nats-server process is left behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_applies_the_example_manifests_and_stops_the_server(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(ROOT / "jsops.yaml", repo / "jsops.yaml")
    shutil.copytree(ROOT / "manifests", repo / "manifests")
    env = {**os.environ, "APP_ROOT": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "reconciler.demo"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "Apply complete" in proc.stderr or "No changes" in proc.stderr
    assert "No changes: the live state matches the manifests." in proc.stdout
    pid_line = next(line for line in proc.stderr.splitlines() if "stopping nats-server" in line)
    pid = int(pid_line.split("pid ")[1].rstrip(")"))
    assert not Path(f"/proc/{pid}").exists()  # stopped and reaped
    # a second run finds everything in place
    again = subprocess.run(
        [sys.executable, "-m", "reconciler.demo"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "No changes." in again.stderr
