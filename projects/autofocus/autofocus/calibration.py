"""Calibrated FocusPixel thresholds: per transition, the highest threshold that still covers a
target share of the boxes the finer scales need, on a validation set.

Thresholds that suit one dataset need not transfer to another (a model's FocusPixel
probabilities on a new domain can sit far above or below those of its training set). For
each transition `s -> s+1` in turn (coarse to fine):

1. the cascade runs scales `0..s` on every image (transitions before `s` at their already
   calibrated thresholds) and records the FocusPixel maps of scale `s` and the windows it
   processed there (`AutoFocusCascade` outputs `focus_maps`, `chips_per_scale`);
2. for every candidate threshold `t` the FocusChips of those maps are rebuilt exactly as the
   cascade builds them (`autofocus.chips.focus_chips_from_maps` with the transition's
   dilation and minimum size, then the canvas windows of scale `s+1`,
   `AutoFocusCascade.chip_inputs`), without running the model again, and scored with
   `autofocus.focus_stats.transition_counts` (coverage = 1 - missing rate, empty rate) over
   all images;
3. the transition keeps the highest `t` whose coverage is at least `target`
   (`choose_threshold`), then the next transition is calibrated with it.

Each transition runs the model again on scales `0..s` (the maps of one transition only are
held in memory). Chips are scored whole: a chip above the runner's `max_pixels` runs as
overlapping tiles in the cascade, and an evaluation (`AutoFocusTrainer.test`) scores those
tiles one by one, so a box that only a whole chip holds may count as covered here and
missing there.

Pixels: `finer_pixels` of a row is the sum of the canvas-window areas its chips give at scale
`s+1` (network-input pixels before padding, without the overlap of tiles when a chip is above
the runner's `max_pixels`); the calibrated cascade's pixel fraction is the coarse scale's
pixels plus every chosen row's `finer_pixels`, over the full pyramid (every image whole at
every scale, `autofocus.params.full_pyramid_pixels`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from sniper.progress import track

from .cascade import AutoFocusCascade
from .chips import focus_chips_from_maps
from .focus_stats import TransitionCounts, transition_counts
from .params import CascadeParams, full_pyramid_pixels
from .structures import FocusMap

__all__ = [
    "DEFAULT_THRESHOLDS",
    "Calibration",
    "NoReadableImages",
    "ThresholdRow",
    "TransitionCalibration",
    "TransitionSample",
    "calibrate_thresholds",
    "check_target",
    "check_thresholds",
    "choose_threshold",
    "sweep_transition",
]

logger = logging.getLogger("sniper.autofocus.calibration")

#: candidate thresholds: 0, a few very low values, then 0.01 to 0.99 in steps of 0.01
DEFAULT_THRESHOLDS = (0.0, 0.001, 0.002, 0.005, *(round(0.01 * k, 2) for k in range(1, 100)))


class NoReadableImages(ValueError):
    """None of the validation records gave an image."""


@dataclass(frozen=True)
class ThresholdRow:
    """One candidate threshold of one transition, summed over the images.

    Attributes:
        threshold: t (probability).
        counts: responsible / missed boxes and chip / empty areas (`focus_stats`).
        finer_pixels: network-input pixels of the chips at scale `s+1` (canvas px).
        finer_full_pixels: pixels of every image whole at scale `s+1` (canvas px).
    """

    threshold: float
    counts: TransitionCounts
    finer_pixels: int
    finer_full_pixels: int

    @property
    def coverage(self) -> float:
        """Share of the responsible boxes inside a FocusChip (1.0 without any)."""
        return self.counts.coverage

    @property
    def scale_fraction(self) -> float:
        """`finer_pixels / finer_full_pixels`: the part of scale `s+1` processed."""
        return self.finer_pixels / self.finer_full_pixels if self.finer_full_pixels else 0.0


@dataclass(frozen=True)
class TransitionCalibration:
    """The sweep of transition `s` and its choice (`met_target` False: no threshold reached
    the target; the best-covering one was kept)."""

    transition: int
    rows: tuple[ThresholdRow, ...]
    chosen: ThresholdRow
    met_target: bool


@dataclass(frozen=True)
class Calibration:
    """Result of `calibrate_thresholds`.

    Attributes:
        target: the coverage asked for.
        transitions: one `TransitionCalibration` per transition, coarse to fine.
        images: images used (readable ones).
        coarse_pixels: network-input pixels of scale 0 over the images.
        full_pixels: pixels of the full pyramid over the images.
    """

    target: float
    transitions: tuple[TransitionCalibration, ...]
    images: int
    coarse_pixels: int
    full_pixels: int

    @property
    def thresholds(self) -> tuple[float, ...]:
        """The chosen threshold of every transition (AUTOFOCUS.THRESHOLDS)."""
        return tuple(t.chosen.threshold for t in self.transitions)

    @property
    def pixel_fraction(self) -> float:
        """Pixels of the calibrated cascade over the full pyramid's (module doc)."""
        used = self.coarse_pixels + sum(t.chosen.finer_pixels for t in self.transitions)
        return used / self.full_pixels if self.full_pixels else 0.0


@dataclass
class TransitionSample:
    """What one image gives for transition `s` (step 1 of the module doc).

    Attributes:
        boxes: float64 `(N, 4)` non-crowd GT boxes, image px.
        size: `(height, width)` of the image.
        maps: the FocusPixel maps of the inputs processed at scale `s`.
        reached: float64 `(R, 4)` the windows processed at scale `s`, image px.
    """

    boxes: np.ndarray
    size: tuple[int, int]
    maps: list[FocusMap]
    reached: np.ndarray


def check_target(target: float) -> float:
    """`target` as a float in (0, 1], else a ValueError naming it."""
    value = float(target)
    if not 0.0 < value <= 1.0 or math.isnan(value):
        raise ValueError(f"target must lie in (0, 1], got {target!r}")
    return value


def check_thresholds(thresholds: Sequence[float]) -> tuple[float, ...]:
    """The candidate thresholds sorted and de-duplicated; each must lie in [0, 1]."""
    values = [float(t) for t in thresholds]
    if not values:
        raise ValueError("thresholds: at least one candidate threshold is needed")
    bad = [t for t in values if not 0.0 <= t <= 1.0]
    if bad:
        raise ValueError(f"thresholds must lie in [0, 1], got {bad[0]!r}")
    return tuple(sorted(set(values)))


def choose_threshold(rows: Sequence[ThresholdRow], target: float) -> tuple[ThresholdRow, bool]:
    """The row of the highest threshold whose coverage is >= `target`, and True; when none
    reaches it, the row of best coverage (the highest threshold among equals) and False."""
    if not rows:
        raise ValueError("choose_threshold: no candidate rows")
    good = [r for r in rows if r.coverage >= target]
    if good:
        return max(good, key=lambda r: r.threshold), True
    return max(rows, key=lambda r: (r.coverage, r.threshold)), False


def sweep_transition(
    samples: Sequence[TransitionSample],
    s: int,
    params: CascadeParams,
    thresholds: Sequence[float],
    *,
    tolerance: float = 0.0,
    num_threads: int = 0,
) -> list[ThresholdRow]:
    """Score every candidate threshold of transition `s` on the recorded `samples` (step 2
    of the module doc); one row per threshold, in the order given."""
    maps = [m for sample in samples for m in sample.maps]
    index = [i for i, sample in enumerate(samples) for _ in sample.maps]
    sizes = [sample.size for sample in samples]
    scale = params.scales[s + 1]
    full = sum(full_pyramid_pixels(size, (scale,))[0] for size in sizes)
    rows = []
    for t in thresholds:
        chips = focus_chips_from_maps(
            maps,
            index,
            sizes,
            t,
            params.dilations[s],
            params.min_sizes[s],
            num_threads=num_threads,
        )
        total, pixels = TransitionCounts(), 0
        for i, sample in enumerate(samples):
            inputs = AutoFocusCascade.chip_inputs([chips[i]], [sample.size], scale, 0.0)
            windows = np.asarray([inp.window_img for inp in inputs], np.float64).reshape(-1, 4)
            pixels += sum(inp.area for inp in inputs)
            total += transition_counts(
                sample.boxes, params.valid_ranges, s, sample.reached, windows, tolerance
            )
        rows.append(ThresholdRow(float(t), total, int(pixels), int(full)))
    return rows


def _collect(
    cascade: AutoFocusCascade,
    records: Sequence[dict],
    load: Callable[[dict], np.ndarray | None],
    params: CascadeParams,
    s: int,
) -> tuple[list[TransitionSample], int]:
    """Run scales `0..s` on every readable record (step 1); also the scale-0 pixels."""
    head = CascadeParams(
        params.scales[: s + 1],
        params.valid_ranges[: s + 1],
        params.thresholds[:s],
        params.dilations[:s],
        params.min_sizes[:s],
        params.border_delta,
    )
    samples, coarse = [], 0
    for record in track(records, desc=f"calibrate transition {s}", log=logger):
        image = load(record)
        if image is None:
            continue
        out = cascade([image], params=head)[0]
        coarse += int(out["pixels_per_scale"][0])
        boxes = np.asarray(record.get("boxes", np.zeros((0, 4))), np.float64).reshape(-1, 4)
        samples.append(
            TransitionSample(
                boxes,
                (int(image.shape[0]), int(image.shape[1])),
                list(out["focus_maps"][s]),
                np.asarray(out["chips_per_scale"][s], np.float64).reshape(-1, 4),
            )
        )
    return samples, coarse


def calibrate_thresholds(
    cascade: AutoFocusCascade,
    records: Sequence[dict],
    load: Callable[[dict], np.ndarray | None],
    *,
    target: float = 0.99,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    tolerance: float = 0.0,
    params: CascadeParams | None = None,
) -> Calibration:
    """Calibrate every transition of `params` (default `cascade.params`) in turn (module doc).

    Args:
        cascade: the cascade (model, stride, batching) to run.
        records: validation records; `boxes` float `(N, 4)` non-crowd GT, image px.
        load: a record's uint8 `(H, W, 3)` image in the cascade's `input_format`, or None
            to skip it (unreadable).
        target: coverage to keep, in (0, 1].
        thresholds: candidate thresholds in [0, 1].
        tolerance: px a box may stick out of a chip and still count as inside.

    Raises:
        ValueError: bad `target` or `thresholds`, or a one-scale cascade.
        NoReadableImages: no record could be read (a ValueError).
    """
    target, grid = check_target(target), check_thresholds(thresholds)
    p = params or cascade.params
    if p.num_scales < 2:
        raise ValueError(f"the cascade has {p.num_scales} scale: no transition to calibrate")
    done: list[TransitionCalibration] = []
    coarse, images, full = 0, 0, 0
    for s in range(p.num_scales - 1):
        samples, pixels = _collect(cascade, records, load, p, s)
        if not samples:
            raise NoReadableImages(f"none of the {len(records)} records could be read")
        if s == 0:
            coarse, images = pixels, len(samples)
            full = sum(sum(full_pyramid_pixels(x.size, p.scales)) for x in samples)
        start = time.perf_counter()
        rows = sweep_transition(samples, s, p, grid, tolerance=tolerance)
        logger.info(
            "transition %d: %d thresholds scored on %d images in %.2f s",
            s,
            len(grid),
            len(samples),
            time.perf_counter() - start,
        )
        chosen, met = choose_threshold(rows, target)
        if chosen.counts.responsible == 0:
            logger.warning("transition %d: no box needs a finer scale in these images", s)
        if not met:
            logger.warning(
                "transition %d: no threshold reaches coverage %.4f; keeping t = %g (%.4f)",
                s,
                target,
                chosen.threshold,
                chosen.coverage,
            )
        done.append(TransitionCalibration(s, tuple(rows), chosen, met))
        new = list(p.thresholds)
        new[s] = chosen.threshold
        p = dataclasses.replace(p, thresholds=tuple(new))
    return Calibration(target, tuple(done), images, coarse, full)
