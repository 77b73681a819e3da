"""Positive SNIPER chips (docs/design.md section 4): the greedy cover of the boxes in range."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from chipping import _checks
from chipping._backend import backend_module
from chipping._grid import (
    _MAX_CHECKED_SIZES,
    DEFAULT_SCALES,
    DEFAULT_VALID_RANGES,
    _parse_grid,
    _prepare,
    _seeds,
)
from chipping._numbers import MAX_UINT64
from chipping.plan_types import ChipPlan
from chipping.scales import ScaleSpec, _factor_from_row


def plan_positive_chips_batch(
    boxes: Sequence[np.ndarray] | np.ndarray,
    image_sizes: np.ndarray | Sequence[tuple[int, int]],
    scales: Sequence[ScaleSpec] = DEFAULT_SCALES,
    valid_ranges: Sequence[Sequence[float]] = DEFAULT_VALID_RANGES,
    chip_size: int = 512,
    stride: int = 32,
    *,
    box_splits: np.ndarray | None = None,
    jitter: bool = False,
    seed: int = 0,
    seeds: np.ndarray | None = None,
    num_threads: int = 0,
    backend: str = "compiled",
) -> ChipPlan:
    """Positive SNIPER chips for many images in one call (threads, GIL released).

    Per image and scale: candidate chips of ``chip_size`` on a grid of ``stride`` over the
    canvas (plus chips flush with the right/bottom edges; a canvas side shorter than a chip
    gives one whole-side chip), then the greedy cover of the boxes whose size
    ``sqrt(w * h)`` (image px) lies in that scale's ``[lo, hi)``: repeatedly the candidate that
    fully contains the most not-yet-covered boxes (ties: lowest row-major index, or a seeded
    random order when ``jitter``), until no remaining box fits any candidate.

    Args:
        boxes: per-image float ``(N_i, 4)`` XYXY image-px arrays, or one ``(B, 4)`` array with
            ``box_splits`` (int ``(num_images + 1,)`` offsets).
        image_sizes: ``(num_images, 2)`` (height, width).
        scales: factors or (short, long) pairs; see ``chipping.scales``.
        valid_ranges: one (lo, hi) per scale, image px, -1 = open end.
        jitter: random grid offset in ``[0, stride)`` per scale and axis, random tie order.
        seed: image ``i`` uses ``image_seed(seed, i)``; or give ``seeds`` (uint64 per image).
        num_threads: 0 = all cores.

    Returns:
        A ``ChipPlan`` ordered by image, then scale, then greedy pick order.
    """
    sizes, scale_rows, ranges, chip, step = _prepare(
        image_sizes, scales, valid_ranges, chip_size, stride
    )
    n = len(sizes)
    flat, splits = _checks.flatten_boxes_in_images(boxes, box_splits, sizes, "boxes")
    raw = backend_module(backend).plan_positive_batch(
        flat,
        splits,
        sizes,
        scale_rows,
        ranges,
        chip,
        step,
        _checks.check_bool(jitter, "jitter"),
        _seeds(seed, seeds, n),
        _checks.check_threads(num_threads),
    )
    return ChipPlan.from_raw(raw, ranges)


def plan_positive_chips(
    boxes: np.ndarray,
    image_size: tuple[int, int],
    scales: Sequence[ScaleSpec] = DEFAULT_SCALES,
    valid_ranges: Sequence[Sequence[float]] = DEFAULT_VALID_RANGES,
    chip_size: int = 512,
    stride: int = 32,
    *,
    jitter: bool = False,
    seed: int = 0,
    backend: str = "compiled",
) -> ChipPlan:
    """Positive chips of one image; see ``plan_positive_chips_batch`` (same result as a batch
    of this one image).

    ``seed`` seeds this image's random stream directly (only used with ``jitter``). The
    scalar checks are cached per (scales, ranges, chip, stride) and the boxes are checked in
    the same compiled call that plans them, so a call costs about what one image of a batch
    does.
    """
    height, width = _checks.check_image_size(image_size)
    grid = _parse_grid(scales, valid_ranges, chip_size, stride)
    scale_rows, ranges, chip, step, rows, checked = grid
    jit = _checks.check_bool(jitter, "jitter")
    sd = _checks.check_int(seed, "seed", 0, MAX_UINT64)
    if (height, width) not in checked:
        factors = [_factor_from_row(row, height, width) for row in rows]
        _checks.check_canvas(height, width, factors, chip, step)
        if len(checked) < _MAX_CHECKED_SIZES:
            checked.add((height, width))
    arr = _checks.as_box_array(boxes, "boxes")
    scale_index, chips, chip_factors, counts = backend_module(backend).plan_positive_image(
        arr, height, width, scale_rows, ranges, chip, step, jit, sd
    )
    return ChipPlan._trusted(
        image_index=np.zeros(len(scale_index), dtype=np.int32),
        scale_index=scale_index,
        chips_scaled=chips,
        factors=chip_factors,
        counts=counts,
        valid_ranges=ranges,
    )
