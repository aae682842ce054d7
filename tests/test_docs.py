"""Every config block in README.md and docs/ is what it says it is.

* ```` ```conf ```` blocks are nats-server configs: ``nats-server -t`` must accept them;
* ```` ```yaml ```` blocks with ``apiVersion: jsops/v1`` are manifests: they validate in
  the project of the nearest ``jsops.yaml`` block above them in the same file (with no
  such block, a project without ``jsops.yaml``), for each of its environments;
* ```` ```yaml ```` blocks with ``project:``, ``environments:`` or ``tenants:`` at the top
  are project files: ``load_project`` accepts them;
* every other ```` ```yaml ```` block parses as YAML.

A block that is deliberately partial says so in the line above it:
``<!-- docs-test: skip (why) -->``.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from reconciler.environments import load_project
from reconciler.errors import JsopsError
from reconciler.server import find_nats_server
from reconciler.validate import load_desired

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
SKIP = "<!-- docs-test: skip"


@dataclass(frozen=True)
class Block:
    file: Path
    line: int
    lang: str
    text: str
    skipped: bool

    @property
    def id(self) -> str:
        return f"{self.file.name}:{self.line}"

    @property
    def kind(self) -> str:
        if self.lang == "conf":
            return "server"
        if self.lang != "yaml":
            return "other"
        if re.search(r"^apiVersion: jsops/v1", self.text, re.MULTILINE):
            return "manifest"
        if re.search(r"^(project|environments|tenants):", self.text, re.MULTILINE):
            return "project"
        return "yaml"


def _blocks() -> list[Block]:
    out = []
    for path in DOCS:
        text = path.read_text()
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            out.append(Block(path, line, match.group(1), match.group(2), before.startswith(SKIP)))
    return out


BLOCKS = _blocks()


def _of(kind: str) -> list[Block]:
    return [b for b in BLOCKS if b.kind == kind]


def test_the_docs_have_config_blocks_of_every_kind() -> None:
    kinds = {b.kind for b in BLOCKS}
    assert {"server", "manifest", "project", "yaml"} <= kinds


@pytest.mark.parametrize("block", _of("server"), ids=lambda b: b.id)
def test_server_config_blocks_are_accepted_by_nats_server(block: Block, tmp_path: Path) -> None:
    conf = tmp_path / "server.conf"
    conf.write_text(block.text)
    run = subprocess.run(
        [str(find_nats_server()), "-c", str(conf), "-t"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 0, f"{block.id}: {run.stdout}{run.stderr}"


@pytest.mark.parametrize("block", _of("project"), ids=lambda b: b.id)
def test_project_file_blocks_load(block: Block, tmp_path: Path) -> None:
    if block.skipped:
        pytest.skip("marked partial in the docs")
    (tmp_path / "jsops.yaml").write_text(block.text)
    try:
        load_project(tmp_path / "jsops.yaml")
    except JsopsError as exc:
        pytest.fail(f"{block.id}: " + "; ".join(exc.lines()))


def _project_above(block: Block) -> Block | None:
    found = None
    for other in BLOCKS:
        if other.file == block.file and other.line < block.line and other.kind == "project":
            found = other
    return found


@pytest.mark.parametrize("block", _of("manifest"), ids=lambda b: b.id)
def test_manifest_blocks_validate(block: Block, tmp_path: Path) -> None:
    if block.skipped:
        pytest.skip("marked partial in the docs")
    project_block = _project_above(block)
    if project_block is not None:
        (tmp_path / "jsops.yaml").write_text(project_block.text)
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "block.yaml").write_text(block.text)
    project = load_project(tmp_path / "jsops.yaml" if project_block else None)
    project = type(project)(project.config, tmp_path, project.config_file)
    for env in project.config.environments or ["default"]:
        try:
            load_desired(project, env, [str(tmp_path / "manifests")])
        except JsopsError as exc:
            pytest.fail(f"{block.id} (environment {env}): " + "; ".join(exc.lines()))


@pytest.mark.parametrize("block", _of("yaml"), ids=lambda b: b.id)
def test_other_yaml_blocks_parse(block: Block) -> None:
    list(YAML(typ="safe").load_all(block.text))


# ------------------------------------------------ the README tutorial, followed


def _tutorial() -> list[Block]:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## 5-minute tutorial")
    end = readme.index("\n## ", start + 1)
    return [b for b in BLOCKS if b.file.name == "README.md" and start < _offset(b) < end]


def _offset(block: Block) -> int:
    text = block.file.read_text()
    return len("".join(text.splitlines(keepends=True)[: block.line - 1]))


def _commands(block: Block) -> list[list[str]]:
    out = []
    for line in block.text.splitlines():
        command = line.split("  #", 1)[0].strip().rstrip("&").strip()
        out.append(command.split())
    return out


@pytest.mark.slow
def test_the_tutorial_works_in_a_fresh_directory(tmp_path: Path) -> None:
    """The tutorial's files, written where it says, and its commands, run as it says,
    in a fresh directory with its own ``jsops server`` (on free ports instead of 4222)."""
    import os
    import signal
    import sys
    import time

    from reconciler.server import READY_TIMEOUT, free_port

    blocks = _tutorial()
    setup, run = [b for b in blocks if b.lang == "sh"][:2]
    assert _commands(setup)[1:] == [
        ["mkdir", "-p", "~/shop", "&&", "cd", "~/shop"],
        ["jsops", "server"],
        ["jsops", "schema", "--out", "schemas"],
    ]
    shop = tmp_path / "shop"
    shop.mkdir()
    port, http_port = free_port(), free_port()
    for block in blocks:
        if block.lang == "yaml":
            name = block.text.splitlines()[0].removeprefix("# ").strip()
            (shop / name).parent.mkdir(parents=True, exist_ok=True)
            (shop / name).write_text(block.text.replace(":4222", f":{port}"))
    jsops = str(Path(sys.executable).with_name("jsops"))
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("APP_ROOT", None)
    log = tmp_path / "jsops-server.err"
    with open(log, "wb") as sink:
        server = subprocess.Popen(
            [jsops, "server", "--port", str(port), "--http-port", str(http_port)],
            cwd=shop,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
            start_new_session=True,
        )
    try:
        # as a reader would: the next commands once jsops server says it is ready
        deadline = time.monotonic() + READY_TIMEOUT + 15
        while "ready; client URLs: " not in log.read_text(errors="replace"):
            assert server.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.05)
        done = subprocess.run(
            [jsops, "schema", "--out", "schemas"], cwd=shop, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert (shop / "schemas" / "manifest.schema.json").exists()
        results = {}
        for command in _commands(run):
            if command == ["jsops", "apply"]:  # the test has no terminal to answer on
                command = [*command, "--auto-approve"]
            results[" ".join(command)] = subprocess.run(
                [jsops, *command[1:]], cwd=shop, env=env, capture_output=True, text=True
            )
        validate, plan, apply, again = results.values()
        assert validate.returncode == 0, validate.stderr
        assert plan.returncode == 0, plan.stderr
        assert "+ Stream ORDERS" in plan.stdout and "+ Consumer ORDERS/processor" in plan.stdout
        assert "Plan: 2 to create" in plan.stderr  # only the tutorial's: a fresh server
        assert apply.returncode == 0, apply.stderr
        assert again.returncode == 0, again.stderr
        assert "No changes" in again.stderr
        assert (shop / ".data" / "nats-js").is_dir()  # its own server data
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
