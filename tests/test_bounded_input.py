"""Bounded input: hostile or broken files end as located errors, fast, in bounded memory.

Alias bombs, deep nesting and invalid UTF-8 in manifests and in ``jsops.yaml``, and
credentials files of the wrong kind: each is one clear line (``file:line:col`` for
YAML), exit 1, never ``internal error``, and nothing reaches the server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from harness.project import make_project
from harness.servers import JsWriteCounter, SingleServer

from reconciler.accounts.jwt import NKey

JSOPS = [sys.executable, "-m", "reconciler"]
MEMORY_LIMIT = 500 * 1024 * 1024  # bytes: the bound for any input under 1 MB
# Run jsops as the only child of a small wrapper, under an address-space limit (so a
# regression fails with MemoryError instead of eating the shared machine), and report
# the child's peak RSS (ru_maxrss, KiB on Linux) on the wrapper's last output line.
WRAPPER = textwrap.dedent(
    """
    import resource, subprocess, sys
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (2 * 1024 ** 3, 2 * 1024 ** 3))
    run = subprocess.run(sys.argv[1:], capture_output=True, text=True, preexec_fn=limit)
    sys.stdout.write(run.stdout)
    sys.stderr.write(run.stderr)
    print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    sys.exit(run.returncode)
    """
)


def billion_laughs(levels: int = 8, fanout: int = 9) -> str:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    names = "abcdefghijklmnopqrstuvwxyz"
    for level in range(1, levels + 1):
        name, prev = names[level], names[level - 1]
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * fanout) + "]")
    return "\n".join(lines) + "\n"


def run_measured(args: list[str], cwd: Path) -> tuple[int, str, str, float, int]:
    """(exit code, stdout, stderr, seconds, peak RSS in bytes) of ``jsops ARGS``."""
    env = {**os.environ, "NO_COLOR": "1"}
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", WRAPPER, *JSOPS, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    elapsed = time.monotonic() - start
    *out_lines, rss = proc.stdout.splitlines()
    return proc.returncode, "\n".join(out_lines), proc.stderr, elapsed, int(rss) * 1024


def test_billion_laughs_fails_fast_in_bounded_memory(tmp_path: Path) -> None:
    text = billion_laughs()
    assert len(text.encode()) < 500  # 9**8 = 43 million strings once expanded
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "bomb.yaml").write_text(text)
    code, out, err, elapsed, rss = run_measured(["validate"], tmp_path)
    assert code == 1, err
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("manifests/bomb.yaml:"), err
    assert "aliases expand" in lines[0], err
    assert rss < MEMORY_LIMIT, f"peak RSS {rss / 2**20:.0f} MiB"
    assert elapsed < 30, f"took {elapsed:.1f}s"


def _deep_flow(n: int = 10_000) -> str:
    return "a: " + "[" * n + "]" * n + "\n"


BAD_TEXTS: dict[str, tuple[bytes, str]] = {
    # name -> (file content, expected message after "file:line:col: ")
    "deep-flow": (_deep_flow().encode(), "YAML nesting is deeper than 64 levels"),
    "deep-unclosed": (b"a: " + b"[" * 10_000 + b"\n", "YAML nesting is deeper than 64 levels"),
    "deep-compact": (b"- " * 200_000 + b"x\n", "YAML nesting is deeper than 64 levels"),
    "deep-block": (
        "".join(" " * i + "a:\n" for i in range(200)).encode(),
        "YAML nesting is deeper than 64 levels",
    ),
    "recursive-alias": (b"a: &a [1, *a]\n", "a YAML alias refers to a node that contains it"),
    "bad-utf8": (
        b"apiVersion: jsops/v1\nkind: Stream\nmetadata: {name: \xff\xfe}\n",
        "invalid UTF-8",
    ),
}


@pytest.mark.parametrize("case", list(BAD_TEXTS))
def test_bad_manifest_text_is_located(case: str, tmp_path: Path, nats_server: SingleServer) -> None:
    content, message = BAD_TEXTS[case]
    proj = make_project(tmp_path, nats_server.url)
    (proj.root / "manifests" / "bad.yaml").write_bytes(content)
    with JsWriteCounter(nats_server.url) as counter:
        for command in (["validate"], ["plan"]):
            code, out, err = proj.cli(*command)
            assert code == 1 and out == "", (out, err)
            lines = err.strip().splitlines()
            assert len(lines) == 1, err
            head, _, text = lines[0].partition(": ")
            assert head.startswith("manifests/bad.yaml:") and head.count(":") == 2, err
            assert text.startswith(message), err
    assert counter.requests == []


@pytest.mark.parametrize("case", list(BAD_TEXTS))
def test_bad_project_file_is_located(case: str, tmp_path: Path) -> None:
    content, message = BAD_TEXTS[case]
    if case == "bad-utf8":
        content = b"project: caf\xe9\n"
    elif case == "deep-block":
        content = b"project: p\nx:\n" + b"".join(b" " * (i + 1) + b"a:\n" for i in range(200))
    elif case != "deep-compact":  # a mapping that holds the bad value
        content = b"project: p\nenvironments:\n  dev:\n    values:\n      v: " + content.replace(
            b"\n", b"\n        "
        ).replace(b"a: ", b"", 1)
    (tmp_path / "jsops.yaml").write_bytes(content)
    code, out, err, _elapsed, _rss = run_measured(["validate"], tmp_path)
    assert code == 1 and out == "", err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    head, _, text = lines[0].partition(": ")
    assert head.startswith("jsops.yaml:") and head.count(":") == 2, err
    assert text.startswith(message), err


SEED = NKey.generate("user").seed_text()
ACCOUNT_SEED = NKey.generate("account").seed_text()
CREDS = f"""-----BEGIN NATS USER JWT-----
eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.c2ln
------END NATS USER JWT------

-----BEGIN USER NKEY SEED-----
{SEED}
------END USER NKEY SEED------
"""

CREDS_CASES: dict[str, tuple[str, bytes, str]] = {
    # name -> (setting, file content, expected words)
    "creds-is-a-seed": ("creds", f"{SEED}\n".encode(), "use `nkey:` for a seed file"),
    "creds-is-garbage": ("creds", b"hello\nworld\n", "not a creds file"),
    "creds-is-binary": ("creds", b"\xff\xfe\x00\x01", "not UTF-8 text"),
    "creds-seed-only-block": (
        "creds",
        CREDS.split("\n\n", 1)[1].encode(),
        "not a creds file",
    ),
    "nkey-is-a-creds-file": ("nkey", CREDS.encode(), "use `creds:` for it"),
    "nkey-is-an-account-seed": ("nkey", ACCOUNT_SEED.encode(), "not a user seed"),
    "nkey-is-garbage": ("nkey", b"SUAXXXX\n", "invalid nkey seed"),
}


@pytest.mark.parametrize("case", list(CREDS_CASES))
def test_wrong_credentials_file_says_what_is_wrong(
    case: str, tmp_path: Path, nats_server: SingleServer
) -> None:
    setting, content, words = CREDS_CASES[case]
    path = tmp_path / "user.file"
    path.write_bytes(content)
    proj = make_project(
        tmp_path, nats_server.url, envs={"test": {"servers": [nats_server.url], setting: str(path)}}
    )
    with JsWriteCounter(nats_server.url) as counter:
        code, out, err = proj.cli("plan")
    assert code == 1 and out == "", err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{setting} file {path} "), err
    assert words in lines[0], err
    assert "internal error" not in err and "Traceback" not in err
    assert SEED not in err and ACCOUNT_SEED not in err and "hello" not in err
    assert counter.requests == []
