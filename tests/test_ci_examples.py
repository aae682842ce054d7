"""The CI examples (examples/github-actions/*.yml, examples/gitlab-ci.yml) run as CI
would run them: their shell steps, in order, with bash, against a real server.

What only a CI service has is stood in for: ``gh`` and ``curl`` are small stubs that
record what they were asked and keep the comment/note they were given; ``uses:`` steps
(checkout, setup-python, upload-artifact) and the ``pip install`` of jsops are done by
the test (the project is already checked out, jsops is installed). Every jsops command
in the examples really runs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from harness.project import TestProject, make_project
from harness.servers import SingleServer, js_request_sync, unique_name
from ruamel.yaml import YAML
from test_apply import stream_doc

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

GH_STUB = r"""#!/bin/sh
echo "gh $*" >> "$STUB_DIR/calls"
case "$*" in
  *"/comments --paginate"*) if [ -f "$STUB_DIR/comment.md" ]; then echo 99; fi ;;
  *"--method PATCH"*|*"--method POST"*)
    for arg in "$@"; do
      case "$arg" in body=@*) cp "${arg#body=@}" "$STUB_DIR/comment.md";; esac
    done ;;
  *"/commits/"*"/pulls"*) echo headsha ;;
  "run list"*) echo 42 ;;
  "run download"*) cp "$STUB_DIR/artifact/plan.json" ./plan.json ;;
esac
"""

CURL_STUB = r"""#!/bin/sh
echo "curl $*" >> "$STUB_DIR/calls"
out=""; method=GET; body=""; url=""
while [ $# -gt 0 ]; do
  case "$1" in
    --output) out="$2"; shift ;;
    --request) method="$2"; shift ;;
    --header) shift ;;
    --data-urlencode) body="${2#body@}"; shift ;;
    -*) ;;
    *) url="$1" ;;
  esac
  shift
done
case "$url" in
  */notes*)
    if [ "$method" = GET ]; then
      if [ -f "$STUB_DIR/comment.md" ]; then
        python3 -c 'import json, sys
print(json.dumps([{"id": 5, "body": open(sys.argv[1]).read()}]))' "$STUB_DIR/comment.md"
      else echo "[]"; fi
    else cp "$body" "$STUB_DIR/comment.md"; fi ;;
  */merge_requests) echo '[{"iid": 7}]' ;;
  */artifacts/*) cp "$STUB_DIR/artifact/plan.json" "$out" ;;
esac
"""


def _stubs(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    stub_dir = tmp_path / "ci"
    bin_dir = stub_dir / "bin"
    bin_dir.mkdir(parents=True)
    (stub_dir / "artifact").mkdir()
    for name, text in (("gh", GH_STUB), ("curl", CURL_STUB)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}",
        "STUB_DIR": str(stub_dir),
        "NO_COLOR": "1",
    }
    return stub_dir, env


def _bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _expand(value: Any, context: dict[str, str]) -> str:
    return re.sub(r"\$\{\{\s*([\w.]+)\s*\}\}", lambda m: context[m.group(1)], str(value))


def _condition(expr: str, outputs: dict[str, str]) -> bool:
    match = re.fullmatch(r"steps\.(\w+)\.outputs\.(\w+) (==|!=) '(.*)'", expr.strip())
    assert match, f"condition the test cannot evaluate: {expr}"
    step, name, op, value = match.groups()
    actual = outputs.get(f"{step}.{name}", "")
    return (actual == value) if op == "==" else (actual != value)


def _workflow(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = YAML(typ="safe").load((EXAMPLES / "github-actions" / name).read_text())
    return loaded


def run_github(
    workflow: str | dict[str, Any], cwd: Path, env: dict[str, str], context: dict[str, str]
) -> int:
    """Run the one job of a workflow: its exit code (0 when every step passed)."""
    jobs = (_workflow(workflow) if isinstance(workflow, str) else workflow)["jobs"]
    (job,) = jobs.values()
    output_file = cwd.parent / "github_output"
    outputs: dict[str, str] = {}
    base = {**env, **{k: _expand(v, context) for k, v in job.get("env", {}).items()}}
    for step in job["steps"]:
        if "if" in step and not _condition(step["if"], outputs):
            continue
        uses = step.get("uses", "")
        if uses.startswith("actions/upload-artifact"):
            shutil.copy(cwd / step["with"]["path"], Path(env["STUB_DIR"]) / "artifact")
            continue
        if uses or step["run"].startswith("pip install"):
            continue  # checkout / setup-python / installing jsops: done by the test
        output_file.write_text("")
        step_env = {**base, **{k: _expand(v, context) for k, v in step.get("env", {}).items()}}
        step_env |= {"GITHUB_OUTPUT": str(output_file), "GITHUB_REPOSITORY": "org/infra"}
        step_env["GITHUB_SHA"] = "mergesha"
        done = _bash(step["run"], cwd, step_env)
        for line in output_file.read_text().splitlines():
            key, _, value = line.partition("=")
            outputs[f"{step.get('id', '')}.{key}"] = value
        if done.returncode:
            print(step.get("name"), done.stdout, done.stderr)  # shown when a test fails
            return done.returncode
    return 0


def run_gitlab(job_name: str, cwd: Path, env: dict[str, str], extra: dict[str, str]) -> int:
    config = YAML(typ="safe").load((EXAMPLES / "gitlab-ci.yml").read_text())
    job = config[job_name]
    script = "\n".join(job["script"])
    job_env = {**env, **{k: str(v) for k, v in config["variables"].items()}, **extra}
    return _bash(script, cwd, job_env).returncode


@pytest.fixture
def project(tmp_path: Path, nats_server: SingleServer) -> TestProject:
    return make_project(tmp_path, nats_server.url, envs={"prod": {"servers": [nats_server.url]}})


def _exists(url: str, name: str) -> bool:
    return "error" not in js_request_sync(url, f"$JS.API.STREAM.INFO.{name}")


def test_github_actions_plan_comment_artifact_then_apply(
    project: TestProject, nats_server: SingleServer, tmp_path: Path
) -> None:
    stub_dir, env = _stubs(tmp_path)
    context = {
        "github.token": "gh-token",
        "github.event.pull_request.number": "7",
        "secrets.NATS_URL": nats_server.url,
    }
    name = unique_name("GHA")
    project.write("a.yaml", stream_doc(name))

    assert run_github("plan.yml", project.root, env, context) == 0
    comment = (stub_dir / "comment.md").read_text()
    assert comment.startswith("<!-- jsops-plan prod -->\n### jsops plan: `prod`")
    assert f"`Stream {name}`" in comment
    assert (stub_dir / "artifact" / "plan.json").exists()
    assert "--method POST repos/org/infra/issues/7/comments" in (stub_dir / "calls").read_text()
    assert not _exists(nats_server.url, name)  # plan writes nothing

    assert run_github("plan.yml", project.root, env, context) == 0  # a new push to the PR
    calls = (stub_dir / "calls").read_text()
    assert "--method PATCH repos/org/infra/issues/comments/99" in calls  # updated in place

    assert run_github("apply.yml", project.root, env, context) == 0
    assert _exists(nats_server.url, name)  # exactly the saved plan was applied


def test_github_actions_failed_plan_still_comments_and_fails(
    project: TestProject, nats_server: SingleServer, tmp_path: Path
) -> None:
    stub_dir, env = _stubs(tmp_path)
    context = {
        "github.token": "t",
        "github.event.pull_request.number": "8",
        "secrets.NATS_URL": nats_server.url,
    }
    project.write("a.yaml", stream_doc(unique_name("BAD"), max_age="soon"))
    # the Validate step fails first (with annotations); the plan step is what a CI
    # without a validate step would run: run it from the Plan step on
    workflow = _workflow("plan.yml")
    steps = workflow["jobs"]["plan"]["steps"]
    validate = next(s for s in steps if s.get("name") == "Validate")
    done = _bash(validate["run"], project.root, env)
    assert done.returncode == 1
    assert done.stdout.startswith("::error file=manifests/a.yaml,line=4,")
    validate["run"] = "true"
    assert run_github(workflow, project.root, env, context) == 1
    comment = (stub_dir / "comment.md").read_text()
    assert "(failed)" in comment and "`manifests/a.yaml:4:" in comment
    assert not (stub_dir / "artifact" / "plan.json").exists()


def test_gitlab_ci_plan_note_artifact_then_apply(
    project: TestProject, nats_server: SingleServer, tmp_path: Path
) -> None:
    stub_dir, env = _stubs(tmp_path)
    extra = {
        "CI_API_V4_URL": "https://gitlab.example.invalid/api/v4",
        "CI_PROJECT_ID": "3",
        "CI_MERGE_REQUEST_IID": "7",
        "CI_COMMIT_SHA": "mergesha",
        "GITLAB_TOKEN": "glpat-test",
        "NATS_URL": nats_server.url,
    }
    name = unique_name("GLC")
    project.write("a.yaml", stream_doc(name))
    assert run_gitlab("plan", project.root, env, extra) == 0
    note = (stub_dir / "comment.md").read_text()
    assert note.startswith("<!-- jsops-plan prod -->\n### jsops plan: `prod`")
    assert f"`Stream {name}`" in note
    assert run_gitlab("plan", project.root, env, extra) == 0
    assert "--request PUT" in (stub_dir / "calls").read_text()  # the same note, updated
    shutil.copy(project.root / "plan.json", stub_dir / "artifact")  # the job's artifact
    assert not _exists(nats_server.url, name)
    assert run_gitlab("apply", project.root, env, extra) == 0
    assert _exists(nats_server.url, name)
