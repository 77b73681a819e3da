"""Progress of long per-image work: evaluation, folder inference, proposals, conversion.

``track(items, desc=..., enabled=...)`` yields ``items`` unchanged and reports progress:

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

__all__ = ["format_eta", "progress_line", "track"]

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
    if total:
        eta = (total - done) / rate if rate > 0 else float("nan")
        return (
            f"{desc}: {done}/{total} {unit} ({100.0 * done / total:.1f}%), "
            f"{rate:.2f} {unit}/s, ETA {format_eta(eta)}"
        )
    return f"{desc}: {done} {unit}, {rate:.2f} {unit}/s"


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
    """Yield ``items`` and report progress (module docstring).

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
    if type(every_n) is not int or every_n < 1:
        raise ValueError(f"track: every_n must be an integer >= 1, got {every_n!r}")
    if not every_s > 0:
        raise ValueError(f"track: every_s must be > 0, got {every_s!r}")
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if not enabled:
        yield from items
        return
    if terminal is None:
        terminal = bool(getattr(sys.stderr, "isatty", lambda: False)())
    if terminal:
        yield from tqdm(items, desc=desc, total=total, unit=f" {unit}", dynamic_ncols=True)
        return
    yield from _logged(items, desc, total, unit, every_n, every_s, log or _DEFAULT_LOGGER)


def _logged(
    items: Iterable[T],
    desc: str,
    total: int | None,
    unit: str,
    every_n: int,
    every_s: float,
    log: logging.Logger,
) -> Iterator[T]:
    """The log-line reporter of `track`: a line every ``every_n`` items or ``every_s`` s,
    and a last line when the iteration ends (not when the consumer stops early)."""
    start = last_time = time.perf_counter()
    done = last_done = 0
    for item in items:
        yield item
        done += 1
        now = time.perf_counter()
        if done - last_done >= every_n or now - last_time >= every_s:
            log.info(progress_line(desc, done, total, now - start, unit))
            last_done, last_time = done, now
    if done != last_done or done == 0:
        log.info(progress_line(desc, done, total, time.perf_counter() - start, unit))
