"""Training events: `metrics.json`, TensorBoard scalars and a tqdm progress bar.

`TrainingEvents.put(iteration, ...)` is called once per iteration with the loss values,
learning rate, data/iteration times and the number of chips of the (global) batch. Every
`period` iterations, and at the last one, it writes one json object per line to
`<output_dir>/metrics.json` (detectron2's format)::

    {"iteration": 19, "lr": 0.0002, "total_loss": 1.93, "loss_classifier": 0.7, ...,
     "data_time": 0.01, "time": 0.41, "chips_per_s": 39.0, "eta_seconds": 812.0}

with the losses and times the median over the last `window` iterations (`lr` is the
latest value, `chips_per_s` = chips / seconds summed over the window), and the same scalars
to TensorBoard (`<output_dir>` event files, tags like `train/total_loss`). The progress bar
(stderr) shows the ETA and the smoothed total loss and LR. Evaluation results are appended
to both by `put_eval`. Only the main process should enable the writers.
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
from collections import deque
from typing import Any

from tqdm import tqdm

__all__ = ["TrainingEvents"]

logger = logging.getLogger(__name__)


class _Window:
    """The last `size` values of one scalar."""

    def __init__(self, size: int) -> None:
        self.values: deque[float] = deque(maxlen=size)

    def add(self, value: float) -> None:
        self.values.append(float(value))

    def median(self) -> float:
        return statistics.median(self.values)

    def sum(self) -> float:
        return math.fsum(self.values)


class TrainingEvents:
    """Smoothed training scalars to `metrics.json`, TensorBoard and a progress bar.

    Args:
        output_dir: folder of `metrics.json` and of the TensorBoard event files.
        start_iter: first iteration of this run (> 0 when resuming).
        max_iter: total iterations of the schedule.
        period: write every `period` iterations (and at the last one).
        window: iterations the medians are taken over.
        enabled: False on non-main processes: nothing is written or shown.
    """

    def __init__(
        self,
        output_dir: str,
        start_iter: int,
        max_iter: int,
        *,
        period: int = 20,
        window: int = 20,
        enabled: bool = True,
    ) -> None:
        self.max_iter = int(max_iter)
        self.period = max(1, int(period))
        self.window = max(1, int(window))
        self.enabled = enabled
        self._windows: dict[str, _Window] = {}
        self._lr = 0.0
        self._json = None
        self._tb = None
        self._bar = None
        if not enabled:
            return
        os.makedirs(output_dir, exist_ok=True)
        metrics_file = os.path.join(output_dir, "metrics.json")
        self._json = open(metrics_file, "a", encoding="utf-8")  # closed by close()
        from torch.utils.tensorboard import SummaryWriter

        self._tb = SummaryWriter(log_dir=output_dir)
        self._bar = tqdm(
            total=self.max_iter,
            initial=int(start_iter),
            desc="train",
            dynamic_ncols=True,
            mininterval=1.0,
            unit="it",
        )

    def _add(self, name: str, value: float) -> None:
        if name not in self._windows:
            self._windows[name] = _Window(self.window)
        self._windows[name].add(value)

    def put(
        self,
        iteration: int,
        losses: dict[str, float],
        lr: float,
        data_time: float,
        iter_time: float,
        chips: int,
    ) -> None:
        """Record one iteration (losses as floats, averaged over processes)."""
        if not self.enabled:
            return
        for name, value in losses.items():
            self._add(name, value)
        self._add("total_loss", math.fsum(losses.values()))
        self._add("data_time", data_time)
        self._add("time", iter_time)
        self._add("chips", chips)
        self._lr = float(lr)
        last = iteration == self.max_iter - 1
        if self._bar is not None:
            self._bar.update(1)
            if (iteration + 1) % self.period == 0 or last:
                loss = self._windows["total_loss"].median()
                self._bar.set_postfix(loss=f"{loss:.4g}", lr=f"{self._lr:.3g}", refresh=False)
        if (iteration + 1) % self.period == 0 or last:
            self._write(iteration)

    def scalars(self, iteration: int) -> dict[str, float]:
        """The smoothed scalars that the next line of `metrics.json` would hold."""
        out: dict[str, float] = {"lr": self._lr}
        for name, win in self._windows.items():
            if name != "chips":
                out[name] = win.median()
        seconds = self._windows["time"].sum()
        out["chips_per_s"] = self._windows["chips"].sum() / seconds if seconds > 0 else 0.0
        out["eta_seconds"] = out["time"] * max(0, self.max_iter - iteration - 1)
        return out

    def _write(self, iteration: int) -> None:
        scalars = self.scalars(iteration)
        self._json_line({"iteration": iteration, **scalars})
        if self._tb is not None:
            for name, value in scalars.items():
                self._tb.add_scalar(f"train/{name}", value, iteration)
            self._tb.flush()

    def _json_line(self, obj: dict[str, Any]) -> None:
        if self._json is not None:
            self._json.write(json.dumps(obj, sort_keys=False) + "\n")
            self._json.flush()

    def put_eval(self, iteration: int, results: dict[str, dict[str, float]]) -> None:
        """Append evaluation results ({task: {metric: value}}) as `task/metric` scalars."""
        if not self.enabled:
            return
        flat = flatten_results(results)
        self._json_line({"iteration": iteration, **flat})
        if self._tb is not None:
            for name, value in flat.items():
                if math.isfinite(value):
                    self._tb.add_scalar(name, value, iteration)
            self._tb.flush()

    def close(self) -> None:
        """Close the bar and the files (idempotent)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._json is not None:
            self._json.close()
            self._json = None


def flatten_results(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    """``{task: {metric: value}}`` as ``{"task/metric": value}`` (numbers only)."""
    return {
        f"{task}/{metric}": float(value)
        for task, metrics in results.items()
        for metric, value in metrics.items()
        if isinstance(value, int | float)
    }


def append_metrics(output_dir: str, record: dict[str, Any]) -> None:
    """Appends one json line to ``<output_dir>/metrics.json`` (main process only)."""
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "metrics.json"), "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
