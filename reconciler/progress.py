"""Progress of long runs (apply, backup, restore) on stderr.

On a terminal: one bar redrawn in place (counts, rate, what failed so far), at most
``REDRAW`` times a second, cleared when the run ends. Elsewhere (CI logs, pipes): one
summary line every ``interval`` seconds (``$JSOPS_PROGRESS_INTERVAL``, default
``INTERVAL``), nothing for a run that ends before the first one is due. The lines
about each resource are the caller's, under ``-v``.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

from reconciler.printable import one_line

INTERVAL = 5.0  # seconds between summary lines off a terminal
INTERVAL_ENV = "JSOPS_PROGRESS_INTERVAL"
REDRAW = 10  # bar redraws per second at most
BAR_WIDTH = 24


def human_bytes(n: float) -> str:
    """``1536`` -> ``1.5KiB`` (progress only: approximate, unlike ``format_size``)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}TiB"  # pragma: no cover


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get(INTERVAL_ENV, INTERVAL)))
    except ValueError:
        return INTERVAL


class Progress:
    """Counts toward ``total`` (``unit`` "bytes" shows sizes), shown as described above.

    ``update(done, note=...)`` sets the count (``note``: e.g. ``2 failed``); ``close()``
    ends the display. ``enabled=False`` shows nothing (``-v`` prints per-resource lines
    instead of a bar on a terminal)."""

    def __init__(
        self,
        label: str,
        total: int,
        unit: str = "",
        *,
        stream: TextIO | None = None,
        tty: bool | None = None,
        enabled: bool = True,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.enabled = enabled
        self.interval = (1.0 / REDRAW) if self.tty else _interval()
        self.started = time.monotonic()
        self.done = 0
        self.note = ""
        self._shown_at = self.started
        self._drawn = False

    def _amount(self, n: float) -> str:
        return human_bytes(n) if self.unit == "bytes" else f"{n:.0f}"

    def text(self) -> str:
        """``apply: 120/1000 changes, 35.2/s, 2 failed`` (rate per second of elapsed)."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        unit = "" if self.unit == "bytes" else f" {self.unit}" if self.unit else ""
        total = f"/{self._amount(self.total)}" if self.total else ""
        speed = f"{human_bytes(rate)}/s" if self.unit == "bytes" else f"{rate:.1f}/s"
        text = f"{self.label}: {self._amount(self.done)}{total}{unit}, {speed}"
        return text + (f", {one_line(self.note)}" if self.note else "")  # (a name, maybe)

    def start(self, total: int) -> None:
        """(Re)start the count and the clock: the work of ``total`` begins now."""
        self.total, self.done, self.note = total, 0, ""
        self.started = self._shown_at = time.monotonic()

    def update(self, done: int, total: int | None = None, note: str | None = None) -> None:
        self.done = done
        if total is not None:
            self.total = total
        if note is not None:
            self.note = note
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._shown_at < self.interval:
            return
        self._shown_at = now
        if self.tty:
            self.stream.write("\r\x1b[2K" + self._bar() + " " + self.text())
            self._drawn = True
        else:
            self.stream.write(self.text() + "\n")
        self.stream.flush()

    def _bar(self) -> str:
        share = min(1.0, self.done / self.total) if self.total else 0.0
        filled = int(share * BAR_WIDTH)
        return "[" + "#" * filled + "-" * (BAR_WIDTH - filled) + f"] {share * 100:3.0f}%"

    def close(self) -> None:
        """Clear the bar (the caller prints the outcome)."""
        if self._drawn:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self._drawn = False
