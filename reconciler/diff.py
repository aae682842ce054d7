"""Field-level differences between two canonical configs.

Deciding *whether* a resource changed is a plain ``==`` on canonical dicts (cheap);
this walk runs only for resources that differ, to say *what* changed. Paths are
dotted JetStream API field paths (``sources.0.filter_subject``); lists of scalars
(``subjects``, ``backoff``) are reported whole, as the server stores them in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class FieldDiff:
    """One changed field: ``before`` is live, ``after`` is desired, both in API units."""

    path: str
    before: Any
    after: Any

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "before": self.before, "after": self.after}


def diff_config(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[FieldDiff]:
    out: list[FieldDiff] = []
    _walk((), before or {}, after or {}, out)
    return out


def _walk(path: tuple[str, ...], before: Any, after: Any, out: list[FieldDiff]) -> None:
    if before == after:
        return
    if isinstance(before, dict) and isinstance(after, dict):
        keys = list(after) + [k for k in before if k not in after]
        for key in keys:
            _walk((*path, str(key)), before.get(key), after.get(key), out)
        return
    if (
        isinstance(before, list)
        and isinstance(after, list)
        and len(before) == len(after)
        and all(isinstance(x, dict) for x in before + after)
    ):
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            _walk((*path, str(i)), b, a, out)
        return
    out.append(FieldDiff(".".join(path), before, after))
