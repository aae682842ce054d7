"""``make demo``: the whole loop on the embedded server, start to stop.

Starts the bundled nats-server with its store under ``.data/nats-js`` (on a free
port, so a server already on 4222 is never touched), applies ``manifests/`` to the
``local`` environment, shows that a second plan has no changes, and stops the
server (by its own pid; no process is left behind). Exit 0 when all of that held.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from reconciler.cli import main as jsops
from reconciler.server import retry_port_clash, start_server

DEMO_ENV = "local"


def _step(title: str) -> None:
    print(f"\n==> {title}", file=sys.stderr, flush=True)


def run_demo(root: Path | None = None) -> int:
    root = root or Path.cwd()
    data_root = Path(os.environ.get("APP_ROOT") or root / ".data")
    store = data_root / "nats-js"
    store.mkdir(parents=True, exist_ok=True)
    _step(f"starting nats-server (JetStream store {store})")
    server = retry_port_clash(
        lambda: start_server(
            store_dir=store, name="jsops-demo", log_file=data_root / "nats-demo.log"
        )
    )
    _step(f"nats-server pid {server.pid} listens on {server.url}")
    common = ["-e", DEMO_ENV, "--server", server.url, "--no-color"]
    try:
        _step("jsops validate")
        if jsops(["validate"]) != 0:
            return 1
        _step("jsops apply --auto-approve (first apply creates, a re-run finds nothing to do)")
        if jsops(["apply", "--auto-approve", *common]) != 0:
            return 1
        _step("jsops plan --detailed-exitcode (must show no changes)")
        code = jsops(["plan", "--detailed-exitcode", *common])
        if code != 0:
            print("demo failed: the second plan still has changes", file=sys.stderr)
            return 1
    finally:
        _step(f"stopping nats-server (pid {server.pid})")
        server.stop()
    _step("demo complete")
    return 0


if __name__ == "__main__":
    sys.exit(run_demo())
