"""Subject-transform destinations checked offline, against what the server says.

Each case of CASES is a mapping in one place of a stream config (the stream's
``subject_transform``, a mirror's or a source's ``subject_transforms``, ``republish``)
with jsops's offline verdict (True: some supported release takes it). On the release
under test, a raw stream create with the mapping must succeed exactly when
``transform_problems(..., release=<that release>)`` finds nothing, and the offline
check must never refuse what this release takes. ``make test-matrix`` runs this on
every supported release line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from harness.project import make_project
from harness.releases import Target
from harness.servers import JsWriteCounter, SingleServer, js_request_sync, unique_name

from reconciler.models.bucket import KeyValueSpec
from reconciler.models.stream import StreamSpec
from reconciler.subjects import MIRROR, REPUBLISH, SOURCE, TRANSFORM, transform_problems

T, M, S, R = TRANSFORM, MIRROR, SOURCE, REPUBLISH

# (where, src, dest, offline verdict)
CASES: list[tuple[str, str | None, str, bool]] = [
    # the stream's input transform
    (T, "orders.*", "moved.$1", True),
    (T, "orders.*", "moved.$3", False),
    (T, "orders.*", "moved.{{wildcard(2)}}", False),
    (T, "orders.*.*", "moved.$2.$1", True),
    (T, "orders.*.*", "moved.$2", True),  # not every wildcard needs using
    (T, "orders.*.*", "moved.{{ Wildcard( 2 ) }}.$1", True),
    (T, "orders.*", "moved.*", False),
    (T, "orders.>", "moved.>", True),
    (T, "orders.*.>", "moved.$1.>", True),
    (T, "orders.>", "moved", False),
    (T, "orders.*", "moved.>", False),
    (T, "orders.*", "moved..$1", False),
    (T, "orders.*", "moved.>.$1", False),
    (T, "orders.*", "moved.$x", True),  # not a number: a literal token
    (T, "orders.*", "moved.$0", True),
    (T, "orders", "moved.$1", False),
    (T, "orders.>", "moved.$1.>", False),
    (T, None, "moved.>", True),  # no src: ">"
    (T, "orders.*", "{{unknown(1)}}", False),
    (T, "orders.*", "{{wildcard()}}", False),
    (T, "orders.*", "{{wildcard(1,2)}}", False),
    (T, "orders.*", "{{wildcard(one)}}", False),
    (T, "orders.*", "p.{{partition(3,1)}}", True),
    (T, "orders.*", "p.{{partition(3,2)}}", False),
    (T, "orders.*", "p.{{partition(x,1)}}", False),
    (T, "orders.*", "p.{{partition(3)}}", True),  # 2.12+
    (T, "orders", "p.{{partition(3)}}", True),  # 2.12+
    (T, "orders.>", "p.{{partition(3)}}.>", True),  # 2.12+
    (T, "orders.*", "p.{{random(5)}}.$1", True),  # 2.12+
    (T, "orders.*", "p.{{random()}}", False),
    (T, "orders.*", "{{splitFromLeft(1,2)}}", True),
    (T, "orders.*", "{{SplitFromRight(1,2)}}", True),
    (T, "orders.*", "{{splitFromLeft(1)}}", False),
    (T, "orders.*", "{{sliceFromLeft(2,2)}}", False),
    (T, "orders.*", "{{sliceFromRight(1,x)}}", False),
    (T, "orders.*", "{{splitFromLeft(1,99999999999)}}", True),  # before 2.11.8
    (T, "orders.*", "{{split(1,-)}}", True),
    (T, "orders.*", "{{split(1,a b)}}", False),
    (T, "orders.*", "{{split(1)}}", False),
    (T, "orders.*", "{{left(1,2)}}.x", True),  # 2.10.16-2.10.x only
    (T, "orders.*", "a b.$1", True),  # 2.10 only
    # a mirror's and a source's transforms
    (M, "orders.*", "m.$1", True),
    (M, "orders.*", "m.$3", False),
    (M, "orders.>", "m", False),
    (M, "orders.*", "{{right(1,2)}}", True),  # 2.10.16-2.10.x only
    (S, "orders.*", "s.$1", True),
    (S, "orders.*", "s.$2", False),
    (S, "orders.*", "s.{{partition(4,1)}}", True),
    (S, "orders.*", "{{left(1,2)}}", True),  # 2.15+
    (S, "orders.*", "s.{{random(3)}}", True),  # 2.12+
    (S, None, "s.>", True),  # 2.11+
    (S, "orders.*", "s.{{left(1,2)}}.{{right(1,2)}}", True),  # 2.15+
    (S, "orders.*", "s.{{left(2,2)}}", False),
    # republish (src defaults to ">")
    (R, None, "public.audit", False),
    (R, None, "out.>", True),
    (R, "orders.*", "out.$1", True),
    (R, "orders.*", "out.$2", False),
    (R, "orders.*", "out.{{left(1,2)}}", True),
    (R, "orders.>", "out", False),
    (R, "orders.*", "out.*", False),
]


def _ids(case: tuple[str, str | None, str, bool]) -> str:
    where, src, dest, _ = case
    return f"{where}:{src}->{dest}"


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_offline_verdict(case: tuple[str, str | None, str, bool]) -> None:
    where, src, dest, ok = case
    problems = transform_problems(src, dest, where=where)
    assert (problems == []) == ok, problems
    assert all(isinstance(p, str) and p for p in problems)


def _config(name: str, where: str, src: str | None, dest: str) -> dict[str, Any]:
    if src is None and where == REPUBLISH:
        src = ">"  # jsops sends republish's default src (pedantic mode refuses it unset)
    mapping = {"dest": dest} if src is None else {"src": src, "dest": dest}
    config: dict[str, Any] = {"name": name, "storage": "memory", "pedantic": True}  # as jsops
    if where == TRANSFORM:
        config |= {"subjects": [f"{name}.>"], "subject_transform": mapping}
    elif where == MIRROR:
        config["mirror"] = {"name": f"{name}_ORIGIN", "subject_transforms": [mapping]}
    elif where == SOURCE:
        config["sources"] = [{"name": f"{name}_ORIGIN", "subject_transforms": [mapping]}]
    else:
        config |= {"subjects": [f"{name}.>"], "republish": mapping}
    return config


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_verdict_matches_the_server(
    case: tuple[str, str | None, str, bool], nats_server: SingleServer, target: Target
) -> None:
    where, src, dest, _ = case
    name = unique_name("XF")
    reply = js_request_sync(
        nats_server.url, f"$JS.API.STREAM.CREATE.{name}", _config(name, where, src, dest)
    )
    server_ok = "error" not in reply
    if server_ok:
        js_request_sync(nats_server.url, f"$JS.API.STREAM.DELETE.{name}")
    ours = transform_problems(src, dest, where=where, release=target.version)
    assert (ours == []) == server_ok, (target.version, reply.get("error"), ours)
    if server_ok:  # nothing a supported release takes is refused offline
        assert transform_problems(src, dest, where=where) == []


def test_model_problems_are_located_at_dest() -> None:
    spec = StreamSpec.model_validate(
        {
            "subjects": ["orders.*"],
            "subject_transform": {"src": "orders.*", "dest": "moved.$3"},
            "mirror": None,
            "sources": [
                {"name": "A", "subject_transforms": [{"src": "a.*", "dest": "b.$2"}]},
                {"name": "B", "subject_transforms": [{"src": "a.*", "dest": "b.$1"}]},
            ],
            "republish": {"dest": "public.audit"},
        }
    )
    assert spec.problems() == [
        (
            ("subject_transform", "dest"),
            'dest "moved.$3": wildcard index 3 is out of range: src "orders.*" has 1 wildcard',
        ),
        (("republish", "dest"), 'dest "public.audit": must end in ">" as src ">" does'),
        (
            ("sources", 0, "subject_transforms", 0, "dest"),
            'dest "b.$2": wildcard index 2 is out of range: src "a.*" has 1 wildcard',
        ),
    ]
    kv = KeyValueSpec.model_validate({"republish": {"src": "$KV.cfg.*", "dest": "out.$2"}})
    assert [p for p, _ in kv.problems()] == [("republish", "dest")]


def test_republish_onto_the_streams_own_subjects_is_a_cycle() -> None:
    spec = StreamSpec.model_validate(
        {"subjects": ["orders.>"], "republish": {"src": "orders.*", "dest": "orders.copy"}}
    )
    [(path, message)] = spec.problems()
    assert path == ("republish", "dest")
    assert 'overlaps subject "orders.>"' in message


def test_the_implicit_republish_is_refused_and_its_explicit_form_applies(
    tmp_path: Path, nats_server: SingleServer
) -> None:
    """republish ``> -> >`` behind a subject_transform is the server's implicit republish
    (2.11.11+, 2.12.2+; a cycle before), which pedantic mode refuses on every release,
    and jsops always sends pedantic: a located validation error naming the explicit
    form, which a raw pedantic create takes, and which jsops applies and then plans noop."""
    url = nats_server.url
    name = unique_name("IMPL")
    p = name.lower()
    base = {
        "subjects": [f"{p}.in.>"],
        "subject_transform": {"src": f"{p}.in.>", "dest": f"{p}.out.>"},
    }
    implicit = StreamSpec.model_validate({**base, "republish": {"dest": ">"}})
    [(path, message)] = implicit.problems()
    assert path == ("republish", "dest")
    assert f'write republish: {{src: "{p}.out.>", dest: "{p}.out.>"}}' in message
    refused = js_request_sync(
        url,
        f"$JS.API.STREAM.CREATE.{name}",
        {"name": name, **base, "republish": {"src": ">", "dest": ">"}, "pedantic": True},
    )
    assert "error" in refused, refused
    explicit = {"src": f"{p}.out.>", "dest": f"{p}.out.>"}
    made = js_request_sync(
        url,
        f"$JS.API.STREAM.CREATE.{name}",
        {"name": name, **base, "republish": explicit, "pedantic": True},
    )
    assert "error" not in made, made
    js_request_sync(url, f"$JS.API.STREAM.DELETE.{name}")
    project = make_project(tmp_path, url)
    doc = (
        f"apiVersion: jsops/v1\nkind: Stream\nmetadata: {{name: {name}}}\n"
        f"spec: {{subjects: ['{p}.in.>'], subject_transform: {{src: '{p}.in.>', "
        f"dest: '{p}.out.>'}}, republish: REPUBLISH}}\n"
    )
    project.write("s.yaml", doc.replace("REPUBLISH", "{dest: '>'}"))
    code, _out, err = project.cli("validate")
    assert code == 1 and "manifests/s.yaml:4:" in err and "implicit republish" in err, err
    project.write("s.yaml", doc.replace("REPUBLISH", f"{{src: '{p}.out.>', dest: '{p}.out.>'}}"))
    code, _out, err = project.cli("apply", "--auto-approve")
    assert code == 0, err
    assert project.plan().has_changes is False
    js_request_sync(url, f"$JS.API.STREAM.DELETE.{name}")


def test_validate_refuses_a_bad_destination_before_any_request(
    tmp_path: Path, nats_server: SingleServer
) -> None:
    project = make_project(tmp_path, nats_server.url)
    name = unique_name("XF")
    project.write(
        "a.yaml",
        f"""
        apiVersion: jsops/v1
        kind: Stream
        metadata:
          name: {name}
        spec:
          subjects: ["orders.*"]
          subject_transform:
            src: "orders.*"
            dest: "moved.$3"
        """,
    )
    with JsWriteCounter(nats_server.url) as counter:
        for args in (("validate",), ("plan",)):
            code, out, err = project.cli(*args)
            assert (code, out) == (1, ""), err
            assert err.startswith("manifests/a.yaml:9:5: spec.subject_transform: "), err
            assert "wildcard index 3 is out of range" in err
            assert "Traceback" not in err
    assert counter.requests == []


@pytest.mark.parametrize(
    "dest",
    ["{{splitFromLeft(1,99999999999)}}.$1", "p.{{partition(3)}}.$1"],
    ids=["int64-position", "partition-shorthand"],
)
def test_plan_refuses_what_the_target_release_refuses(
    dest: str, tmp_path: Path, nats_server: SingleServer, target: Target
) -> None:
    """Validation passes a mapping some supported release takes; the plan, knowing the
    server's version, refuses it there when this release does not (and sends nothing)."""
    project = make_project(tmp_path, nats_server.url)
    name = unique_name("XF")
    project.write(
        "a.yaml",
        f"""
        apiVersion: jsops/v1
        kind: Stream
        metadata:
          name: {name}
        spec:
          subjects: ["{name.lower()}.*"]
          subject_transform:
            src: "{name.lower()}.*"
            dest: "{{% raw %}}{dest}{{% endraw %}}"
        """,
    )
    assert project.cli("validate")[0] == 0
    refused = transform_problems(f"{name.lower()}.*", dest, release=target.version)
    with JsWriteCounter(nats_server.url) as counter:
        code, out, err = project.cli("plan")
    assert counter.writes == []
    if refused:
        assert (code, out) == (1, ""), err
        assert err.startswith("manifests/a.yaml:9:5: spec.subject_transform: dest "), err
        assert f"(nats-server {target.version} refuses it)" in err
    else:
        assert code == 0, err
        code, _, err = project.cli("apply", "--auto-approve")
        assert code == 0, err
        js_request_sync(nats_server.url, f"$JS.API.STREAM.DELETE.{name}")


def test_republish_cycles_as_the_server_sees_them(
    nats_server: SingleServer, target: Target
) -> None:
    """republish onto the stream's own subjects is refused everywhere; so is ``> -> >``
    behind a subject_transform of the one subject, as jsops sends it (pedantic: the
    releases with the implicit republish refuse it there, the others see a cycle)."""
    for config, refused_everywhere in (
        ({"subjects": ["{n}.>"], "republish": {"src": "{n}.a", "dest": "{n}.b"}}, True),
        (
            {
                "subjects": ["{n}.in.>"],
                "subject_transform": {"src": "{n}.in.>", "dest": "{n}.out.>"},
                "republish": {"dest": ">"},
            },
            True,
        ),
    ):
        name = unique_name("XF")
        spec: dict[str, Any] = {
            k: _fill(v, name.lower()) for k, v in config.items()
        }  # each case on its own subjects
        offline = StreamSpec.model_validate(spec).problems()
        at_release = StreamSpec.model_validate(spec).transform_problems(release=target.version)
        reply = js_request_sync(
            nats_server.url,
            f"$JS.API.STREAM.CREATE.{name}",
            {"name": name, "storage": "memory", **spec, "pedantic": True},
        )
        server_ok = "error" not in reply
        if server_ok:
            js_request_sync(nats_server.url, f"$JS.API.STREAM.DELETE.{name}")
        assert (offline != []) == refused_everywhere, offline
        assert (at_release == []) == server_ok, (target.version, reply.get("error"), at_release)


def _fill(value: Any, n: str) -> Any:
    if isinstance(value, str):
        return value.replace("{n}", n)
    if isinstance(value, list):
        return [_fill(v, n) for v in value]
    return {k: _fill(v, n) for k, v in value.items()}
