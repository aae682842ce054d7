"""Validation as a library: resources, message formats, cross-resource rules, environments."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from reconciler.environments import load_project
from reconciler.errors import Diagnostic, Location, ManifestError
from reconciler.load import LoadResult, load_text, parse
from reconciler.models import Address, StreamSpec
from reconciler.validate import load_desired, validate_loaded, validate_project

VARS = {"env": "default", "values": {}}


def check(text: str, env: str | None = "default", known: list[str] | None = None):
    source, problems = load_text("m.yaml", textwrap.dedent(text), VARS)
    assert source is not None, problems
    docs, more = parse(source)
    return validate_loaded(LoadResult(docs, problems + more, [source]), env, known)


def messages(text: str, **kwargs) -> list[str]:
    _resources, problems = check(text, **kwargs)
    return [str(p) for p in sorted(problems, key=Diagnostic.sort_key)]


STREAM = """\
apiVersion: jsops/v1
kind: Stream
metadata:
  name: ORDERS
spec:
  subjects: ["orders.>"]
  max_age: 7d
  max_bytes: 10GiB
  sources: [{name: EU, domain: eu}]
"""


def test_a_valid_stream_becomes_a_resource_in_api_units() -> None:
    resources, problems = check(STREAM)
    assert problems == []
    (res,) = resources
    assert res.address == Address("Stream", "ORDERS")
    assert res.location == Location("m.yaml", 4, 3)
    spec = res.spec
    assert isinstance(spec, StreamSpec)
    assert spec.max_age == 7 * 86_400 * 10**9
    assert spec.max_bytes == 10 * 1024**3
    assert res.document is not None and res.document.locate(("spec", "max_age")).line == 7


def test_every_problem_of_a_document_is_reported() -> None:
    text = """\
    apiVersion: jsops/v9
    kind: Stream
    metadata: {name: "A.B"}
    spec:
      max_age: 7 days
      storage: fiel
      bogus: 1
    """
    assert messages(text) == [
        'm.yaml:1:13: unknown apiVersion "jsops/v9" (expected "jsops/v1")',
        'm.yaml:3:18: metadata.name: name "A.B" must not contain "." (names cannot contain '
        'whitespace, ".", "*", ">", "/" or "\\")',
        'm.yaml:5:12: spec.max_age: invalid duration "7 days": expected e.g. "250ms", "90s", '
        '"1h30m", "7d"',
        'm.yaml:6:12: spec.storage: invalid value "fiel": expected one of file, memory '
        '(did you mean "file"?)',
        'm.yaml:7:3: unknown field "bogus" in spec',
    ]


@pytest.mark.parametrize(
    ("kind", "hint"),
    [
        ("Consumr", '(did you mean "Consumer"?)'),
        ("Bucket", "(known kinds: Stream, Consumer, Account, KeyValue, ObjectStore)"),
        ("[1, 2]", "(known kinds: Stream, Consumer, Account, KeyValue, ObjectStore)"),
        ("{a: 1}", "(known kinds: Stream, Consumer, Account, KeyValue, ObjectStore)"),
    ],
)
def test_unknown_kinds_never_crash(kind: str, hint: str) -> None:
    (line,) = messages(f"apiVersion: jsops/v1\nkind: {kind}\nmetadata: {{name: X}}\n")
    assert line.startswith("m.yaml:2:7: unknown kind ")
    assert line.endswith(hint)


def test_nested_cross_field_problems_name_their_parent() -> None:
    text = """\
    apiVersion: jsops/v1
    kind: Stream
    metadata: {name: AGG}
    spec:
      sources:
        - {name: A, filter_subject: "a.>", subject_transforms: [{src: "a.>", dest: "b.>"}]}
    """
    assert messages(text) == [
        "m.yaml:6:17: spec.sources.0: filter_subject and subject_transforms are mutually exclusive"
    ]


def test_bools_are_not_integers_and_digit_strings_are() -> None:
    text = """\
    apiVersion: jsops/v1
    kind: Stream
    metadata: {name: S}
    spec: {num_replicas: "3", max_msgs: false, first_seq: 99999999999999999999}
    """
    assert messages(text) == [
        "m.yaml:4:37: spec.max_msgs: expected an integer, got false",
        "m.yaml:4:55: spec.first_seq: 99999999999999999999 does not fit in 64 bits",
    ]


def _consumer(name: str, body: str, stream: str = "ORDERS") -> str:
    return (
        f"---\napiVersion: jsops/v1\nkind: Consumer\nmetadata: {{name: {name}, stream: {stream}}}\n"
        f"spec: {body}\n"
    )


def test_consumer_rules_follow_the_server() -> None:
    text = STREAM + "".join(
        [
            _consumer("ok", "{max_deliver: 3, backoff: [1s, 2s, 3s]}"),
            _consumer("unset", "{backoff: [1s, 2s, 3s]}"),
            _consumer("short", "{max_deliver: 2, backoff: [1s, 2s, 3s]}"),
            _consumer("zero", "{deliver_policy: by_start_sequence, opt_start_seq: 0}"),
            _consumer("fc", "{ack_policy: flow_control, ack_wait: 5s}"),
            _consumer("dup", '{filter_subjects: ["orders.a", "orders.a"]}'),
        ]
    )
    assert [m.split(": ", 1)[1] for m in messages(text)] == [
        "backoff has 3 steps but max_deliver is 2: max_deliver must be at least 3 (or -1)",
        "deliver_policy: by_start_sequence requires opt_start_seq",
        "ack_policy: flow_control requires a push consumer (set deliver_subject)",
        "ack_policy: flow_control rules out ack_wait",
        'spec.filter_subjects: filter "orders.a" overlaps "orders.a" (the filters of one '
        "consumer must not overlap)",
    ]


def test_duplicates_in_disjoint_environments_are_allowed() -> None:
    text = STREAM.replace("  name: ORDERS", "  name: ORDERS\n  environments: [dev]")
    text += "---\n" + STREAM.replace("  name: ORDERS", "  name: ORDERS\n  environments: [prod]")
    resources, problems = check(text, env=None)
    assert problems == [] and len(resources) == 2
    both = text + "---\n" + STREAM
    assert messages(both, env=None) == [
        "m.yaml:26:3: Stream ORDERS is declared twice: here and at m.yaml:4:3"
    ]


def test_a_consumer_needs_its_stream_in_its_environments() -> None:
    text = STREAM.replace("  name: ORDERS", "  name: ORDERS\n  environments: [dev]")
    text += _consumer("c", "{}").replace("stream: ORDERS}", "stream: ORDERS, environments: [dev]}")
    text += _consumer("d", "{}")
    assert messages(text, env=None) == [
        'm.yaml:19:29: consumer "d" is in every environment, but stream "ORDERS" only in dev'
    ]


def test_a_field_error_hides_no_error_across_documents() -> None:
    """A document with a wrong field is still declared: its consumers are not "not
    declared", a second declaration of it is still a duplicate, and its own stream is
    still looked up. Its spec is never read (the filter of ``c`` is not judged against
    the broken stream's subjects)."""
    broken = STREAM.replace("max_age: 7d", "max_age: 7x")
    text = (
        broken
        + _consumer("c", "{filter_subject: elsewhere.>}")
        + _consumer("d", "{max_deliver: many}").replace("stream: ORDERS", "stream: ORDRES")
        + "---\n"
        + STREAM
    )
    assert messages(text) == [
        'm.yaml:7:12: spec.max_age: invalid duration "7x": unknown unit "x" (use ns, us, '
        "ms, s, m, h, d)",
        'm.yaml:18:29: consumer "d": stream "ORDRES" is not declared in any manifest (did '
        'you mean "ORDERS"?)',
        'm.yaml:19:21: spec.max_deliver: expected an integer, got "many"',
        "m.yaml:24:3: Stream ORDERS is declared twice: here and at m.yaml:4:3",
    ]
    # nothing unchecked is ever returned as a resource to plan
    resources, _ = check(text)
    assert [r.address.name for r in resources] == ["c", "ORDERS"]
    assert all(r.checked for r in resources)


def test_environment_names_are_checked() -> None:
    text = STREAM.replace("  name: ORDERS", "  name: ORDERS\n  environments: [prod, stagin]")
    assert messages(text, known=["dev", "staging", "prod"]) == [
        'm.yaml:5:24: unknown environment "stagin" (did you mean "staging"?)'
    ]
    empty = STREAM.replace("  name: ORDERS", "  name: ORDERS\n  environments: []")
    assert messages(empty) == ["m.yaml:5:17: metadata.environments: must not be empty"]


def test_subjects_of_one_stream_must_not_overlap() -> None:
    text = STREAM.replace('["orders.>"]', '["orders.>", "orders.eu", "orders.>", "$JS.API.X"]')
    assert [m.split(": ", 1)[1] for m in messages(text)] == [
        'spec.subjects: subject "orders.eu" overlaps "orders.>"',
        'spec.subjects: subject "orders.>" is listed twice',
        'spec.subjects: subject "$JS.API.X" overlaps the JetStream API',
    ]


# -- whole projects ------------------------------------------------------------------------------


def _project(tmp_path: Path, envs: str) -> Path:
    (tmp_path / "manifests").mkdir()
    config = tmp_path / "jsops.yaml"
    config.write_text(f"project: p\nmanifests: [manifests/]\nenvironments:\n{envs}")
    return config


def test_problems_of_some_environments_say_which(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = _project(tmp_path, "  dev: {values: {r: 1}}\n  prod: {values: {}}\n")
    (tmp_path / "manifests" / "s.yaml").write_text(
        "apiVersion: jsops/v1\nkind: Stream\nmetadata: {name: S}\n"
        "spec: {num_replicas: {{ values.r }}, storage: disk}\n"
    )
    problems = validate_project(load_project(config))
    assert [str(p) for p in problems] == [
        'manifests/s.yaml:4:22: undefined template variable "values.r" (environment prod)',
        'manifests/s.yaml:4:47: spec.storage: invalid value "disk": expected one of file, memory '
        "(environment dev)",
    ]


def test_load_desired_raises_every_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = _project(tmp_path, "  dev: {}\n")
    (tmp_path / "manifests" / "a.yaml").write_text("kind: Stream\n")
    (tmp_path / "manifests" / "b.yaml").write_text("[\n")
    with pytest.raises(ManifestError) as info:
        load_desired(load_project(config), "dev")
    assert info.value.lines() == [
        'manifests/a.yaml:1:1: missing required field "apiVersion"',
        'manifests/a.yaml:1:1: missing required field "metadata"',
        "manifests/b.yaml:2:1: YAML syntax error: expected the node content, but found "
        "'<stream end>'",
    ]


def test_project_file_errors_are_located(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "jsops.yaml"
    config.write_text("project: p\nenvironment:\n  dev: {}\n")
    with pytest.raises(ManifestError) as info:
        load_project(config)
    assert info.value.lines() == [
        'jsops.yaml:2:1: unknown field "environment" (did you mean "environments"?)'
    ]
