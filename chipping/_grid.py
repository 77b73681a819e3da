"""Grid settings of the chip planner: the default scales and ranges, the checked (and cached)
parsing of scales, ranges, chip size and stride, and the per-image seeds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from chipping import _checks
from chipping._numbers import MAX_UINT64
from chipping.scales import (
    ScaleSpec,
    factors_for_sizes,
    image_seeds,
    parse_ranges,
    parse_scales,
)

DEFAULT_SCALES: tuple[ScaleSpec, ...] = (3.0, 1.667, (512.0, 512.0))
DEFAULT_VALID_RANGES: tuple[tuple[float, float], ...] = ((-1, 80), (32, 150), (120, -1))


def _seeds(seed: int | None, seeds: object, n: int) -> np.ndarray:
    if seeds is not None:
        arr = np.asarray(seeds)
        if arr.shape != (n,) or arr.dtype.kind not in "iu":
            raise ValueError(f"seeds must be {n} integers, got shape {arr.shape} dtype {arr.dtype}")
        if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
            raise ValueError(f"seeds must be >= 0, got {int(arr.min())}")
        return arr.astype(np.uint64)
    return image_seeds(_checks.check_int(seed, "seed", 0, MAX_UINT64), n)


def _parse_grid_uncached(scales, valid_ranges, chip_size, stride):
    scale_rows = parse_scales(scales)
    ranges = parse_ranges(valid_ranges, len(scale_rows))
    chip, step = _checks.check_grid(chip_size, stride)
    scale_rows.setflags(write=False)
    ranges.setflags(write=False)
    # The last item: the image sizes whose canvases were checked with this grid.
    return scale_rows, ranges, chip, step, [tuple(r) for r in scale_rows.tolist()], set()


# Checked grid settings by repr (at most _MAX_GRIDS): the single-image call's fast path.
_GRIDS: dict[str, tuple] = {}
_MAX_GRIDS = 64
_MAX_CHECKED_SIZES = 100_000


def _parse_grid(scales: object, valid_ranges: object, chip_size: object, stride: object) -> tuple:
    """(scale rows float64 (S, 3), ranges float64 (S, 2), chip, stride, the rows as a list of
    Python tuples, a set of checked image sizes), checked; cached (read-only arrays) for
    settings given as plain lists and tuples."""
    last = _LAST_GRID
    if (
        last
        and scales is last[0]
        and valid_ranges is last[1]
        and chip_size is last[2]
        and stride is last[3]
    ):
        return last[4]  # the same immutable objects as the last call (default arguments)
    if type(scales) not in (list, tuple) or type(valid_ranges) not in (list, tuple):
        return _parse_grid_uncached(scales, valid_ranges, chip_size, stride)
    # repr tells 1, 1.0, True and np.float32(1.0) apart; only valid settings are stored, and
    # a valid setting holds only numbers and lists/tuples of numbers, whose repr is exact.
    key = repr((scales, valid_ranges, chip_size, stride))
    grid = _GRIDS.get(key)
    if grid is None:
        grid = _parse_grid_uncached(scales, valid_ranges, chip_size, stride)
        if len(_GRIDS) < _MAX_GRIDS:
            _GRIDS[key] = grid
    if _immutable(scales) and _immutable(valid_ranges):
        _LAST_GRID[:] = [scales, valid_ranges, chip_size, stride, grid]
    return grid


_LAST_GRID: list = []


def _immutable(value: object) -> bool:
    """True for tuples (nested) of Python numbers: safe to recognise by identity."""
    if type(value) is tuple:
        return all(_immutable(v) for v in value)
    return type(value) in (int, float)


def _prepare(
    image_sizes: object,
    scales: Sequence[ScaleSpec],
    valid_ranges: Sequence[Sequence[float]],
    chip_size: int,
    stride: int,
):
    sizes = _checks.as_image_sizes(image_sizes)
    scale_rows, ranges, chip, step, _, _ = _parse_grid(scales, valid_ranges, chip_size, stride)
    factors = factors_for_sizes(scale_rows, sizes)
    _checks.check_canvases(sizes, factors, chip, step)
    return sizes, scale_rows, ranges, chip, step
