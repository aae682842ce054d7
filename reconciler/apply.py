"""Apply: carry out a plan against the live server.

1. Refusals are checked for the whole plan before the first write: a replace needs
   ``allow_replace``, a delete needs ``prune``, and ``prevent_destroy`` refuses both.
   Every refusal is reported, with what would be lost; nothing is written.
2. A saved plan is re-checked: every resource it changes is read again and its
   fingerprint compared with the one recorded at plan time; any difference refuses
   the whole plan.
3. Changes run in dependency order (streams before their consumers, origins before
   the streams that read them, deletes in reverse), independent ones concurrently
   under a bound. A failed change skips its dependents; the others go on.
4. The result says what was done, what failed (with the server's error) and what
   was skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reconciler.errors import ApiError, ApplyFailed, ApplyRefused, JsopsError, StalePlanError
from reconciler.live import JetStreamClient
from reconciler.normalize import canonical_consumer, canonical_stream, fingerprint
from reconciler.plan import Action, Change, Plan

APPLY_CONCURRENCY = 32


@dataclass
class ApplyResult:
    """What happened to each pending change of a plan."""

    done: list[Change] = field(default_factory=list)
    failed: list[tuple[Change, str]] = field(default_factory=list)
    skipped: list[tuple[Change, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped

    def summary(self) -> str:
        return f"{len(self.done)} done, {len(self.failed)} failed, {len(self.skipped)} skipped"


def _loss_text(change: Change) -> str:
    if not change.loss:
        return ""
    parts = [f"{k.replace('_', ' ')} {v}" for k, v in change.loss.items() if v]
    return f" (would lose: {', '.join(parts)})" if parts else ""


def check_refusals(plan: Plan, *, allow_replace: bool, prune: bool) -> list[str]:
    """Every reason to refuse the plan before writing anything."""
    problems: list[str] = []
    for change in plan.pending():
        where = f"{change.location}: " if change.location else ""
        if change.action in (Action.REPLACE, Action.DELETE) and change.prevent_destroy:
            problems.append(
                f"{where}{change.address}: {change.action.value} refused by prevent_destroy"
                + _loss_text(change)
            )
        elif change.action is Action.REPLACE and not allow_replace:
            why = "; ".join(change.replace_reasons) or "a stream it belongs to is replaced"
            problems.append(
                f"{where}{change.address}: replace needs --allow-replace ({why})"
                + _loss_text(change)
            )
        elif change.action is Action.DELETE and not prune:
            problems.append(f"{change.address}: delete needs --prune" + _loss_text(change))
    return problems


async def find_stale(plan: Plan, client: JetStreamClient) -> list[str]:
    """Resources whose live config changed since the plan was made (re-read one by one)."""

    async def check(change: Change) -> str | None:
        address = change.address
        if address.kind == "Stream":
            info = await client.stream_info(address.name)
            digest = fingerprint(canonical_stream(info["config"])) if info else None
        else:
            info = await client.consumer_info(address.stream or "", address.name)
            digest = None
            if info:
                stream = await client.stream_info(address.stream or "")
                parent = canonical_stream(stream["config"]) if stream else None
                digest = fingerprint(canonical_consumer(info["config"], parent))
        if change.action is Action.CREATE:
            return f"{address}: now exists (planned as create)" if info else None
        if digest != change.live_digest:
            return (
                f"{address}: changed since the plan was made"
                if info
                else (f"{address}: no longer exists")
            )
        return None

    results = await asyncio.gather(*(check(c) for c in plan.pending()))
    return [r for r in results if r]


async def _run_change(client: JetStreamClient, change: Change) -> None:
    address = change.address
    send = change.send or {}
    if address.kind == "Stream":
        if change.action is Action.CREATE:
            await client.create_stream(send)
        elif change.action is Action.UPDATE:
            await client.update_stream(send)
        elif change.action is Action.REPLACE:
            await _ignore_missing(client.delete_stream(address.name))
            await client.create_stream(send)
        elif change.action is Action.DELETE:
            await _ignore_missing(client.delete_stream(address.name))
        return
    stream = address.stream or ""
    if change.action is Action.CREATE:
        await client.write_consumer(stream, send, "create")
    elif change.action is Action.UPDATE:
        await client.write_consumer(stream, send, "update")
    elif change.action is Action.REPLACE:
        await _ignore_missing(client.delete_consumer(stream, address.name))
        await client.write_consumer(stream, send, "create")
    elif change.action is Action.DELETE:
        await _ignore_missing(client.delete_consumer(stream, address.name))


async def _ignore_missing(request: Any) -> None:
    """A delete of something already gone (e.g. a consumer of a deleted stream) is done."""
    try:
        await request
    except ApiError as exc:
        if exc.err_code not in (10059, 10014):
            raise


async def apply_plan(
    plan: Plan,
    client: JetStreamClient,
    *,
    allow_replace: bool = False,
    prune: bool = False,
    check_stale: bool = True,
    concurrency: int = APPLY_CONCURRENCY,
    on_event: Callable[[str, Change, str], None] | None = None,
) -> ApplyResult:
    """Apply ``plan``; raise ApplyRefused/StalePlanError before writing, ApplyFailed after."""
    refusals = check_refusals(plan, allow_replace=allow_replace, prune=prune)
    if refusals:
        raise ApplyRefused("apply refused, nothing was changed:\n" + "\n".join(refusals))
    if check_stale:
        stale = await find_stale(plan, client)
        if stale:
            raise StalePlanError(
                "the plan is stale, nothing was changed (plan again):\n" + "\n".join(stale)
            )
    pending = plan.pending()
    result = ApplyResult()
    finished: dict[str, asyncio.Event] = {c.key: asyncio.Event() for c in pending}
    succeeded: set[str] = set()
    semaphore = asyncio.Semaphore(concurrency)

    async def run(change: Change) -> None:
        try:
            for dep in change.depends_on:
                if dep in finished:
                    await finished[dep].wait()
            failed_deps = [d for d in change.depends_on if d in finished and d not in succeeded]
            if failed_deps:
                why = f"depends on {', '.join(failed_deps)}, which did not complete"
                result.skipped.append((change, why))
                if on_event:
                    on_event("skipped", change, why)
                return
            async with semaphore:
                try:
                    await _run_change(client, change)
                except JsopsError as exc:
                    result.failed.append((change, str(exc)))
                    if on_event:
                        on_event("failed", change, str(exc))
                    return
            succeeded.add(change.key)
            result.done.append(change)
            if on_event:
                on_event("done", change, "")
        finally:
            finished[change.key].set()

    await asyncio.gather(*(run(c) for c in pending))
    if not result.ok:
        lines = [f"{c.address}: {c.action.value} failed: {why}" for c, why in result.failed]
        lines += [f"{c.address}: {c.action.value} skipped: {why}" for c, why in result.skipped]
        lines.append(f"apply incomplete: {result.summary()}")
        done = ", ".join(f"{c.action.value} {c.address}" for c in result.done)
        lines.append(f"done: {done or 'nothing'}")
        error = ApplyFailed("\n".join(lines))
        error.result = result  # type: ignore[attr-defined]
        raise error
    return result
