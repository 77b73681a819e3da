"""Slow, readable pure-numpy twin of the compiled planner ``chipping._planner``: the test oracle.

Same raw functions, arguments and outputs as the extension (see ``chipping/csrc``); written for
clarity: the greedy cover builds the full chip x box containment matrix and recounts it at
every step. Results are bit-identical to the compiled planner (same float64 arithmetic, same
splitmix64 random stream).
"""

from __future__ import annotations

import numpy as np

from chipping._checks import as_boxes, check_inside
from chipping._reference_focus import _component_boxes as _component_boxes
from chipping._reference_focus import _dilate as _dilate
from chipping._reference_focus import _grow as _grow
from chipping._reference_focus import _merge as _merge
from chipping._reference_focus import focus_chips_batch as focus_chips_batch
from chipping._reference_focus import focus_chips_map as focus_chips_map
from chipping.scales import (
    GOLDEN,
    MASK64,
    _factor_from_row,
    box_sizes,
    in_range,
    mix64,
    scaled_length,
)


class SplitMix64:
    """The project's seeded random stream (as ``geometry.h``)."""

    def __init__(self, seed: int) -> None:
        self.state = int(seed) & MASK64

    def next(self) -> int:
        self.state = (self.state + GOLDEN) & MASK64
        return mix64(self.state)

    def below(self, n: int) -> int:
        return self.next() % n


def grid_positions(length: int, chip: int, stride: int, offset: int) -> list[int]:
    """Chip start positions along one canvas side (see ``geometry.h``)."""
    if length <= chip:
        return [0]
    last = length - chip
    positions = [0] if offset > 0 else []
    positions += list(range(offset, last + 1, stride))
    if positions[-1] != last:
        positions.append(last)
    return positions


def _tie_key(perm_seed: int, c: int) -> int:
    return mix64((perm_seed + (c + 1) * GOLDEN) & MASK64)


def greedy_cover(
    xs: list[int],
    ys: list[int],
    cw: int,
    ch: int,
    boxes: np.ndarray,
    jitter: bool,
    perm_seed: int,
    keep_above: int,
) -> list[tuple[int, ...]]:
    """Greedy cover of ``boxes`` (float64 (B, 4), canvas px) by the grid of chips.

    Returns (x1, y1, x2, y2, count) per picked chip, in pick order.
    """
    # Candidates in row-major order: index c = iy * len(xs) + ix.
    cx = np.array([x for _ in ys for x in xs], dtype=np.float64)
    cy = np.array([y for y in ys for _ in xs], dtype=np.float64)
    contains = (
        (cx[:, None] <= boxes[None, :, 0])
        & (boxes[None, :, 2] <= cx[:, None] + cw)
        & (cy[:, None] <= boxes[None, :, 1])
        & (boxes[None, :, 3] <= cy[:, None] + ch)
    )
    contains = contains[:, contains.any(axis=0)]  # only boxes some chip can cover
    uncovered = np.ones(contains.shape[1], dtype=bool)
    picked = []
    while True:
        counts = contains[:, uncovered].sum(axis=1)
        best_count = int(counts.max()) if len(counts) else 0
        if best_count <= keep_above or best_count == 0:
            break
        ties = np.flatnonzero(counts == best_count)
        best = int(ties[0])
        if jitter:
            best = min(ties.tolist(), key=lambda c: (_tie_key(perm_seed, c), c))
        picked.append(
            (int(cx[best]), int(cy[best]), int(cx[best]) + cw, int(cy[best]) + ch, best_count)
        )
        uncovered &= ~contains[best]
    return picked


def _scale_setup(scale_row, height, width, chip_size, stride, jitter, rng):
    factor = _factor_from_row(scale_row, height, width)
    canvas_w, canvas_h = scaled_length(width, factor), scaled_length(height, factor)
    ox = oy = perm_seed = 0
    if jitter:
        ox, oy, perm_seed = rng.below(stride), rng.below(stride), rng.next()
    xs = grid_positions(canvas_w, chip_size, stride, ox)
    ys = grid_positions(canvas_h, chip_size, stride, oy)
    return factor, canvas_w, canvas_h, xs, ys, perm_seed


def _valid_on_canvas(boxes, lo, hi, factor, canvas_w, canvas_h) -> np.ndarray:
    b = boxes.astype(np.float64)
    size = box_sizes(b)
    keep = (size > 0) & in_range(size, lo, hi)
    b = b[keep] * factor
    return np.minimum(b, [canvas_w, canvas_h, canvas_w, canvas_h])


def _plan_image(
    boxes,
    height,
    width,
    scales,
    ranges,
    chip_size,
    stride,
    jitter,
    seed,
    keep_above,
    positives=None,
):
    rng = SplitMix64(seed)
    out = []
    for s, row in enumerate(scales):
        factor, cw_canvas, ch_canvas, xs, ys, perm_seed = _scale_setup(
            row, height, width, chip_size, stride, jitter, rng
        )
        b = _valid_on_canvas(boxes, ranges[s, 0], ranges[s, 1], factor, cw_canvas, ch_canvas)
        if positives is not None:  # negative planning: drop proposals inside positive chips
            scale_idx, chips = positives
            q = chips[scale_idx == s].astype(np.float64)
            inside = (
                (q[:, None, 0] <= b[None, :, 0])
                & (b[None, :, 2] <= q[:, None, 2])
                & (q[:, None, 1] <= b[None, :, 1])
                & (b[None, :, 3] <= q[:, None, 3])
            )
            b = b[~inside.any(axis=0)]
        cw, ch = min(chip_size, cw_canvas), min(chip_size, ch_canvas)
        for x1, y1, x2, y2, count in greedy_cover(
            xs, ys, cw, ch, b, jitter, perm_seed, int(keep_above[s])
        ):
            out.append((s, factor, x1, y1, x2, y2, count))
    return out


def _chips_dict(rows: list[tuple]) -> dict:
    return {
        "image_index": np.array([r[0] for r in rows], dtype=np.int32),
        "scale_index": np.array([r[1] for r in rows], dtype=np.int32),
        "chips_scaled": np.array([r[3:7] for r in rows], dtype=np.int32).reshape(-1, 4),
        "factors": np.array([r[2] for r in rows], dtype=np.float64),
        "counts": np.array([r[7] for r in rows], dtype=np.int32),
    }


def plan_positive_batch(
    boxes, box_splits, image_sizes, scales, ranges, chip_size, stride, jitter, seeds, num_threads
):
    """Twin of ``_planner.plan_positive_batch``."""
    rows = []
    keep_above = np.zeros(len(scales), dtype=np.int64)
    for i, (height, width) in enumerate(image_sizes):
        b = boxes[box_splits[i] : box_splits[i + 1]]
        for chip in _plan_image(
            b,
            int(height),
            int(width),
            scales,
            ranges,
            chip_size,
            stride,
            jitter,
            int(seeds[i]),
            keep_above,
        ):
            rows.append((i, *chip))
    return _chips_dict(rows)


def plan_positive_image(boxes, height, width, scales, ranges, chip_size, stride, jitter, seed):
    """Twin of ``_planner.plan_positive_image``: checks the boxes of one image, then plans.

    Returns (scale_index, chips_scaled, factors, counts).
    """
    b = as_boxes(boxes, "boxes")
    check_inside(b, np.full(len(b), height), np.full(len(b), width), "boxes")
    sizes = np.array([[height, width]], dtype=np.int64)
    splits = np.array([0, len(b)], dtype=np.int64)
    seeds = np.array([seed], dtype=np.uint64)
    raw = plan_positive_batch(b, splits, sizes, scales, ranges, chip_size, stride, jitter, seeds, 1)
    return raw["scale_index"], raw["chips_scaled"], raw["factors"], raw["counts"]


def plan_negative_batch(
    proposals,
    proposal_splits,
    positive_scale_index,
    positive_chips,
    positive_splits,
    image_sizes,
    scales,
    ranges,
    min_proposals,
    chip_size,
    stride,
    jitter,
    seeds,
    num_threads,
):
    """Twin of ``_planner.plan_negative_batch``."""
    rows = []
    for i, (height, width) in enumerate(image_sizes):
        p = proposals[proposal_splits[i] : proposal_splits[i + 1]]
        a, b = positive_splits[i], positive_splits[i + 1]
        positives = (positive_scale_index[a:b], positive_chips[a:b])
        for chip in _plan_image(
            p,
            int(height),
            int(width),
            scales,
            ranges,
            chip_size,
            stride,
            jitter,
            int(seeds[i]),
            min_proposals,
            positives,
        ):
            rows.append((i, *chip))
    return _chips_dict(rows)


def assign_boxes_batch(
    chip_image_index,
    chips_scaled,
    factors,
    chip_ranges,
    boxes,
    box_splits,
    crowd,
    min_inside,
    min_box_size,
    num_threads,
):
    """Twin of ``_planner.assign_boxes_batch``."""
    valid_counts, ignore_counts = [], []
    valid_index, valid_boxes, ignore_index, ignore_boxes = [], [], [], []
    for k in range(len(chips_scaled)):
        first, last = box_splits[chip_image_index[k]], box_splits[chip_image_index[k] + 1]
        b = boxes[first:last].astype(np.float64)
        flags = crowd[first:last]
        c = chips_scaled[k].astype(np.float64)
        f = float(factors[k])
        bs = b * f
        ix1, iy1 = np.maximum(bs[:, 0], c[0]), np.maximum(bs[:, 1], c[1])
        ix2, iy2 = np.minimum(bs[:, 2], c[2]), np.minimum(bs[:, 3], c[3])
        iw, ih = ix2 - ix1, iy2 - iy1
        kept = (iw > 0) & (ih > 0) & (iw >= min_box_size) & (ih >= min_box_size)
        size = box_sizes(b)
        with np.errstate(divide="ignore", invalid="ignore"):
            inside = (iw * ih) / ((bs[:, 2] - bs[:, 0]) * (bs[:, 3] - bs[:, 1]))
        lo, hi = chip_ranges[k]
        valid = kept & (flags == 0) & in_range(size, lo, hi) & (inside >= min_inside)
        ignore = kept & ~valid
        clipped = np.stack([ix1 - c[0], iy1 - c[1], ix2 - c[0], iy2 - c[1]], axis=1)
        for mask, index, dst, counts in (
            (valid, valid_index, valid_boxes, valid_counts),
            (ignore, ignore_index, ignore_boxes, ignore_counts),
        ):
            index.append(np.flatnonzero(mask))
            dst.append(clipped[mask].astype(np.float32))
            counts.append(int(mask.sum()))

    def cat(parts, dtype, cols):
        if not parts:
            return np.zeros((0, cols) if cols > 1 else (0,), dtype=dtype)
        return np.concatenate(parts).astype(dtype)

    def splits(counts):
        return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)

    return {
        "valid_splits": splits(valid_counts),
        "valid_index": cat(valid_index, np.int64, 1),
        "valid_boxes": cat(valid_boxes, np.float32, 4),
        "ignore_splits": splits(ignore_counts),
        "ignore_index": cat(ignore_index, np.int64, 1),
        "ignore_boxes": cat(ignore_boxes, np.float32, 4),
    }
