"""Stopping asyncio tasks for certain.

On Python 3.11 ``asyncio.wait_for`` loses a cancellation that arrives in the same loop
iteration as the result it waits for: it returns the result and the task goes on as
if it had never been cancelled (fixed in 3.12, cpython gh-86296). nats-py waits for
every request's reply with ``wait_for``, so a task cancelled just as its reply comes in
(an apply resumed after a stop reads all the replies it missed at once) keeps running;
cancelled once and awaited, a worker that then waits for more work never ends, and
neither does the apply. :func:`cancel_and_wait` cancels again until every task ended.

:func:`for_each` runs one coroutine per item with a fixed number of tasks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

RECANCEL_AFTER = 0.1  # seconds a cancelled task gets before it is cancelled again


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and return once every one of them has ended (their results and
    errors are dropped). A task that outlives its cancellation is cancelled again; if
    the caller is cancelled meanwhile, the tasks are still stopped first, then the
    cancellation goes on."""
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    interrupted = False
    while pending:
        for task in pending:
            task.cancel()
        try:
            _done, pending = await asyncio.wait(pending, timeout=RECANCEL_AFTER)
        except asyncio.CancelledError:
            interrupted = True  # asyncio.wait leaves them running: stop them first
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: never logged as "never retrieved"
    if interrupted:
        raise asyncio.CancelledError


async def for_each(
    items: Sequence[T], work: Callable[[T], Awaitable[None]], concurrency: int
) -> None:
    """Await ``work(item)`` for every item, at most ``concurrency`` at once.

    ``concurrency`` tasks take the items in turn, instead of one task per item waiting
    on a semaphore: a plan's read of 10,000 streams' consumers made 10,000 tasks (about
    20 MB and 0.1 s). The first error stops the other tasks, then is raised."""
    pending = iter(items)

    async def worker() -> None:
        for item in pending:  # one iterator, shared: each item is taken once
            await work(item)

    workers = [asyncio.ensure_future(worker()) for _ in range(min(len(items), concurrency))]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        await cancel_and_wait(workers)
        raise
