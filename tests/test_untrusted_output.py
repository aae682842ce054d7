"""What others wrote never drives the terminal, a CI log or a PR comment, and a pull
request's manifests cannot make jsops read files outside the project.

Stream names, metadata keys and the lock holder come from the server (anyone who may
create a stream or publish to ``$KV.jsops_lock``), file names from pull requests, plan
files from anywhere. jsops prints them, escaped (``reconciler.printable``): a control
character as its JSON escape, a newline as ``\\n``, markdown in a code span that it
cannot close. The PR comment is checked as GitHub shows it: rendered by a CommonMark
parser with GitHub's tables, raw HTML allowed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from harness.manifests import stream_doc
from harness.project import make_project
from harness.servers import SingleServer, js_request_sync, unique_name
from markdown_it import MarkdownIt

from reconciler import lock

ESCAPES = "\x1b]0;pwned\x07\x1b[2J"  # sets the terminal's title, clears the screen
BREAKOUT = "x` | **PWNED** [click](https://evil.example/p) <img src=https://evil.example/t.png> `y"


def _raw_escapes(text: str) -> list[str]:
    return [c for c in text if c in "\x1b\x07\x9b\r" or "\u202a" <= c <= "\u202e"]


def _rendered(markdown: str) -> str:
    return MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)


def test_names_keys_and_values_from_the_server_are_escaped_in_every_plan_format(
    nats_server: SingleServer, tmp_path: Path
) -> None:
    """A live stream this project owns has escapes in a metadata key and markdown in its
    description; another has escapes in its name. Text and markdown plans show them
    escaped, and the PR comment renders the description as code, not as a link, an
    image or bold text, with every diff row still three cells."""
    url = nats_server.url
    project = make_project(tmp_path, url)
    name = unique_name("INJ")
    owner = {"jsops.owner": project.name}
    created = js_request_sync(
        url,
        f"$JS.API.STREAM.CREATE.{name}",
        {
            "name": name,
            "subjects": [f"{name.lower()}.>"],
            "description": BREAKOUT,
            "metadata": {**owner, f"k{ESCAPES}| `<!--": "v"},
        },
    )
    assert "error" not in created, created
    evil = unique_name("EVIL") + ESCAPES
    made = js_request_sync(
        url,
        f"$JS.API.STREAM.CREATE.{evil}",
        {"name": evil, "subjects": [f"{unique_name('ev').lower()}.>"], "metadata": owner},
    )
    assert "error" not in made, made  # the server takes ESC and BEL in a name
    project.write("s.yaml", stream_doc(name, description="clean"))

    code, out, err = project.cli("plan", "--prune")
    assert code == 0, err
    assert _raw_escapes(out + err) == []
    assert f"{evil[: -len(ESCAPES)]}\\u001b]0;pwned\\u0007\\u001b[2J" in out  # shown, escaped
    assert any(line.strip().startswith("metadata.k\\u001b]0;") for line in out.splitlines())

    code, out, err = project.cli("plan", "--prune", "--format", "markdown")
    assert code == 0, err
    assert _raw_escapes(out) == []
    html = _rendered(out)
    assert "<img" not in html and "<a " not in html and "<strong>PWNED" not in html
    assert "<!--" not in html
    assert "<code>&quot;x` | **PWNED** [click](https://evil.example/p)" in html
    diff_rows = [row for row in html.split("<tr>") if "metadata.k" in row or "description" in row]
    assert diff_rows and all(row.count("<td>") == 3 for row in diff_rows), diff_rows

    # export writes the evil name's file without its control characters
    code, out, err = project.cli("export", "--out", str(tmp_path / "exported"))
    assert code == 0, err
    names = [p.name for p in (tmp_path / "exported").iterdir()]
    assert any(n.startswith(evil[: -len(ESCAPES)]) for n in names), names
    assert [n for n in names if _raw_escapes(n)] == []


def test_json_output_escapes_c1_and_bidi_controls_and_keeps_the_values(
    nats_server: SingleServer, tmp_path: Path
) -> None:
    """JSON escapes C0 controls itself but not C1 (``\\x9b`` is a CSI on some terminals),
    DEL or the bidi overrides: jsops's JSON (plan, status, plan files) writes those as ``\\u``
    escapes too, and the document still reads back to the same names and values."""
    url = nats_server.url
    project = make_project(tmp_path, url)
    name = unique_name("C1")
    description = "safe\x9b2J\u202eevil\x7f"
    owner = {"jsops.owner": project.name}
    made = js_request_sync(
        url,
        f"$JS.API.STREAM.CREATE.{name}",
        {
            "name": name,
            "subjects": [f"{name.lower()}.>"],
            "description": description,
            "metadata": owner,
        },
    )
    assert "error" not in made, made
    project.write("s.yaml", stream_doc(name, description="clean"))
    code, out, err = project.cli("plan", "--format", "json")
    assert code == 0, err
    assert _raw_escapes(out) == [] and "\x7f" not in out
    (change,) = [c for c in json.loads(out)["changes"] if c["name"] == name]
    assert [d["before"] for d in change["diff"] if d["path"] == "description"] == [description]


def test_a_planted_lock_holder_is_shown_on_one_line_without_escapes(
    nats_server: SingleServer, tmp_path: Path
) -> None:
    """Anyone who may publish to ``$KV.jsops_lock`` writes who holds the lock; apply names
    that holder. Its escapes and newlines (a forged second line) come out escaped."""
    url = nats_server.url
    project = make_project(tmp_path, url)
    name = unique_name("LKX")
    project.write("s.yaml", stream_doc(name))
    code, _out, err = project.cli("apply", "--auto-approve")  # makes the lock bucket
    assert code == 0, err
    holder = {
        "user": f"mallory{ESCAPES}\n::notice title=ok::all good",
        "host": "h\x1b[31mred",
        "pid": 1,
        "started": "now",
        "ttl": 60,
    }
    key = lock.lock_key(project.name, "test")
    ack = js_request_sync(url, f"$KV.jsops_lock.{key}", json.dumps(holder).encode())  # type: ignore[arg-type]
    assert "error" not in ack, ack
    project.write("s.yaml", stream_doc(name, description="changed"))

    code, _out, err = project.cli("apply", "--auto-approve")
    assert code == 1
    assert _raw_escapes(err) == []
    [line] = [line for line in err.splitlines() if "locked by another apply" in line]
    assert "mallory\\u001b]0;pwned\\u0007\\u001b[2J\\n::notice title=ok::all good@h" in line
    assert not any(line.startswith("::") for line in err.splitlines())


def test_a_file_name_with_a_newline_cannot_start_a_line_of_the_ci_log(
    nats_server: SingleServer, tmp_path: Path
) -> None:
    """A pull request adds ``x\\n::notice ...::.yaml`` with an error in it: each problem is
    still one line, starting with the escaped file name, in every output format."""
    project = make_project(tmp_path, nats_server.url)
    bad = "x\n::notice title=fake::all good\x1b]0;t\x07.yaml"
    project.write(bad, stream_doc("BAD", max_age="soon"))
    for fmt in ("text", "github", "json"):
        code, out, err = project.cli("validate", "--format", fmt)
        assert code == 1, (fmt, out, err)
        assert _raw_escapes(out + err) == [], fmt
        lines = (out + err).splitlines()
        assert not any(line.startswith("::notice") for line in lines), (fmt, lines)
    assert "manifests/x\\n::notice title=fake::all good\\u001b]0;t\\u0007.yaml:4:" in err


@pytest.mark.parametrize("fmt", ["text", "markdown"])
def test_a_plan_file_from_anywhere_is_shown_escaped(tmp_path: Path, fmt: str) -> None:
    """``jsops show`` of a plan file someone else wrote: its names, diff paths and
    unmanaged entries are escaped, in text and in the PR comment."""
    path = tmp_path / "esc.json"
    path.write_text(
        json.dumps(
            {
                "format_version": 1,
                "project": "p",
                "environment": "e",
                "server_version": "2.15.1",
                "api_level": 3,
                "changes": [
                    {
                        "kind": "Stream",
                        "name": "A\x1b]0;x\x07",
                        "action": "update",
                        "diff": [{"path": "desc\x1b[2J\n::x", "before": "a", "after": "b"}],
                    }
                ],
                "unmanaged": ["Stream \x1b]8;;https://evil.example\x07link"],
            }
        )
    )
    code, out, err = _show(path, fmt)
    assert code == 0, err
    assert _raw_escapes(out + err) == []
    assert "A\\u001b]0;x\\u0007" in out and "desc\\u001b[2J\\n::x" in out
    assert "\\u001b]8;;https://evil.example\\u0007link" in out


def _show(path: Path, fmt: str) -> tuple[int, str, str]:
    from harness.project import run_cli

    return run_cli(["show", str(path), "--format", fmt], cwd=path.parent)


def test_a_symlink_out_of_the_project_is_never_read(
    nats_server: SingleServer, tmp_path: Path
) -> None:
    """A pull request adds ``manifests/creds.yaml -> ~/creds`` (CI renders it next to the
    production credentials): validate, plan and fmt name the link as an error, never
    open what it leads to, and send nothing. A link to a file inside the project is
    read as the file."""
    from harness import JsWriteCounter

    project = make_project(tmp_path, nats_server.url)
    secret = tmp_path / "outside" / "admin.creds"
    secret.parent.mkdir()
    secret.write_text("apiVersion: SECRET-TOKEN-abc123\nkind: Creds\n")
    shared = project.root / "shared" / "orders.yaml"
    shared.parent.mkdir()
    name = unique_name("LNK")
    shared.write_text(stream_doc(name))
    (project.root / "manifests" / "creds.yaml").symlink_to(secret)
    (project.root / "manifests" / "orders.yaml").symlink_to(shared)

    for command in (["validate"], ["plan"], ["fmt", "--check"]):
        with JsWriteCounter(nats_server.url) as counter:
            code, out, err = project.cli(*command)
        assert code == 1, (command, out, err)
        assert counter.writes == [] and counter.requests == [], command
        assert "manifests/creds.yaml: is a symbolic link that leads outside the project" in err
        assert "SECRET" not in out + err and "Creds" not in out + err
        assert "orders.yaml" not in err, err  # the link inside the project is fine

    (project.root / "manifests" / "creds.yaml").unlink()
    code, out, err = project.cli("plan")
    assert code == 0, err
    assert f"+ Stream {name}" in out
    assert secret.read_text().startswith("apiVersion: SECRET")  # fmt wrote nothing there
