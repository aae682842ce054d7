"""Parsing and validating a large repository in forked worker processes.

With no cache to use (a fresh CI runner, ``JSOPS_NO_CACHE=1``, a changed repository), a
plan of 40,000 documents spent 4.5 s of its 10 s parsing YAML and validating models in
one process while the second CPU and the server sat idle, and the parse's short-lived
nodes left the process 15 MB larger than a warm plan for the rest of the run.

Here the files are split into contiguous shares of about equal text, and each share is
parsed and validated in a forked copy of this process. A worker sends back its resources
in the validated cache's form (``reconciler.parse_cache``: rows of models, pickled in
chunks and read by the loader that builds nothing but jsops's data), which this process
makes into resources the way a warm plan does, in the files' order. The checks across
resources run here afterwards, as always.

Only a share without any problem is used: a worker that finds one (or fails in any way,
or is killed) makes the whole repository parse and validate again here, one file after
another, so what an error says, where, and in which order is always the one-process
path's. Workers run only where forking is safe: Linux, more than one CPU, and no other
thread running in this process (a thread could hold a lock the copy would wait on).

:func:`fork` (a copy of this process that writes its result to a pipe, then exits) is
also what checks a large plan file while the manifests are validated
(``reconciler.planfile.open_saved_plan``).

``JSOPS_PARSE_WORKERS``: ``auto`` (the default: up to :data:`MAX_WORKERS` for a
repository of at least :data:`MIN_TEXT` characters in two files or more) or a number
(``1``: never fork).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from functools import partial
from itertools import accumulate, pairwise
from typing import Any, BinaryIO

from reconciler.load import SourceFile
from reconciler.parse_cache import ParseCache, _dump, _unpickle

log = logging.getLogger(__name__)

MAX_WORKERS = 4  # the parent reads every worker's result alone: more rarely pays
MIN_TEXT = 128 * 1024  # characters of rendered YAML (about 1,000 documents) worth a fork


def worker_count(sources: Sequence[SourceFile]) -> int:
    """How many processes should parse and validate ``sources`` (1: this one alone)."""
    wanted = os.environ.get("JSOPS_PARSE_WORKERS", "auto").strip().lower() or "auto"
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    if wanted == "auto":
        if sum(len(s.rendered) for s in sources) < MIN_TEXT:
            return 1
        count = min(cpus, MAX_WORKERS)
    else:
        try:
            count = int(wanted)
        except ValueError:
            count = 1  # not a number: the safe choice, never an error for a tuning knob
    if not forkable():
        return 1
    return max(1, min(count, len(sources)))


def forkable() -> bool:
    """Whether a forked copy of this process is safe here: Linux, and no other thread
    running (a thread could hold a lock the copy would wait on forever)."""
    return sys.platform == "linux" and hasattr(os, "fork") and threading.active_count() == 1


def may_fork() -> bool:
    """Whether other work may run in a forked copy (:func:`fork`): where it is safe,
    unless ``JSOPS_PARSE_WORKERS`` is ``1`` (or ``0``): one process for everything."""
    return os.environ.get("JSOPS_PARSE_WORKERS", "").strip() not in ("0", "1") and forkable()


def shares(sources: Sequence[SourceFile], count: int) -> list[range]:
    """``count`` contiguous, non-empty ranges of ``sources`` (fewer when there are fewer
    files) whose texts are about equal: each ends at the file boundary nearest its part
    of the total."""
    count = max(1, min(count, len(sources)))
    ends = list(accumulate(len(s.rendered) for s in sources))  # text up to each file's end
    total = ends[-1] if ends else 0
    bounds = [0]
    for k in range(1, count):
        target = total * k / count
        j = bisect_left(ends, target) + 1  # the first boundary at or past the target
        if j > 1 and target - ends[j - 2] < ends[j - 1] - target:
            j -= 1  # the boundary before it is nearer
        # every share keeps at least one file, before and after this boundary
        bounds.append(min(max(j, bounds[-1] + 1), len(sources) - (count - k)))
    bounds.append(len(sources))
    return [range(a, b) for a, b in pairwise(bounds)]


# In a worker: the validated-cache rows of the files in a share of the sources (through
# the parse cache, not saved), or None when any of them has a problem.
ShareWork = Callable[[range], "list[Any] | None"]


def validate_in_workers(
    sources: list[SourceFile], cache: ParseCache, count: int, work: ShareWork
) -> list[Any] | None:
    """The validated-cache rows of every resource of ``sources``, in their order, made by
    ``work`` on ``count`` shares in forked processes; None when any of them found a
    problem or failed (validate again here: see the module docstring). The parse-cache
    entries the workers used or added are recorded in ``cache``."""
    started = time.perf_counter()
    children: list[tuple[int, BinaryIO]] = []
    rows: list[Any] = []
    ok = finished = False
    try:
        try:
            for share in shares(sources, count):
                children.append(fork(partial(_work, work, share, cache)))
            ok = True
        except OSError:  # no more processes or pipes allowed: validate here instead
            ok = False
        for _pid, pipe in children:
            if not ok:
                break
            found = _read(pipe)
            if found is None:
                ok = False
                continue
            used, added, share_rows = found
            cache.take(used, added)
            rows += share_rows
        finished = True
    finally:  # no worker outlives this call (an error here, Ctrl-C, one that failed)
        for pid, pipe in children:
            pipe.close()
            ok = reaped(pid, kill=not (ok and finished)) and ok
    log.info(
        "parsed and validated %d files in %d processes: %s (%.2f s)",
        len(sources),
        len(children),
        f"{len(rows)} resources" if ok else "validating again here",
        time.perf_counter() - started,
    )
    return rows if ok else None


def _read(pipe: BinaryIO) -> tuple[list[str], dict[str, str], list[Any]] | None:
    """One worker's result, or None when it found a problem or did not finish."""
    try:
        head = _unpickle(pipe)
        if not (isinstance(head, dict) and head.get("ok") is True):
            return None
        used, added = head["used"], head["added"]
        share_rows = _unpickle(pipe)
    except Exception:  # a worker that died mid-write: an incomplete pickle
        return None
    if not (
        isinstance(used, list)
        and all(isinstance(k, str) for k in used)
        and isinstance(added, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in added.items())
        and isinstance(share_rows, list)
    ):
        return None
    return used, added, share_rows


def fork(write: Callable[[BinaryIO], None]) -> tuple[int, BinaryIO]:
    """A forked copy of this process that runs ``write(out)`` (``out``: the write end of
    a pipe) and exits, 0 when it returned: (its pid, the pipe's read end), for
    :func:`reaped`. OSError when the system refuses a process or a pipe.

    The copy ends with ``os._exit``: nothing of the parent's (no exit handler, no buffered
    output) runs twice; Ctrl-C ends it at once, and the parent reports it."""
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        raise
    if pid == 0:
        code = 1
        try:
            os.close(read_end)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            with os.fdopen(write_end, "wb") as out:
                write(out)
            code = 0
        except BaseException:  # whatever happened, the parent does the work itself
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    return pid, os.fdopen(read_end, "rb")


def reaped(pid: int, *, kill: bool) -> bool:
    """Wait for worker ``pid`` (killed first with ``kill``); True if it exited with 0."""
    if kill:
        with contextlib.suppress(ProcessLookupError):  # it has already exited
            os.kill(pid, signal.SIGKILL)
    while True:
        try:
            _pid, status = os.waitpid(pid, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            return False
        return os.waitstatus_to_exitcode(status) == 0


def _work(work: ShareWork, share: range, cache: ParseCache, out: BinaryIO) -> None:
    """In a worker: ``work(share)``, and the parse-cache entries it used or added."""
    known = set(cache.entries)
    rows = work(share)
    if rows is None:
        _dump({"ok": False}, out)
        return
    added = cache.texts_added(known)
    _dump({"ok": True, "used": sorted(cache.used), "added": added}, out)
    _dump(rows, out)
