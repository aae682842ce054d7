"""Validated desired resources from manifest text, offline (no project, no server)."""

from __future__ import annotations

import textwrap

from reconciler.load import LoadResult, load_text, parse
from reconciler.models import Resource
from reconciler.validate import validate_loaded


def desired(text: str, env: str = "default") -> list[Resource]:
    """The resources of one manifest file ``m.yaml`` (dedented); fails on any problem."""
    source, problems = load_text("m.yaml", textwrap.dedent(text), {"env": env, "values": {}})
    assert source is not None and not problems, [str(p) for p in problems]
    docs, problems = parse(source)
    resources, problems = validate_loaded(LoadResult(docs, problems, [source]), env)
    assert not problems, [str(p) for p in problems]
    return resources
