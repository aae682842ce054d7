"""Input foot-guns: look-alike and over-long names, edge values that the server would
store differently, and an export that would overwrite files or die on long names.

The property test draws edge values (0, 1, -1, the largest int64, a few more) for every
numeric and duration field of streams and consumers: each value is either refused by
validation (a located error) or, once applied to a real server, plans ``noop``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from harness.project import make_project
from harness.servers import JsWriteCounter, SingleServer, js_request_sync, unique_name
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

MAX_INT64 = 2**63 - 1
SECOND = 10**9


def _doc(kind: str, metadata: dict[str, Any], spec: dict[str, Any]) -> str:
    return json.dumps({"apiVersion": "jsops/v1", "kind": kind, "metadata": metadata, "spec": spec})


# -- names ---------------------------------------------------------------------------------

LOOK_ALIKES = {
    "ORDERS\u200b": "contains the invisible character U+200B (ZERO WIDTH SPACE)",
    "\u041eRDERS": "mixes scripts (CYRILLIC, LATIN)",
    "\u00d6" * 200: "name is 400 bytes long (200 characters), the server's limit is 255 bytes",
    "ORD\u00adERS": "contains the invisible character U+00AD (SOFT HYPHEN)",
}


def test_look_alike_and_long_names_are_refused(tmp_path: Path, nats_server: SingleServer) -> None:
    proj = make_project(tmp_path, nats_server.url)
    docs = [_doc("Stream", {"name": "ORDERS"}, {"subjects": [f"{proj.name}.plain"]})]
    for i, name in enumerate(LOOK_ALIKES):
        docs.append(_doc("Stream", {"name": name}, {"subjects": [f"{proj.name}.{i}"]}))
    proj.write("names.yaml", "\n---\n".join(docs) + "\n")
    with JsWriteCounter(nats_server.url) as counter:
        for command in (["validate"], ["plan"]):
            code, out, err = proj.cli(*command)
            assert code == 1 and out == "", err
            lines = err.strip().splitlines()
            assert len(lines) == len(LOOK_ALIKES), err
            for line, (i, words) in zip(lines, enumerate(LOOK_ALIKES.values()), strict=True):
                assert line.startswith(f"manifests/names.yaml:{2 * i + 3}:"), line
                assert words in line, line
    assert counter.requests == []


def test_names_of_one_script_pass(tmp_path: Path, nats_server: SingleServer) -> None:
    proj = make_project(tmp_path, nats_server.url)
    digits = str(int(proj.name.encode().hex(), 16))[-8:]
    names = ["ЗАКАЗЫ_" + digits, "ORDERS_注文_" + digits, "x" * 232 + digits]
    docs = [
        _doc("Stream", {"name": n}, {"subjects": [f"{proj.name}.{i}"]}) for i, n in enumerate(names)
    ]
    proj.write("names.yaml", "\n---\n".join(docs) + "\n")
    code, _out, err = proj.cli("apply", "--auto-approve")
    assert code == 0, err
    code, _out, err = proj.cli("plan", "--detailed-exitcode")
    assert code == 0, err


# -- edge values ---------------------------------------------------------------------------

# (kind, field, what else the resource needs for the field to mean something)
FIELDS: list[tuple[str, str, dict[str, Any]]] = [
    ("Stream", "max_consumers", {}),
    ("Stream", "max_msgs", {}),
    ("Stream", "max_bytes", {}),
    ("Stream", "max_age", {}),
    ("Stream", "max_msgs_per_subject", {}),
    ("Stream", "max_msg_size", {}),
    ("Stream", "num_replicas", {}),
    ("Stream", "duplicate_window", {}),
    ("Stream", "first_seq", {}),
    ("Stream", "subject_delete_marker_ttl", {"allow_msg_ttl": True}),
    ("Consumer", "opt_start_seq", {"deliver_policy": "by_start_sequence"}),
    ("Consumer", "ack_wait", {}),
    ("Consumer", "max_deliver", {}),
    ("Consumer", "backoff", {"max_deliver": 5}),
    ("Consumer", "rate_limit_bps", {"deliver_subject": "dlv.{n}"}),
    ("Consumer", "max_waiting", {}),
    ("Consumer", "max_ack_pending", {}),
    ("Consumer", "max_batch", {}),
    ("Consumer", "max_expires", {}),
    ("Consumer", "max_bytes", {}),
    ("Consumer", "idle_heartbeat", {"deliver_subject": "dlv.{n}"}),
    ("Consumer", "inactive_threshold", {}),
    ("Consumer", "num_replicas", {}),
    (
        "Consumer",
        "priority_timeout",
        {"priority_policy": "pinned_client", "priority_groups": ["g"]},
    ),
]
EDGES = [0, 1, -1, MAX_INT64]
EDGE = st.sampled_from([*EDGES, 2, 2**31, 2**53 + 1, SECOND, 100 * SECOND // 1000])
# A reservation larger than the test server's disk is refused by the server at apply
# (insufficient storage, err_code 10047): capacity is a plan-time check of its own.
CAPACITY_REFUSED = "insufficient storage resources"
INACTIVE_SKIP = 600 * SECOND


def _files(values: dict[str, int], prefix: str) -> dict[str, str]:
    """One manifest file per field: the resource with the field set to its value."""
    files = {}
    for i, (kind, field, extra) in enumerate(FIELDS):
        value = values[f"{kind}.{field}"]
        if field == "inactive_threshold" and 0 < value < INACTIVE_SKIP:
            continue  # the server deletes an idle consumer that soon, by design: a create
        stream = f"{prefix}_{i}"
        filled = json.loads(json.dumps(extra).replace("{n}", stream.lower()))
        subjects = {"subjects": [f"{stream.lower()}.>"]}
        if kind == "Stream":
            docs = [_doc("Stream", {"name": stream}, {**subjects, **filled, field: value})]
        else:
            spec = {
                "ack_policy": "explicit",
                **filled,
                field: [value] if field == "backoff" else value,
            }
            docs = [
                _doc("Stream", {"name": stream}, subjects),
                _doc("Consumer", {"name": "c", "stream": stream}, spec),
            ]
        files[f"{kind}.{field}.yaml"] = "\n---\n".join(docs) + "\n"
    return files


VALUES = st.fixed_dictionaries({f"{kind}.{field}": EDGE for kind, field, _ in FIELDS})


def _all(value: int) -> dict[str, int]:
    return {f"{kind}.{field}": value for kind, field, _ in FIELDS}


@pytest.mark.timeout(600)
@settings(
    max_examples=3,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: every example costs an apply
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(values=VALUES)
@example(values=_all(0))
@example(values=_all(1))
@example(values=_all(-1))
@example(values=_all(MAX_INT64))
def test_every_edge_value_is_refused_or_stored_as_declared(
    nats_server: SingleServer, values: dict[str, int]
) -> None:
    base = Path(tempfile.mkdtemp(prefix="edges-"))
    try:
        proj = make_project(base, nats_server.url)
        files = _files(values, unique_name("EDGE"))
        for name, text in files.items():
            proj.write(name, text)
        # refused before any write: by validation, then by the plan (a located error)
        for command in (["validate"], ["plan"]):
            code, _out, err = proj.cli(*command)
            lines = err.strip().splitlines() if code else []
            assert all(line.startswith("manifests/") and line.count(":") >= 3 for line in lines), (
                err
            )
            for line in lines:
                name = line.split(":", 1)[0].removeprefix("manifests/")
                if (proj.root / "manifests" / name).exists():
                    proj.remove(name)
        if not list((proj.root / "manifests").glob("*.yaml")):
            return
        code, _out, err = proj.cli("apply", "--auto-approve")
        if code != 0:
            failed = [line for line in err.splitlines() if "failed:" in line]
            assert failed and all(CAPACITY_REFUSED in line for line in failed), err
            for line in failed:  # drop what the server could not reserve, plan the rest
                stream = line.split(":")[0].split()[-1].split("/")[0]
                for name, text in files.items():
                    if f'"name": "{stream}"' in text and (proj.root / "manifests" / name).exists():
                        proj.remove(name)
        code, out, err = proj.cli("plan", "--detailed-exitcode", "--format", "json")
        changes = [c for c in json.loads(out)["changes"] if c["action"] != "noop"] if out else []
        assert code == 0, (changes, err)
    finally:
        shutil.rmtree(base, ignore_errors=True)


# -- export --------------------------------------------------------------------------------


def test_export_never_overwrites_and_handles_long_names(
    tmp_path: Path, nats_server: SingleServer
) -> None:
    long_name = ("L" + unique_name("X"))[:20].ljust(253, "N")
    assert len(long_name.encode()) == 253
    reply = js_request_sync(
        nats_server.url,
        f"$JS.API.STREAM.CREATE.{long_name}",
        {"name": long_name, "subjects": [f"long.{unique_name('s').lower()}"]},
    )
    assert "error" not in reply, reply
    proj = make_project(tmp_path, nats_server.url)
    out_dir = proj.root / "exported"
    code, out, err = proj.cli("export", "--out", str(out_dir))
    assert code == 0, err
    written = [Path(line) for line in out.splitlines()]
    assert all(len(p.name.encode()) <= 255 for p in written)
    long_file = [p for p in written if p.name.startswith(long_name[:200])]
    assert len(long_file) == 1
    assert YAML(typ="safe").load(long_file[0].read_text())["metadata"]["name"] == long_name

    victim = written[0]
    victim.write_text("# my edits\n")
    code, out, err = proj.cli("export", "--out", str(out_dir))
    assert code == 1 and out == "", err
    assert len(err.strip().splitlines()) == 1 and str(victim) in err and "--force" in err
    assert victim.read_text() == "# my edits\n"
    code, _out, err = proj.cli("export", "--out", str(out_dir), "--force")
    assert code == 0, err
    assert victim.read_text().startswith("# yaml-language-server")
