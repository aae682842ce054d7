"""Apply: carry out a plan against the live server.

The plan given here has passed the refusal gate (``reconciler.refusals``, run once by
``api.apply`` on a plan made from a fresh live read); this module only executes it.

1. Deletes run first (consumers before their streams), then the other changes in
   dependency order (streams before their consumers, origins before the streams that
   read them), independent ones concurrently under a bound. A failed change skips
   its dependents; the others go on.
2. A run of identical failures (``FAILURE_RUN`` in a row with the same error, e.g. the
   server out of storage) stops the apply early: what was not started yet is reported
   as not attempted, instead of thousands of failures of the same kind.
3. With a backup folder (``apply --backup-dir``), the replace or delete of a stream or
   bucket that holds messages is preceded by a snapshot of it (``reconciler.backup``);
   if the snapshot fails, the change fails unmade and its dependents are skipped.
4. The result says what was done, what failed (with the server's error, identical
   errors shown a few times and then counted), what was skipped and not attempted, and
   which snapshots were saved.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from reconciler.backup import Archive, snapshot_before
from reconciler.buckets import stream_address
from reconciler.errors import ApiError, ApplyFailed, ErrCode, JsopsError
from reconciler.live import Connections, cluster_size_of
from reconciler.models import Kind
from reconciler.plan import Action, Change, Plan
from reconciler.tasks import cancel_and_wait

APPLY_CONCURRENCY = 128
FAILURE_RUN = 10  # identical failures in a row that stop an apply
SAME_FAILURES_SHOWN = 3  # lines per distinct error before "and N more"


class ApplyStatus(StrEnum):
    """How one change of an apply ended (``on_event``'s first argument)."""

    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"  # a change it depends on failed or was skipped
    NOT_ATTEMPTED = "not_attempted"  # the apply stopped early before starting it


OnEvent = Callable[[ApplyStatus, Change, str], None]
_UNFINISHED = (ApplyStatus.FAILED, ApplyStatus.SKIPPED, ApplyStatus.NOT_ATTEMPTED)


@dataclass
class _Brake:
    """Stops an apply after ``FAILURE_RUN`` failures in a row with the same error."""

    run: int = 0
    last: object = None
    stopped: str = ""

    def record(self, key: object, why: str) -> None:
        self.run = self.run + 1 if key == self.last else 1
        self.last = key
        if self.run >= FAILURE_RUN and not self.stopped:
            self.stopped = f"stopped after {self.run} failures in a row with the same error: {why}"

    def success(self) -> None:
        self.run, self.last = 0, None


@dataclass
class ApplyResult:
    """What happened to each pending change of a plan."""

    done: list[Change] = field(default_factory=list)
    failed: list[tuple[Change, str]] = field(default_factory=list)
    skipped: list[tuple[Change, str]] = field(default_factory=list)
    not_attempted: list[Change] = field(default_factory=list)
    stopped: str = ""  # why the apply stopped early, if it did
    backups: list[tuple[Change, Archive]] = field(default_factory=list)  # --backup-dir

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped and not self.not_attempted

    def summary(self) -> str:
        text = f"{len(self.done)} done, {len(self.failed)} failed, {len(self.skipped)} skipped"
        if self.not_attempted:
            text += f", {len(self.not_attempted)} not attempted"
        return text


async def _run_change(
    conns: Connections, change: Change, backup_dir: str | Path | None, result: ApplyResult
) -> None:
    address = change.address
    send = change.send or {}
    if address.kind == Kind.ACCOUNT:
        from reconciler.accounts.reconcile import apply_account

        system = await conns.system()
        await apply_account(conns, send, cluster_size_of(system) or 1)
        return
    client = await conns.client(address.account)
    if address.kind != Kind.CONSUMER:  # a stream, or a bucket (its KV_/OBJ_ stream)
        name = stream_address(address).name
        if backup_dir is not None:
            archive = await snapshot_before(client.nc, client.settings, change, backup_dir)
            if archive is not None:
                result.backups.append((change, archive))
        if change.action is Action.CREATE:
            await client.create_stream(send)
        elif change.action is Action.UPDATE:
            await client.update_stream(send)
        elif change.action is Action.REPLACE:
            await _ignore_missing(client.delete_stream(name))
            await client.create_stream(send)
        elif change.action is Action.DELETE:
            await _ignore_missing(client.delete_stream(name))
        return
    stream = address.stream or ""
    if change.action is Action.CREATE:
        await client.write_consumer(stream, send, "create")
    elif change.action is Action.UPDATE:
        await client.write_consumer(stream, send, "update")
        pause = next((d for d in change.diff if d.path == "pause_until"), None)
        if pause is not None:  # the server ignores pause_until on update
            await client.pause_consumer(stream, address.name, pause.after)
    elif change.action is Action.REPLACE:
        await _ignore_missing(client.delete_consumer(stream, address.name))
        await client.write_consumer(stream, send, "create")
    elif change.action is Action.DELETE:
        await _ignore_missing(client.delete_consumer(stream, address.name))


async def _ignore_missing(request: Awaitable[object]) -> None:
    """A delete of something already gone (e.g. a consumer of a deleted stream) is done."""
    try:
        await request
    except ApiError as exc:
        if exc.err_code not in (ErrCode.STREAM_NOT_FOUND, ErrCode.CONSUMER_NOT_FOUND):
            raise


async def apply_plan(
    plan: Plan,
    conns: Connections,
    *,
    concurrency: int = APPLY_CONCURRENCY,
    on_event: OnEvent | None = None,
    guard: Callable[[], Awaitable[None]] | None = None,
    backup_dir: str | Path | None = None,
) -> ApplyResult:
    """Carry out ``plan`` (already past the refusal gate); raise ApplyFailed when some
    change failed or was skipped.

    ``guard`` is awaited before each write (the apply lock's ``Lease.ensure``): an
    error it raises fails that change instead of writing it. With ``backup_dir``, a
    stream or bucket about to be replaced or deleted is snapshotted into it first when
    it holds messages (``result.backups``)."""
    pending = plan.pending()
    result = ApplyResult()
    outcome: dict[str, ApplyStatus] = {}
    # Deletes first (consumers before their streams, through depends_on), so that a
    # stream renamed in the manifests frees its subjects before its successor is created.
    deletes = [c for c in pending if c.action is Action.DELETE]
    others = [c for c in pending if c.action is not Action.DELETE]
    brake = _Brake()
    for phase in (deletes, others):
        if phase:
            await _run_phase(
                phase, conns, result, outcome, concurrency, on_event, brake, guard, backup_dir
            )
    result.stopped = brake.stopped
    if not result.ok:
        raise _failure(plan, result)
    return result


async def _run_phase(
    phase: list[Change],
    conns: Connections,
    result: ApplyResult,
    outcome: dict[str, ApplyStatus],
    concurrency: int,
    on_event: OnEvent | None,
    brake: _Brake | None = None,
    guard: Callable[[], Awaitable[None]] | None = None,
    backup_dir: str | Path | None = None,
) -> None:
    """Run changes as soon as what they depend on is done, ``concurrency`` at a time.

    A fixed pool of workers takes ready changes from a queue (no task per change, so
    40,000 changes cost 128 coroutines); a change whose dependency failed or was
    skipped is skipped, and so are its own dependents.
    """
    brake = brake or _Brake()
    # Changes are numbered: each one's key (its address as text) is made once here,
    # not several times per change as it is settled, released and counted.
    keys = [c.key for c in phase]
    number = {key: i for i, key in enumerate(keys)}
    waiting = [0] * len(phase)
    dependents: dict[int, list[int]] = {}
    queue: asyncio.Queue[int] = asyncio.Queue()
    all_settled = asyncio.Event()
    settled = 0

    def settle(i: int, status: ApplyStatus, why: str = "") -> None:
        nonlocal settled
        change = phase[i]
        outcome[keys[i]] = status
        if status is ApplyStatus.DONE:
            result.done.append(change)
        elif status is ApplyStatus.FAILED:
            result.failed.append((change, why))
        elif status is ApplyStatus.NOT_ATTEMPTED:
            result.not_attempted.append(change)
        else:
            result.skipped.append((change, why))
        if on_event:
            on_event(status, change, why)
        settled += 1
        if settled == len(phase):
            all_settled.set()
        for child in dependents.pop(i, ()):
            waiting[child] -= 1
            if waiting[child] == 0 and keys[child] not in outcome:
                release(child)

    def release(i: int) -> None:
        depends_on = phase[i].depends_on
        blocked = [d for d in depends_on if outcome.get(d) in _UNFINISHED] if depends_on else ()
        if blocked:
            settle(i, ApplyStatus.SKIPPED, f"{', '.join(blocked)} did not complete")
        else:
            queue.put_nowait(i)

    for i, change in enumerate(phase):
        deps = {number[d] for d in change.depends_on if d in number} - {i}
        waiting[i] = len(deps)
        for dep in deps:
            dependents.setdefault(dep, []).append(i)
    stuck = _in_cycles(waiting, dependents)
    # (the ready ones are listed first: a change skipped here releases its dependents
    # itself, which must not be released a second time by this loop)
    for i in [i for i, count in enumerate(waiting) if count == 0]:
        if keys[i] not in outcome:
            release(i)
    for i in stuck:  # never expected; without this a cycle would hang the run
        if keys[i] not in outcome:
            settle(i, ApplyStatus.SKIPPED, "its dependencies form a cycle")

    async def worker() -> None:
        while True:
            i = await queue.get()
            if brake.stopped:
                settle(i, ApplyStatus.NOT_ATTEMPTED, brake.stopped)
                continue
            try:
                if guard is not None:
                    await guard()
                await _run_change(conns, phase[i], backup_dir, result)
            except JsopsError as exc:
                code = exc.err_code if isinstance(exc, ApiError) else 0
                brake.record(code or str(exc), str(exc))
                settle(i, ApplyStatus.FAILED, str(exc))
            else:
                brake.success()
                settle(i, ApplyStatus.DONE)

    workers = [asyncio.create_task(worker()) for _ in range(min(concurrency, len(phase)))]
    try:
        await all_settled.wait()
    finally:  # a worker whose cancellation was lost would wait for work forever
        await cancel_and_wait(workers)


def _in_cycles(waiting: list[int], dependents: dict[int, list[int]]) -> list[int]:
    """The changes (numbers) that can never become ready (Kahn's algorithm on a copy)."""
    counts = list(waiting)
    ready = [i for i, count in enumerate(counts) if count == 0]
    reached = 0
    while ready:
        i = ready.pop()
        reached += 1
        for child in dependents.get(i, ()):
            counts[child] -= 1
            if counts[child] == 0:
                ready.append(child)
    if reached == len(counts):
        return []
    return [i for i, count in enumerate(counts) if count > 0]


def backup_line(change: Change, archive: Archive) -> str:
    """``Stream ORDERS: snapshot before the replace saved to backups/ORDERS (50 messages)``."""
    return (
        f"{change.address}: snapshot before the {change.action.value} saved to "
        f"{archive.directory} ({archive.messages} message(s), last sequence {archive.last_seq})"
    )


def _failure(plan: Plan, result: ApplyResult) -> ApplyFailed:
    """One line per failed or skipped change (a few per identical error, then a count),
    then what was not attempted and what was done, in plan order."""
    order = {c.key: i for i, c in enumerate(plan.changes)}
    lines: list[str] = []
    shown: Counter[str] = Counter()
    for c, why in sorted(result.failed, key=lambda item: order[item[0].key]):
        shown[why] += 1
        if shown[why] <= SAME_FAILURES_SHOWN:
            lines.append(f"{c.address}: {c.action.value} failed: {why}")
    lines += [
        f"... and {count - SAME_FAILURES_SHOWN} more failed: {why}"
        for why, count in shown.items()
        if count > SAME_FAILURES_SHOWN
    ]
    lines += [
        f"{c.address}: {c.action.value} skipped: {why}"
        for c, why in sorted(result.skipped, key=lambda item: order[item[0].key])
    ]
    if result.not_attempted:
        lines.append(
            f"{len(result.not_attempted)} change(s) not attempted: the apply {result.stopped}"
        )
    done = sorted(result.done, key=lambda c: order[c.key])
    lines.append(f"done: {', '.join(f'{c.action.value} {c.address}' for c in done) or 'nothing'}")
    lines += [backup_line(c, archive) for c, archive in result.backups]
    lines.append(f"apply incomplete: {result.summary()}")
    return ApplyFailed("\n".join(lines))
