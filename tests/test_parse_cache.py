"""The caches (reconciler/parse_cache.py): a repeated plan of unchanged files skips the
YAML parse and the validation, and nothing a cache holds can make a plan differ from
the files, nor run anything."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import pytest
from harness.project import TestProject, make_project
from harness.servers import SingleServer, unique_name

from reconciler import load, parse_cache, validate


def _cache_files(home: Path) -> list[Path]:
    return sorted((home / ".cache" / "jsops").glob("parse-*.json"))


def _validated_files(home: Path) -> list[Path]:
    return sorted((home / ".cache" / "jsops").glob("validated-*.pickle"))


def _forget_validated(home: Path) -> None:
    """Drop the validated results, so the next run reads the parse cache."""
    for path in _validated_files(home):
        path.unlink()


def _stream(name: str, max_age: str = "1h") -> str:
    return f"""
        apiVersion: jsops/v1
        kind: Stream
        metadata: {{name: {name}}}
        spec: {{subjects: ["{name.lower()}.>"], max_age: {max_age}, storage: memory}}
        """


@pytest.fixture
def home() -> Path:
    return Path(os.environ["HOME"])


def _applied(tmp_path: Path, server: SingleServer, home: Path) -> tuple[TestProject, str, Path]:
    """A project with one stream, applied: its parse cache now holds the file."""
    name = unique_name("PC")
    proj = make_project(tmp_path, server.url)
    proj.write("s.yaml", _stream(name))
    assert proj.cli("apply", "--auto-approve")[0] == 0
    [cache_file] = _cache_files(home)
    return proj, name, cache_file


def test_second_plan_reads_the_cache_and_an_edit_misses(
    tmp_path: Path, nats_server: SingleServer, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proj, name, cache_file = _applied(tmp_path, nats_server, home)
    assert cache_file.stat().st_mode & 0o777 == 0o600
    assert cache_file.parent.stat().st_mode & 0o777 == 0o700

    parsed: list[str] = []
    real_parse = load.parse

    def counting(source: load.SourceFile) -> Any:
        parsed.append(source.path)
        return real_parse(source)

    monkeypatch.setattr("reconciler.load.parse", counting)
    code, out, _ = proj.cli("plan", "--detailed-exitcode")
    assert (code, parsed) == (0, [])  # unchanged: no file parsed, no change planned
    _forget_validated(home)  # the parse cache alone: still nothing parsed
    code, out, _ = proj.cli("plan", "--detailed-exitcode")
    assert (code, parsed) == (0, [])
    proj.write("s.yaml", _stream(name, "2h"))
    code, out, _ = proj.cli("plan", "--detailed-exitcode")
    assert code == 2 and "max_age" in out
    assert parsed == ["manifests/s.yaml"]


def test_a_problem_in_a_cached_file_is_located_from_its_text(
    tmp_path: Path, nats_server: SingleServer
) -> None:
    """Cross-file checks run on cached documents; their locations come from the file."""
    name = unique_name("PC")
    proj = make_project(tmp_path, nats_server.url)
    proj.write("s.yaml", _stream(name))
    proj.write(
        "c.yaml",
        f"""
        # a comment, so the consumer's stream is on line 5
        apiVersion: jsops/v1
        kind: Consumer
        metadata:
          name: C1
          stream: {name}
        spec: {{ack_policy: explicit}}
        """,
    )
    assert proj.cli("validate")[0] == 0  # both files are now in the cache
    proj.remove("s.yaml")
    code, _, err = proj.cli("validate")
    assert code == 1
    assert f'manifests/c.yaml:6:11: consumer "C1": stream "{name}" is not declared' in err, err


def _forge(cache_file: Path, max_age: str) -> None:
    """Rewrite every cached document's max_age, as a planted cache would."""
    body = json.loads(cache_file.read_text())
    for entry in body["entries"].values():
        docs = json.loads(entry[1])  # each file's documents are kept as JSON text
        for doc in docs:
            doc[5]["spec"]["max_age"] = max_age
        entry[1] = json.dumps(docs)
    cache_file.write_text(json.dumps(body))


@pytest.mark.parametrize("loosen", ["file", "dir"])
def test_a_cache_others_could_write_is_ignored(
    tmp_path: Path, nats_server: SingleServer, home: Path, loosen: str
) -> None:
    proj, _, cache_file = _applied(tmp_path, nats_server, home)
    _forget_validated(home)
    _forge(cache_file, "9h")
    (cache_file if loosen == "file" else cache_file.parent).chmod(
        0o666 if loosen == "file" else 0o777
    )
    code, out, err = proj.cli("plan", "--detailed-exitcode")
    assert code == 0, out + err  # the file's 1h, not the forged 9h


def test_a_corrupt_cache_is_a_miss(tmp_path: Path, nats_server: SingleServer, home: Path) -> None:
    proj, _, cache_file = _applied(tmp_path, nats_server, home)
    for garbage in ("{not json", json.dumps({"format": 1, "entries": []}), "[" * 100_000):
        _forget_validated(home)
        cache_file.write_text(garbage)
        cache_file.chmod(0o600)
        code, out, err = proj.cli("plan", "--detailed-exitcode")
        assert code == 0, out + err
    body = json.loads(cache_file.read_text())  # rewritten whole by the last plan
    assert body["fingerprint"] == parse_cache.fingerprint()


def test_no_cache_writes_nothing(tmp_path: Path, nats_server: SingleServer, home: Path) -> None:
    proj = make_project(tmp_path, nats_server.url)
    proj.write("s.yaml", _stream(unique_name("PC")))
    assert proj.cli("validate", env={"JSOPS_NO_CACHE": "1"})[0] == 0
    assert _cache_files(home) == []
    assert proj.cli("validate")[0] == 0
    assert len(_cache_files(home)) == 1


def test_no_home_directory_means_no_cache_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CI container may have neither HOME nor a passwd entry for its user."""
    import pwd

    def no_entry(uid: int) -> Any:
        raise KeyError(uid)

    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    proj = make_project(tmp_path, "nats://127.0.0.1:1")
    proj.write("s.yaml", _stream(unique_name("PC")))
    code, _out, err = proj.cli("validate")
    assert (code, "Traceback" in err) == (0, False), err


# ---------------------------------------------------------------- validated results


def test_an_unchanged_repository_is_not_validated_again(
    tmp_path: Path, nats_server: SingleServer, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proj, name, _ = _applied(tmp_path, nats_server, home)
    [kept] = _validated_files(home)
    assert kept.stat().st_mode & 0o777 == 0o600
    validated: list[int] = []
    real = validate.validate_document

    def counting(doc: Any) -> Any:
        validated.append(doc.index)
        return real(doc)

    monkeypatch.setattr("reconciler.validate.validate_document", counting)
    code, out, err = proj.cli("plan", "--detailed-exitcode")
    assert (code, validated) == (0, []), out + err
    proj.write("s.yaml", _stream(name, "2h"))
    code, out, _ = proj.cli("plan", "--detailed-exitcode")
    assert code == 2 and "max_age" in out
    assert validated == [0]


def test_a_problem_is_found_whatever_the_cache_holds(
    tmp_path: Path, nats_server: SingleServer, home: Path
) -> None:
    """The project's configuration is part of the key: an environment a manifest names
    that the project no longer has is an error, though no manifest changed."""
    name = unique_name("PC")
    envs = {"test": {"servers": [nats_server.url]}, "staging": {"servers": [nats_server.url]}}
    proj = make_project(tmp_path, nats_server.url, envs=envs)
    proj.write(
        "s.yaml",
        f"""
        apiVersion: jsops/v1
        kind: Stream
        metadata: {{name: {name}, environments: [test, staging]}}
        spec: {{subjects: ["{name.lower()}.>"], storage: memory}}
        """,
    )
    assert proj.cli("plan", "-e", "test", "--detailed-exitcode")[0] == 2
    assert _validated_files(home)
    config = proj.root / "jsops.yaml"
    config.write_text(config.read_text().replace("  staging:", "  stage:"))
    code, _, err = proj.cli("plan", "-e", "test")
    assert code == 1 and 'unknown environment "staging"' in err, err


class _Planted:
    """A pickle that would run a shell command when loaded, if the loader let it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.marker}",))


def _through_dotted_names(marker: Path) -> bytes:
    """A pickle reaching exec from a class-only allowlist by dotted names (pickle walks
    ``typing.operator.attrgetter`` from a module that imports typing), then a -1 chunk
    count and an empty list, as a cache body would hold."""
    import struct

    def text(value: str) -> bytes:
        raw = value.encode()
        return pickle.SHORT_BINUNICODE + bytes([len(raw)]) + raw

    def name(dotted: str) -> bytes:
        return text("reconciler.models.types") + text(dotted) + pickle.STACK_GLOBAL

    def call(func: bytes, *args: bytes) -> bytes:
        return (
            func
            + b"".join(args)
            + {1: pickle.TUPLE1, 2: pickle.TUPLE2}[len(args)]
            + (pickle.REDUCE)
        )

    getter = call(name("typing.operator.attrgetter"), text("__init__.__globals__"))
    module_globals = call(getter, name("typing.ForwardRef"))
    item = name("typing.operator.methodcaller")
    builtins = call(call(item, text("__getitem__"), text("__builtins__")), module_globals)
    run = call(call(item, text("__getitem__"), text("exec")), builtins)
    body = call(run, text(f"__import__('pathlib').Path({str(marker)!r}).touch()"))
    head = pickle.PROTO + bytes([4])
    count = b"J" + struct.pack("<i", -1) + pickle.STOP
    return head + body + pickle.POP + count + pickle.dumps([], protocol=4)


@pytest.mark.parametrize("how", ["planted", "loosened", "dotted"])
def test_a_validated_file_is_trusted_for_nothing(
    tmp_path: Path, nats_server: SingleServer, home: Path, how: str
) -> None:
    """A cache file naming anything but jsops's own data classes is a miss and runs
    nothing; a well-formed but forged one that others could write is ignored."""
    proj, _, _ = _applied(tmp_path, nats_server, home)
    [kept] = _validated_files(home)
    data = kept.read_bytes()
    head = data[: data.index(b"\n", len(b"jsops-validated\n")) + 1]
    marker = tmp_path / "ran"
    if how == "planted":
        kept.write_bytes(head + pickle.dumps(_Planted(marker)))
    elif how == "dotted":
        kept.write_bytes(head + _through_dotted_names(marker))
    else:
        rows = parse_cache._unpickle(data[len(head) :])
        manifest = next(x for x in rows[0] if hasattr(x, "spec"))
        manifest.spec.__dict__["max_age"] = 9 * 3600 * 10**9  # a poisoned cache's claim
        kept.write_bytes(head + parse_cache._pickle(rows))
        kept.chmod(0o666)
    code, out, err = proj.cli("plan", "--detailed-exitcode")
    assert code == 0, out + err  # the file's 1h, and no change
    assert not marker.exists()


def test_cached_resources_are_the_validated_ones(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a hit returns equals what validating returns: models, addresses, locations."""
    from reconciler.environments import load_project

    name = unique_name("PC")
    proj = make_project(tmp_path, "nats://127.0.0.1:1")
    proj.write("s.yaml", _stream(name))
    proj.write(
        "c.yaml",
        f"""
        apiVersion: jsops/v1
        kind: Consumer
        metadata: {{name: C1, stream: {name}}}
        spec: {{ack_policy: explicit, backoff: [1s, 5s], filter_subjects: ["{name.lower()}.a"]}}
        ---
        apiVersion: jsops/v1
        kind: KeyValue
        metadata: {{name: B{name}}}
        spec: {{history: 5, storage: memory}}
        """,
    )
    monkeypatch.chdir(proj.root)
    project = load_project("jsops.yaml")
    validated = validate.load_desired(project, "test")
    assert len(_validated_files(home)) == 1
    cached = validate.load_desired(project, "test")
    assert len(cached) == len(validated) == 3
    for a, b in zip(validated, cached, strict=True):
        assert (a.address, a.manifest, a.location) == (b.address, b.manifest, b.location)
        assert a.manifest.model_dump() == b.manifest.model_dump()
        assert a.manifest.model_fields_set == b.manifest.model_fields_set
        assert b.document is not None and b.document.locate(("spec",)).line > 0
