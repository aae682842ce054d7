"""``jsops fmt``: the canonical layout, comments and templates kept, ``--check``,
idempotence, and formatted manifests that validate to the same resources. No server."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
from harness.project import make_project, run_cli

from reconciler.environments import load_project
from reconciler.fmt import format_text
from reconciler.validate import load_desired

ROOT = Path(__file__).resolve().parent.parent

MESSY = textwrap.dedent(
    """\
    # yaml-language-server: $schema=../schemas/manifest.schema.json
    # Orders, as a team wrote them.
    ---
    kind: Stream          # the kind first, by habit
    spec:
        # retention matters here
        subjects: ['shop.orders.>', "shop.refunds.>"]
        max_age: 7d       # a week
        num_replicas: {{ values.replicas }}
        sources:
        - name: ORDERS_EU
          domain: eu
        description: "{{ env }} orders"
        placement: {cluster: c1, tags: TAGS}
    metadata: {tenant: null, name: ORDERS}
    apiVersion: jsops/v1
    ---
    apiVersion: jsops/v1
    metadata:
          stream: ORDERS
          name: processor
    kind: Consumer
    spec: {ack_policy: explicit, max_deliver: 5}
    # end of file
    """
).replace("TAGS", "[ssd, fast, region-eu-west-1, zone-a, zone-b, zone-c, rack-42, rack-43]")

CANONICAL = textwrap.dedent(
    """\
    # yaml-language-server: $schema=../schemas/manifest.schema.json
    # Orders, as a team wrote them.
    ---
    apiVersion: jsops/v1
    kind: Stream          # the kind first, by habit
    metadata: {name: ORDERS, tenant: null}
    spec:
      # retention matters here
      subjects: ['shop.orders.>', "shop.refunds.>"]
      max_age: 7d         # a week
      num_replicas: {{ values.replicas }}
      sources:
        - name: ORDERS_EU
          domain: eu
      description: "{{ env }} orders"
      placement:
        cluster: c1
        tags: [ssd, fast, region-eu-west-1, zone-a, zone-b, zone-c, rack-42, rack-43]
    ---
    apiVersion: jsops/v1
    kind: Consumer
    metadata:
      name: processor
      stream: ORDERS
    spec: {ack_policy: explicit, max_deliver: 5}
    # end of file
    """
)


def _comments(text: str) -> list[str]:
    return sorted(m.strip() for m in re.findall(r"#[^\n]*", text))


def test_canonical_layout_keeps_comments_quotes_and_templates() -> None:
    formatted, skipped = format_text(MESSY)
    assert skipped is None
    assert formatted == CANONICAL
    assert _comments(formatted) == _comments(MESSY)
    assert "{{ values.replicas }}" in formatted and '"{{ env }} orders"' in formatted


@pytest.mark.parametrize(
    "text",
    [
        MESSY,
        CANONICAL,
        "apiVersion: jsops/v1\nkind: Stream\nmetadata: {name: A}\n",
        "---\nkind: Stream\napiVersion: jsops/v1\nmetadata:\n    name: A\n---\n---\n",
        *(p.read_text() for p in sorted((ROOT / "manifests").rglob("*.yaml"))),
    ],
    ids=lambda t: t.splitlines()[0][:30] if t else "empty",
)
def test_formatting_twice_is_formatting_once(text: str) -> None:
    once, skipped = format_text(text)
    assert skipped is None
    assert once is not None
    assert format_text(once) == (once, None)


def test_jinja_blocks_are_left_as_written_and_said_so() -> None:
    text = "{% if env == 'prod' %}\nkind: Stream\napiVersion: jsops/v1\n{% endif %}\n"
    assert format_text(text) == (None, "Jinja blocks ({% %} or {# #}): left as written")


def test_files_that_are_not_manifests_are_left_alone() -> None:
    formatted, skipped = format_text("name: ci\non: [push]\njobs: {}\n")
    assert formatted is None and skipped is not None and "no jsops manifest" in skipped


def test_the_repository_manifests_are_canonical() -> None:
    code, out, err = run_cli(["fmt", "--check", "manifests"], cwd=ROOT)
    assert (code, out) == (0, ""), err


def _resources(root: Path, env: str) -> list[tuple[str, object]]:
    project = load_project(root / "jsops.yaml")
    return [
        (str(r.address), r.manifest.model_dump(mode="json")) for r in load_desired(project, env)
    ]


def test_check_then_fmt_then_the_same_resources(tmp_path: Path) -> None:
    project = make_project(
        tmp_path, "nats://127.0.0.1:1", envs={"test": {"values": {"replicas": 1}}}
    )
    messy = project.write("orders.yaml", MESSY.replace("{cluster: c1, ", "{"))
    tidy = project.write("tidy.yaml", "apiVersion: jsops/v1\nkind: Stream\nmetadata: {name: B}\n")
    before = _resources(project.root, "test")

    code, out, err = project.cli("fmt", "--check")
    assert code == 1
    assert out.splitlines() == ["manifests/orders.yaml"]
    assert "1 file(s) would be reformatted" in err
    assert messy.read_text() == MESSY.replace("{cluster: c1, ", "{")  # --check writes nothing

    code, out, err = project.cli("fmt")
    assert code == 0, err
    assert out.splitlines() == ["manifests/orders.yaml"]
    assert messy.read_text().startswith("# yaml-language-server")
    assert tidy.read_text() == "apiVersion: jsops/v1\nkind: Stream\nmetadata: {name: B}\n"
    assert _resources(project.root, "test") == before

    code, out, err = project.cli("fmt", "--check", "manifests/orders.yaml")
    assert (code, out) == (0, ""), err


def test_fmt_reports_templated_files_it_leaves_alone(tmp_path: Path) -> None:
    project = make_project(tmp_path, "nats://127.0.0.1:1")
    project.write("t.yaml", "{% for i in [1] %}\napiVersion: jsops/v1\n{% endfor %}\n")
    code, out, err = project.cli("fmt", "--check")
    assert (code, out) == (0, "")
    assert "manifests/t.yaml: skipped: Jinja blocks" in err


def test_fmt_of_a_missing_path_is_one_line(tmp_path: Path) -> None:
    code, _, err = run_cli(["fmt", "nope.yaml"], cwd=tmp_path)
    assert code == 1
    assert err.strip() == "nope.yaml: no such file or directory"


# ------------------------------------------------ validate --format github | json


def _bad_project(tmp_path: Path) -> Path:
    project = make_project(tmp_path, "nats://127.0.0.1:1")
    project.write(
        "bad.yaml",
        "apiVersion: jsops/v1\nkind: Stream\nmetadata: {name: BAD}\n"
        "spec: {max_age: soon, retentoin: limits}\n",
    )
    return project.root


def test_validate_github_format_prints_annotations(tmp_path: Path) -> None:
    code, out, err = run_cli(["validate", "--format", "github"], cwd=_bad_project(tmp_path))
    assert code == 1
    assert out.splitlines() == [
        "::error file=manifests/bad.yaml,line=4,col=17,title=jsops (bad_duration)::"
        'spec.max_age: invalid duration "soon": expected e.g. "250ms", "90s", "1h30m", "7d"',
        "::error file=manifests/bad.yaml,line=4,col=23,title=jsops (unknown_field)::"
        'unknown field "retentoin" in spec (did you mean "retention"?)',
    ]
    assert "manifests/bad.yaml:4:17:" in err  # the usual lines still on stderr


def test_validate_json_format(tmp_path: Path) -> None:
    code, out, _ = run_cli(["validate", "--format", "json"], cwd=_bad_project(tmp_path))
    assert code == 1
    body = json.loads(out)
    assert body["valid"] is False and body["count"] == 2
    assert body["diagnostics"][1] == {
        "file": "manifests/bad.yaml",
        "line": 4,
        "col": 23,
        "code": "unknown_field",
        "message": 'unknown field "retentoin" in spec',
        "hint": 'did you mean "retention"?',
        "rendered": False,
    }
    (tmp_path / "ok" / "manifests").mkdir(parents=True)
    (tmp_path / "ok" / "manifests" / "a.yaml").write_text(
        "apiVersion: jsops/v1\nkind: Stream\nmetadata: {name: OK}\n"
    )
    code, out, _ = run_cli(["validate", "--format", "json"], cwd=tmp_path / "ok")
    assert code == 0
    assert json.loads(out) == {"valid": True, "count": 0, "diagnostics": []}


def test_validate_github_format_of_an_error_without_a_place(tmp_path: Path) -> None:
    code, out, _ = run_cli(
        ["--config", "missing.yaml", "validate", "--format", "github"], cwd=tmp_path
    )
    assert code == 1
    assert out.startswith("::error title=jsops (error)::")
    assert "missing.yaml" in out
