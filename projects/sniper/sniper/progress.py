"""Progress of long per-image work: evaluation, folder inference, proposals, conversion.

``track(items, desc=..., enabled=...)`` yields ``items`` unchanged and reports progress
(``Progress(desc=...)`` with ``update(n)`` is the same reporter fed by hand):

* on a terminal (``sys.stderr.isatty()``), a tqdm bar with the count, images/s and ETA;
* otherwise (a log file, a pipe, a batch job), one INFO line on logger ``log`` every
  ``every_n`` items or ``every_s`` seconds, whichever comes first, plus a last line, e.g.
  ``evaluate coco_val: 150/5000 images (3.0%), 2.41 images/s, ETA 0:33:32``;
* nothing when ``enabled`` is False (pass ``is_main_process()`` so that only rank 0 reports).

A leaf module: it imports nothing of the project (the engine, the inference and the data
packages all use it).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

__all__ = ["Progress", "format_eta", "progress_line", "track"]

T = TypeVar("T")

_DEFAULT_LOGGER = logging.getLogger("sniper.progress")


def format_eta(seconds: float) -> str:
    """``seconds`` as ``H:MM:SS`` (``?`` when unknown: negative, NaN or infinite)."""
    if not seconds >= 0 or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def progress_line(desc: str, done: int, total: int | None, elapsed: float, unit: str) -> str:
    """The log line of ``done`` items after ``elapsed`` seconds (``total`` None: unknown)."""
    rate = done / elapsed if elapsed > 0 else 0.0
    if total is not None:
        eta = (total - done) / rate if rate > 0 else (0.0 if done >= total else float("nan"))
        percent = 100.0 * done / total if total > 0 else 100.0
        return (
            f"{desc}: {done}/{total} {unit} ({percent:.1f}%), "
            f"{rate:.2f} {unit}/s, ETA {format_eta(eta)}"
        )
    return f"{desc}: {done} {unit}, {rate:.2f} {unit}/s"


class Progress:
    """A progress reporter fed by hand (``update(n)``); `track` wraps an iterable in one.

    Args: as `track` (``total`` None: unknown). Use as a context manager, or call
    ``close()``: it writes the last line (or closes the bar).
    """

    def __init__(
        self,
        *,
        desc: str,
        total: int | None = None,
        enabled: bool = True,
        unit: str = "images",
        every_n: int = 50,
        every_s: float = 30.0,
        log: logging.Logger | None = None,
        terminal: bool | None = None,
    ) -> None:
        if type(every_n) is not int or every_n < 1:
            raise ValueError(f"progress: every_n must be an integer >= 1, got {every_n!r}")
        if not every_s > 0:
            raise ValueError(f"progress: every_s must be > 0, got {every_s!r}")
        self.desc, self.total, self.enabled, self.unit = desc, total, bool(enabled), unit
        self.every_n, self.every_s = every_n, float(every_s)
        self.log = log or _DEFAULT_LOGGER
        if terminal is None:
            terminal = bool(getattr(sys.stderr, "isatty", lambda: False)())
        self._bar = None
        if self.enabled and terminal:
            self._bar = tqdm(desc=desc, total=total, unit=f" {unit}", dynamic_ncols=True)
        self.done = self._last_done = 0
        self._start = self._last_time = time.perf_counter()
        self._closed = False

    def update(self, n: int = 1) -> None:
        """``n`` more items are done (capped at ``total``)."""
        if self.total is not None:
            n = max(0, min(n, self.total - self.done))
        self.done += n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.perf_counter()
        if self.done - self._last_done >= self.every_n or now - self._last_time >= self.every_s:
            self._write(now)

    def _write(self, now: float) -> None:
        self.log.info(progress_line(self.desc, self.done, self.total, now - self._start, self.unit))
        self._last_done, self._last_time = self.done, now

    def close(self) -> None:
        """The last line (when it differs from the previous one), or close the bar."""
        if self._closed:
            return
        self._closed = True
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        elif self.done != self._last_done or self.done == 0:
            self._write(time.perf_counter())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def track(
    items: Iterable[T],
    *,
    desc: str,
    total: int | None = None,
    enabled: bool = True,
    unit: str = "images",
    every_n: int = 50,
    every_s: float = 30.0,
    log: logging.Logger | None = None,
    terminal: bool | None = None,
) -> Iterator[T]:
    """Yield ``items`` and report progress (module docstring); the last line is written
    when the iteration ends (or the generator is closed).

    Args:
        items: what to iterate over; ``total`` defaults to ``len(items)`` when it has one.
        desc: what is being done, first in every line ("evaluate coco_2017_val").
        enabled: False yields the items silently (ranks other than 0).
        unit: the plural noun of an item.
        every_n, every_s: without a terminal, log after this many items or seconds
            (whichever comes first; ``every_n >= 1``, ``every_s > 0``).
        log: logger of the lines (default ``sniper.progress``).
        terminal: force the bar (True) or the lines (False); None asks ``sys.stderr``.

    Raises:
        ValueError: ``every_n < 1`` or ``every_s <= 0``.
    """
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    progress = Progress(
        desc=desc,
        total=total,
        enabled=enabled,
        unit=unit,
        every_n=every_n,
        every_s=every_s,
        log=log,
        terminal=terminal,
    )
    with progress:
        for item in items:
            yield item
            progress.update()
