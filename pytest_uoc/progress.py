"""One updating progress line for long work: images done / planned, what is being made, the current ψ.

The engine reports each finished batch to ``report``; whoever shows progress (the
plugin during a test, ``uoc audit``) installs a sink with ``showing``. Without a sink
reporting costs nothing. The line is throttled (one write per ``MIN_INTERVAL``), so a
long run never floods a log; the plugin installs a sink only for a terminal, never
under ``-q`` or in an xdist worker.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = ["MIN_INTERVAL", "ProgressLine", "Status", "current", "phase", "report", "showing"]

#: Seconds between two writes of the line.
MIN_INTERVAL = 0.5


@dataclass
class Status:
    """Where the current work stands."""

    done: int = 0
    planned: int = 0
    phase: str = ""
    psi: float | None = None
    round: int | None = None
    #: What ``done`` and ``planned`` count: images, or an attack's optimisation steps.
    unit: str = "images"

    def text(self) -> str:
        """``sweeps: 96/192 images, psi 0.15`` (the parts that are known)."""
        parts = [f"{self.phase or self.unit}: {self.done}/{self.planned} {self.unit}"]
        if self.psi is not None:
            parts.append(f"psi {self.psi:g}")
        if self.round is not None:
            parts.append(f"round {self.round}")
        return ", ".join(parts)


_status = Status()
_sink: Callable[[Status], None] | None = None


def current() -> Status:
    """The work in progress (its counters are reset at each sweep)."""
    return _status


def report(done: int, planned: int, *, psi: float | None = None, unit: str = "images") -> None:
    """Called by the engine after each finished batch (and by an attack after each optimisation step)."""
    _status.done, _status.planned, _status.psi, _status.unit = done, planned, psi, unit
    if _sink is not None:
        _sink(_status)


@contextlib.contextmanager
def phase(name: str, round_number: int | None = None) -> Iterator[None]:
    """Label the work done inside (``sweeps``, ``null finishes``, ...); a round number stays for inner phases."""
    before = (_status.phase, _status.round)
    _status.phase = name
    if round_number is not None:
        _status.round = round_number
    try:
        yield
    finally:
        _status.phase, _status.round = before


@contextlib.contextmanager
def showing(sink: Callable[[Status], None] | None) -> Iterator[None]:
    """Send progress to ``sink`` inside the block (None: nowhere)."""
    global _sink
    before = _sink
    _sink = sink
    try:
        yield
    finally:
        _sink = before


class ProgressLine:
    """Rewrites one line (``\\r``) through ``write`` at most every ``min_interval`` seconds; ``close`` clears it."""

    def __init__(self, write: Callable[[str], None], *, label: str = "uoc", min_interval: float = MIN_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._write, self.label, self.min_interval, self._clock = write, label, min_interval, clock
        self._last: float | None = None
        self.shown = False
        #: How many times the line was written (a test reads it: throttling, never a flood).
        self.writes = 0

    def __call__(self, status: Status) -> None:
        now = self._clock()
        finished = status.planned and status.done >= status.planned
        if self._last is not None and now - self._last < self.min_interval and not finished:
            return
        self._last = now
        self._write(f"\r\x1b[K{self.label}: {status.text()}")
        self.shown = True
        self.writes += 1

    def close(self) -> None:
        """Clear the line (if it was shown)."""
        if self.shown:
            self._write("\r\x1b[K")
            self.shown = False
