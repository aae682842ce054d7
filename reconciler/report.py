"""Validation results for programs: GitHub annotation lines and JSON.

``jsops validate --format github`` prints one workflow command per problem, which GitHub
Actions shows as an annotation on the file and line of a pull request::

    ::error file=manifests/orders.yaml,line=4,col=10,title=jsops (bad_duration)::max_age: ...

``--format json`` prints one object (keys are only ever added)::

    {"valid": false, "count": 1,
     "diagnostics": [{"file": "manifests/orders.yaml", "line": 4, "col": 10,
                      "code": "bad_duration", "message": "...", "hint": null,
                      "rendered": false}]}

A problem without a place (a bad ``--config`` path) has ``file`` null (GitHub: no
``file=``). No I/O here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from reconciler.errors import Diagnostic, JsopsError, Location, ManifestError
from reconciler.printable import terminal


def diagnostics_of(error: JsopsError) -> list[Diagnostic]:
    """The located diagnostics of ``error``; an error without them as one unlocated."""
    if isinstance(error, ManifestError):
        return list(error.diagnostics)
    return [Diagnostic(Location(""), line, code="error") for line in error.lines()]


def _message(diag: Diagnostic) -> str:
    text = diag.message
    if diag.hint:
        text += f" ({diag.hint})"
    if diag.location.rendered:
        text += " (line in rendered template)"
    return text


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def to_github(diagnostics: Sequence[Diagnostic]) -> str:
    """One ``::error ...::message`` workflow command per diagnostic."""
    lines = []
    for diag in diagnostics:
        loc = diag.location
        props = []
        if loc.file:
            props.append(f"file={_escape_property(loc.file)}")
            if loc.line:
                props.append(f"line={loc.line}")
                if loc.col:
                    props.append(f"col={loc.col}")
        props.append(f"title={_escape_property(f'jsops ({diag.code})')}")
        lines.append(f"::error {','.join(props)}::{_escape_data(_message(diag))}")
    return "".join(line + "\n" for line in lines)


def to_json(diagnostics: Sequence[Diagnostic]) -> str:
    items: list[dict[str, Any]] = [
        {
            "file": d.location.file or None,
            "line": d.location.line or None,
            "col": d.location.col or None,
            "code": d.code,
            "message": d.message,
            "hint": d.hint,
            "rendered": d.location.rendered,
        }
        for d in diagnostics
    ]
    body = {"valid": not items, "count": len(items), "diagnostics": items}
    return terminal(json.dumps(body, indent=2, ensure_ascii=False)) + "\n"  # C1, bidi: \u


RENDERERS = {"github": to_github, "json": to_json}
