"""Public, typed API of the chip planner (docs/design.md sections 4, 5). numpy in, numpy out.

Frames: boxes and proposals are float32 XYXY in original-image pixels (exclusive right/bottom
edge); chips are integer XYXY on the *canvas* of their scale (the image resized by the scale's
factor; ``ChipPlan.chips`` gives them in image pixels); assigned boxes are in chip pixels.

Every function takes ``backend="compiled"`` (the C++ extension, default) or ``"reference"``
(the pure-numpy twin in ``chipping._reference``); both give identical results.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from chipping import _checks
from chipping._backend import backend_module
from chipping._numbers import MAX_UINT64
from chipping.focus import focus_chips, focus_chips_batch, focus_chips_to_image
from chipping.plan_types import ChipAssignment, ChipPlan
from chipping.scales import (
    ScaleSpec,
    _factor_from_row,
    factors_for_sizes,
    image_seed,
    image_seeds,
    parse_ranges,
    parse_scales,
    scale_factor,
    scaled_size,
)

__all__ = [
    "ChipAssignment",
    "ChipPlan",
    "assign_boxes",
    "assign_boxes_batch",
    "focus_chips",
    "focus_chips_batch",
    "focus_chips_to_image",
    "image_seed",
    "parse_scales",
    "plan_negative_chips",
    "plan_negative_chips_batch",
    "plan_positive_chips",
    "plan_positive_chips_batch",
    "scale_factor",
    "scaled_size",
]

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


def _group_positives(
    positive: ChipPlan, n: int, factors: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positive chips grouped by image, checked against the images' ``factors`` (N, S)."""
    if not isinstance(positive, ChipPlan):
        raise ValueError(f"positive must be a ChipPlan, got {type(positive).__name__}")
    if len(positive) and (positive.image_index.min() < 0 or positive.image_index.max() >= n):
        raise ValueError(
            f"positive.image_index must lie in [0, {n}), got values in "
            f"[{positive.image_index.min()}, {positive.image_index.max()}]"
        )
    num_scales = factors.shape[1]
    if len(positive) and positive.scale_index.max() >= num_scales:
        raise ValueError(
            f"positive has scale_index {int(positive.scale_index.max())} but only "
            f"{num_scales} scales were given"
        )
    want = factors[positive.image_index, positive.scale_index]
    off = ~np.isclose(positive.factors, want, rtol=1e-9, atol=0.0)
    if off.any():
        k = int(np.flatnonzero(off)[0])
        raise ValueError(
            f"positive chip {k} (image {int(positive.image_index[k])}, scale "
            f"{int(positive.scale_index[k])}) was planned at factor "
            f"{float(positive.factors[k])!r}, but these scales give that image factor "
            f"{float(want[k])!r}: plan the positives with the same scales and image sizes"
        )
    order = np.argsort(positive.image_index, kind="stable")
    splits = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(positive.image_index, minlength=n)[:n], out=splits[1:])
    return (
        np.ascontiguousarray(positive.scale_index[order]),
        np.ascontiguousarray(positive.chips_scaled[order]),
        splits,
    )


def plan_negative_chips_batch(
    proposals: Sequence[np.ndarray] | np.ndarray,
    image_sizes: np.ndarray | Sequence[tuple[int, int]],
    positive: ChipPlan,
    scales: Sequence[ScaleSpec] = DEFAULT_SCALES,
    valid_ranges: Sequence[Sequence[float]] = DEFAULT_VALID_RANGES,
    chip_size: int = 512,
    stride: int = 32,
    *,
    min_proposals: Sequence[int] = (25, 10, 10),
    proposal_splits: np.ndarray | None = None,
    jitter: bool = False,
    seed: int = 0,
    seeds: np.ndarray | None = None,
    num_threads: int = 0,
    backend: str = "compiled",
) -> ChipPlan:
    """Negative SNIPER chips for many images: cover what the RPN fires on outside positives.

    Per image and scale: the proposals whose size is in the scale's range and that are not
    fully inside a positive chip of that scale are greedily covered by grid chips (as the
    positive cover); a chip is kept while it newly covers more than ``min_proposals[scale]``
    of them. ``positive`` must be planned with the same scales. Images without positives
    still get negative chips.

    Returns:
        A ``ChipPlan``; ``counts`` holds the proposals each chip newly covered.
    """
    sizes, scale_rows, ranges, chip, step = _prepare(
        image_sizes, scales, valid_ranges, chip_size, stride
    )
    n = len(sizes)
    flat, splits = _checks.flatten_boxes_in_images(proposals, proposal_splits, sizes, "proposals")
    if (
        isinstance(min_proposals, (str, bytes))
        or not isinstance(min_proposals, (Sequence, np.ndarray))
        or len(min_proposals) != len(scale_rows)
    ):
        raise ValueError(
            f"min_proposals = {min_proposals!r}: need one count per scale ({len(scale_rows)})"
        )
    mins = np.array(
        [_checks.check_int(m, f"min_proposals[{i}]", 0) for i, m in enumerate(min_proposals)],
        dtype=np.int64,
    )
    factors = factors_for_sizes(scale_rows, sizes)
    pos_scale, pos_chips, pos_splits = _group_positives(positive, n, factors)
    raw = backend_module(backend).plan_negative_batch(
        flat,
        splits,
        pos_scale,
        pos_chips,
        pos_splits,
        sizes,
        scale_rows,
        ranges,
        mins,
        chip,
        step,
        _checks.check_bool(jitter, "jitter"),
        _seeds(seed, seeds, n),
        _checks.check_threads(num_threads),
    )
    return ChipPlan.from_raw(raw, ranges)


def plan_negative_chips(
    proposals: np.ndarray,
    image_size: tuple[int, int],
    positive: ChipPlan,
    scales: Sequence[ScaleSpec] = DEFAULT_SCALES,
    valid_ranges: Sequence[Sequence[float]] = DEFAULT_VALID_RANGES,
    chip_size: int = 512,
    stride: int = 32,
    *,
    min_proposals: Sequence[int] = (25, 10, 10),
    jitter: bool = False,
    seed: int = 0,
    backend: str = "compiled",
) -> ChipPlan:
    """Negative chips of one image; ``positive`` holds this image's positive chips (a plan of
    one image, whatever its ``image_index``, planned with the same scales and image size)."""
    size = _checks.check_image_size(image_size)
    if isinstance(positive, ChipPlan) and len(positive):
        images = np.unique(positive.image_index)
        if len(images) > 1:
            raise ValueError(
                f"positive holds the chips of {len(images)} images (image_index "
                f"{images[:5].tolist()}{'...' if len(images) > 5 else ''}); give this image's "
                f"chips (positive.for_image(i)) or use plan_negative_chips_batch"
            )
        positive = ChipPlan._trusted(
            image_index=np.zeros_like(positive.image_index),
            scale_index=positive.scale_index,
            chips_scaled=positive.chips_scaled,
            factors=positive.factors,
            counts=positive.counts,
            valid_ranges=positive.valid_ranges,
        )
    return plan_negative_chips_batch(
        [proposals],
        [size],
        positive,
        scales,
        valid_ranges,
        chip_size,
        stride,
        min_proposals=min_proposals,
        jitter=jitter,
        seeds=np.array([_checks.check_int(seed, "seed", 0, (1 << 64) - 1)], dtype=np.uint64),
        num_threads=1,
        backend=backend,
    )


def _crowd_flags(crowd: object, per_image: bool, n: int, num_boxes: int) -> np.ndarray:
    """uint8 ``(num_boxes,)`` crowd flags from bool or 0/1 integer arrays (per image, or one
    flat array); anything else (strings, floats, other integers) is a ValueError."""
    if crowd is None:
        return np.zeros(num_boxes, dtype=np.uint8)
    if per_image:
        if not isinstance(crowd, Sequence) or isinstance(crowd, (str, bytes)) or len(crowd) != n:
            raise ValueError(f"crowd must be a list of {n} per-image flag arrays, got {crowd!r}")
        parts = list(crowd)
    else:
        parts = [crowd]
    arrays = []
    for i, c in enumerate(parts):
        arr = np.asarray(c)
        bad = arr.dtype.kind not in "biu" or (
            arr.dtype.kind != "b" and ((arr != 0) & (arr != 1)).any()
        )
        if bad or arr.ndim > 1:
            raise ValueError(
                f"crowd[{i}] must be a 1-D array of bools (or 0/1), got dtype {arr.dtype} "
                f"shape {arr.shape}"
            )
        arrays.append(arr.reshape(-1).astype(np.uint8))
    flags = np.concatenate(arrays) if arrays else np.zeros(0, np.uint8)
    if flags.shape != (num_boxes,):
        raise ValueError(f"crowd must have one flag per box ({num_boxes}), got {flags.shape[0]}")
    return flags


def assign_boxes_batch(
    chips: ChipPlan,
    boxes: Sequence[np.ndarray] | np.ndarray,
    *,
    box_splits: np.ndarray | None = None,
    crowd: Sequence[np.ndarray] | np.ndarray | None = None,
    min_inside: float = 0.5,
    min_box_size: float = 2.0,
    num_threads: int = 0,
    backend: str = "compiled",
) -> ChipAssignment:
    """Valid and ignore boxes of every chip, in chip pixels.

    For chip ``k`` (image ``chips.image_index[k]``), each box of that image overlapping the
    chip is clipped to it and mapped to chip pixels ``(box * factor - chip corner)``; if the
    clipped box is narrower or lower than ``min_box_size`` chip px it is removed. It is
    *valid* if it is not crowd, its size (image px) is in the chip's range, and at least
    ``min_inside`` of its area lies inside the chip; every other overlapping box is *ignore*.

    Args:
        boxes: per-image arrays (one per image of the plan, ``max(image_index) + 1`` at
            least), or one array with ``box_splits``.
        crowd: per-box flags (same layout as boxes): crowd boxes are always ignore.
    """
    if not isinstance(chips, ChipPlan):
        raise ValueError(f"chips must be a ChipPlan, got {type(chips).__name__}")
    if box_splits is not None:
        if not isinstance(box_splits, (Sequence, np.ndarray)) or len(box_splits) < 1:
            raise ValueError(f"box_splits must be a 1-D array of offsets, got {box_splits!r}")
        n = len(box_splits) - 1
    elif isinstance(boxes, Sequence) and not isinstance(boxes, (str, bytes)):
        n = len(boxes)
    else:
        raise ValueError("boxes must be a list of per-image arrays, or one array with box_splits")
    flat, splits = _checks.flatten_boxes(boxes, box_splits, n, "boxes")
    if len(chips) and (chips.image_index.min() < 0 or chips.image_index.max() >= n):
        raise ValueError(
            f"chips refer to image {int(chips.image_index.max())} but boxes are "
            f"given for {n} images"
        )
    if len(chips) and (
        chips.scale_index.min() < 0 or chips.scale_index.max() >= len(chips.valid_ranges)
    ):
        raise ValueError(
            f"chips.scale_index must index the {len(chips.valid_ranges)} rows of "
            f"chips.valid_ranges, got values in [{chips.scale_index.min()}, "
            f"{chips.scale_index.max()}]"
        )
    flags = _crowd_flags(crowd, box_splits is None, n, len(flat))
    min_inside = _checks.check_real(min_inside, "min_inside", 0.0, 1.0)
    min_box_size = _checks.check_real(min_box_size, "min_box_size", 0.0)
    raw = backend_module(backend).assign_boxes_batch(
        np.ascontiguousarray(chips.image_index, dtype=np.int32),
        np.ascontiguousarray(chips.chips_scaled, dtype=np.int32),
        np.ascontiguousarray(chips.factors, dtype=np.float64),
        np.ascontiguousarray(chips.chip_ranges, dtype=np.float64),
        flat,
        splits,
        flags,
        min_inside,
        min_box_size,
        _checks.check_threads(num_threads),
    )
    return ChipAssignment.from_raw(raw)


def assign_boxes(
    chips: ChipPlan,
    boxes: np.ndarray,
    *,
    crowd: np.ndarray | None = None,
    min_inside: float = 0.5,
    min_box_size: float = 2.0,
    backend: str = "compiled",
) -> ChipAssignment:
    """Valid and ignore boxes of each chip of one image; see ``assign_boxes_batch``."""
    if isinstance(chips, ChipPlan) and len(chips) and len(np.unique(chips.image_index)) > 1:
        raise ValueError("chips span several images; use assign_boxes_batch")
    if isinstance(chips, ChipPlan):
        chips = ChipPlan._trusted(
            image_index=np.zeros_like(chips.image_index),
            scale_index=chips.scale_index,
            chips_scaled=chips.chips_scaled,
            factors=chips.factors,
            counts=chips.counts,
            valid_ranges=chips.valid_ranges,
        )
    return assign_boxes_batch(
        chips,
        [boxes],
        crowd=None if crowd is None else [crowd],
        min_inside=min_inside,
        min_box_size=min_box_size,
        num_threads=1,
        backend=backend,
    )
