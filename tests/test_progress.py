"""Progress of long runs on stderr (``reconciler.progress``).

Off a terminal, apply prints a summary line (counts, rate, failures) every
``$JSOPS_PROGRESS_INTERVAL`` seconds, and the line per resource only with ``-v``; on a
terminal it redraws one bar in place and clears it at the end. Backup and restore show
bytes the same way.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

from harness.project import make_project
from harness.servers import SingleServer, js_request_sync, unique_name

from reconciler.progress import Progress, human_bytes

EVERY_CHANGE = {"JSOPS_PROGRESS_INTERVAL": "0"}  # a summary line after each change
STREAMS = 12


def _streams(tag: str, max_age: str) -> str:
    return "---\n".join(
        "apiVersion: jsops/v1\nkind: Stream\n"
        f"metadata: {{name: {tag}_{i}}}\n"
        f"spec: {json.dumps({'subjects': [f'{tag.lower()}.{i}.>'], 'max_age': max_age})}\n"
        for i in range(STREAMS)
    )


def test_apply_off_a_terminal_prints_summary_lines_and_per_resource_lines_only_with_v(
    nats_server: SingleServer, tmp_path: Path
) -> None:
    tag = unique_name("PG", 5)
    project = make_project(tmp_path, nats_server.url)
    project.write("s.yaml", _streams(tag, "1h"))

    code, _out, err = project.cli("apply", "--auto-approve", env=EVERY_CHANGE)
    assert code == 0, err
    summaries = re.findall(r"^apply: (\d+)/12 changes, [\d.]+/s$", err, re.MULTILINE)
    assert summaries and summaries[-1] == "12", err
    assert " ... done" not in err
    assert "Apply complete: 12 done, 0 failed, 0 skipped." in err

    project.write("s.yaml", _streams(tag, "2h"))
    code, _out, err = project.cli("apply", "--auto-approve", "-v", env=EVERY_CHANGE)
    assert code == 0, err
    assert sum(f"update: Stream {tag}_{i} ... done" in err for i in range(STREAMS)) == STREAMS
    assert "apply: 12/12 changes" in err


def test_apply_at_the_default_interval_prints_no_summary_for_a_short_run(
    nats_server: SingleServer, tmp_path: Path
) -> None:
    project = make_project(tmp_path, nats_server.url)
    project.write("s.yaml", _streams(unique_name("PQ", 5), "1h"))
    code, _out, err = project.cli("apply", "--auto-approve")
    assert code == 0, err
    lines = err.strip().splitlines()
    assert lines[-1] == "Apply complete: 12 done, 0 failed, 0 skipped.", err
    assert not any(line.startswith("apply: ") for line in lines)


def test_a_failed_apply_counts_failures_in_its_summary_and_lists_them_at_the_end(
    nats_server: SingleServer, tmp_path: Path
) -> None:
    """A create only the server refuses fails (a source whose origin, a stream no
    manifest declares, has a larger max_msg_size); its consumer is skipped; the summary
    lines count both, the closing lines name them."""
    tag = unique_name("PF", 5)
    origin = f"{tag}_ORIGIN"
    created = js_request_sync(
        nats_server.url,
        f"$JS.API.STREAM.CREATE.{origin}",
        {"name": origin, "subjects": [f"{tag.lower()}.origin.>"], "max_msg_size": 2048},
    )
    assert "error" not in created, created
    project = make_project(tmp_path, nats_server.url)
    bad = (
        f"---\napiVersion: jsops/v1\nkind: Stream\nmetadata: {{name: {tag}_X}}\n"
        f"spec: {{subjects: ['{tag.lower()}.x.>'], max_msg_size: 1024, "
        f"sources: [{{name: {origin}}}]}}\n"
        "---\napiVersion: jsops/v1\nkind: Consumer\n"
        f"metadata: {{name: c, stream: {tag}_X}}\nspec: {{}}\n"
    )
    project.write("s.yaml", _streams(tag, "1h") + bad)
    try:
        code, _out, err = project.cli("apply", "--auto-approve", env=EVERY_CHANGE)
    finally:
        js_request_sync(nats_server.url, f"$JS.API.STREAM.DELETE.{origin}")
    assert code == 1
    assert re.search(r"^apply: 14/14 changes, [\d.]+/s, 1 failed, 1 skipped$", err, re.M), err
    assert re.search(rf"^Stream {tag}_X: create failed: .*max message size", err, re.M), err
    assert f"Consumer {tag}_X/c: create skipped: Stream {tag}_X did not complete" in err
    assert "apply incomplete: 12 done, 1 failed, 1 skipped" in err
    assert " ... done" not in err and "Traceback" not in err


def test_the_bar_on_a_terminal_is_redrawn_in_place_and_cleared() -> None:
    screen = io.StringIO()
    bar = Progress("apply", 0, "changes", stream=screen, tty=True)
    bar.interval = 0
    bar.start(200)
    bar.update(50, note="1 failed")
    bar.update(100, note="1 failed")
    drawn = screen.getvalue()
    assert drawn.count("\r\x1b[2K") == 2 and "\n" not in drawn
    assert "[############------------]  50%" in drawn
    assert "apply: 100/200 changes" in drawn and "1 failed" in drawn
    bar.close()
    assert screen.getvalue().endswith("\r\x1b[2K")


def test_a_disabled_display_writes_nothing() -> None:
    screen = io.StringIO()
    bar = Progress("apply", 10, "changes", stream=screen, tty=True, enabled=False)
    bar.interval = 0
    bar.update(5)
    bar.close()
    assert screen.getvalue() == ""


def test_backup_and_restore_show_bytes(nats_server: SingleServer, tmp_path: Path) -> None:
    import asyncio

    import nats

    url = nats_server.url
    name = unique_name("PB")
    project = make_project(tmp_path, url)
    project.write(
        "s.yaml",
        f"apiVersion: jsops/v1\nkind: Stream\nmetadata: {{name: {name}}}\n"
        f"spec: {{subjects: ['{name.lower()}.>']}}\n",
    )
    assert project.cli("apply", "--auto-approve")[0] == 0

    async def fill() -> None:
        nc = await nats.connect(url)
        for i in range(50):
            await nc.request(f"{name.lower()}.x", bytes(range(256)) * 40 + bytes([i]))
        await nc.close()

    asyncio.run(fill())
    out = tmp_path / "b"
    code, _out, err = project.cli("backup", name, "--out", str(out), env=EVERY_CHANGE)
    assert code == 0, err
    assert re.search(rf"^backup {name}: [\d.]+(B|KiB|MiB), [\d.]+(B|KiB|MiB)/s$", err, re.M), err
    size = (out / name / "stream.tar.s2").stat().st_size
    from harness.servers import js_request_sync

    js_request_sync(url, f"$JS.API.STREAM.DELETE.{name}")
    code, _out, err = project.cli("restore", str(out / name), env=EVERY_CHANGE)
    assert code == 0, err
    assert f"restore {out / name!s}: {human_bytes(size)}/{human_bytes(size)}" in err, err


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (0, 1023, 1536, 5 * 1024**3)] == [
        "0B",
        "1023B",
        "1.5KiB",
        "5.0GiB",
    ]
