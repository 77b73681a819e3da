"""How well FocusChips fit the objects that need a finer scale: missing rate and empty rate.

numpy only (no torch). Frames: every box and window here is float XYXY in *image* px of the
original image, exclusive right/bottom edge (docs/design.md section 3). Scales are indexed
`0..S-1` coarse to fine; transition `s` is `s -> s+1`; `valid_ranges` are the cascade's
half-open kept ranges `[lo, hi)` of box size `sqrt(w * h)` (image px, `chipping.scales`).

Definitions, for transition `s` of one image:

* A GT box (non-crowd: dataset records keep crowd boxes apart, in `crowd_boxes`, and they
  are never used here) *needs a finer scale* than `s` when its size lies in the valid range
  of some finer scale `s' > s` and in none of the ranges of scales `0..s`: a box the cascade
  can keep at scale `s` or coarser does not need any FocusChip.
* The region *reached* at scale `s` is the union of the windows processed there (scale 0:
  the whole image). A box needing a finer scale that lies fully inside one reached window is
  *responsible* for transition `s`: the FocusChips of scale `s` can find it. Boxes that
  already fell out at an earlier transition count in that transition's missing rate only.
* A responsible box is *covered* when it lies fully inside one FocusChip of the transition
  (the windows processed at scale `s+1`), give or take `tolerance` image px (a box may stick
  out of a chip by that much on each side; a negative tolerance demands that margin inside).
  `missing_rate = (responsible - covered) / responsible` (0 without responsible boxes).
* `empty_rate` = the part of the FocusChips' union area covered by no box needing a finer
  scale, over that union area (0 without chips). Areas are exact (coordinate compression:
  windows may overlap, as tiles of one chip do, and boxes overlap each other).

Windows are tested one by one: a box counts as inside only when one window holds it whole
(as the network sees it), not when it spans two tiles or chips.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from chipping.scales import box_sizes, in_range

__all__ = [
    "FocusStats",
    "TransitionCounts",
    "boxes_inside",
    "needs_finer_scale",
    "transition_counts",
    "union_area",
]


@dataclass
class TransitionCounts:
    """Counts of one transition, summable over images (module doc).

    Attributes:
        responsible: boxes needing a finer scale inside the region reached at scale `s`.
        missed: of those, the boxes inside no FocusChip.
        chip_area: union area of the FocusChips (image px squared).
        empty_area: of it, the area covered by no box needing a finer scale (image px squared).
    """

    responsible: int = 0
    missed: int = 0
    chip_area: float = 0.0
    empty_area: float = 0.0

    def __iadd__(self, other: TransitionCounts) -> TransitionCounts:
        self.responsible += other.responsible
        self.missed += other.missed
        self.chip_area += other.chip_area
        self.empty_area += other.empty_area
        return self

    @property
    def missing_rate(self) -> float:
        """`missed / responsible`, 0.0 without responsible boxes."""
        return self.missed / self.responsible if self.responsible else 0.0

    @property
    def coverage(self) -> float:
        """`1 - missing_rate`."""
        return 1.0 - self.missing_rate

    @property
    def empty_rate(self) -> float:
        """`empty_area / chip_area`, 0.0 without chips."""
        return self.empty_area / self.chip_area if self.chip_area > 0 else 0.0


def _boxes(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x, np.float64).reshape(-1, 4)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite XYXY boxes")
    return arr


def needs_finer_scale(
    boxes_img: np.ndarray, valid_ranges: Sequence[Sequence[float]], s: int
) -> np.ndarray:
    """bool `(N,)`: box size in some range of scales `> s` and in none of scales `0..s`.

    Args:
        boxes_img: float `(N, 4)` XYXY image px.
        valid_ranges: S `(lo, hi)` ranges, `hi` may be inf (parsed, e.g. `CascadeParams`).
        s: the transition `s -> s+1`, `0 <= s < S - 1`.
    """
    if not 0 <= s < len(valid_ranges) - 1:
        raise ValueError(f"transition s = {s} outside 0..{len(valid_ranges) - 2}")
    sizes = box_sizes(_boxes(boxes_img, "boxes_img"))
    hits = [in_range(sizes, float(lo), float(hi)) for lo, hi in valid_ranges]
    coarse = np.logical_or.reduce(hits[: s + 1])
    fine = np.logical_or.reduce(hits[s + 1 :])
    return fine & ~coarse


def boxes_inside(boxes_img: np.ndarray, windows: np.ndarray, tolerance: float = 0.0) -> np.ndarray:
    """bool `(N,)`: box fully inside at least one window, each window grown by `tolerance`
    px on every side (float `(N, 4)` and `(K, 4)` XYXY, one frame)."""
    b, w = _boxes(boxes_img, "boxes_img"), _boxes(windows, "windows")
    if not len(b) or not len(w):
        return np.zeros(len(b), bool)
    t = float(tolerance)
    inside = (
        (b[:, None, 0] >= w[None, :, 0] - t)
        & (b[:, None, 1] >= w[None, :, 1] - t)
        & (b[:, None, 2] <= w[None, :, 2] + t)
        & (b[:, None, 3] <= w[None, :, 3] + t)
    )
    return inside.any(axis=1)


_BLOCK_CELLS = 1 << 22  # compressed cells held at once (memory bound of union_area)


def _row_events(rects: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """int64 `(3, 4 N)` sparse 2-D difference array of `rects` as `(row, col, value)`
    columns: `+1` at `(y1, x1)` and `(y2, x2)`, `-1` at `(y1, x2)` and `(y2, x1)`, in indices
    of the compressed coordinates `ys`, `xs` (its 2-D prefix sum counts the rectangles over
    each compressed cell)."""
    x1, x2 = np.searchsorted(xs, rects[:, 0]), np.searchsorted(xs, rects[:, 2])
    y1, y2 = np.searchsorted(ys, rects[:, 1]), np.searchsorted(ys, rects[:, 3])
    row = np.concatenate([y1, y1, y2, y2])
    col = np.concatenate([x1, x2, x1, x2])
    val = np.repeat(np.array([1, -1, -1, 1], np.int64), len(rects))
    return np.stack([row, col, val])


def _covered_blocks(events: np.ndarray, width: int, rows: int, block: int) -> Iterator[np.ndarray]:
    """Yield bool `(b, width - 1)` blocks of compressed rows: cell covered by a rectangle."""
    carry = np.zeros(width, np.int64)
    for start in range(0, rows, block):
        stop = min(start + block, rows)
        diff = np.zeros((stop - start, width), np.int64)
        keep = (events[0] >= start) & (events[0] < stop)
        np.add.at(diff, (events[0, keep] - start, events[1, keep]), events[2, keep])
        running = carry + diff.cumsum(0)
        carry = running[-1]
        yield running.cumsum(1)[:, :-1] > 0


def union_area(rects: np.ndarray, within: np.ndarray | None = None) -> float:
    """Exact area of the union of `rects` (float `(N, 4)` XYXY), or of its intersection with
    the union of `within` (float `(M, 4)`), by coordinate compression (swept in bands of
    rows, so memory stays bounded). Empty rectangles add nothing."""
    a = _boxes(rects, "rects")
    a = a[(a[:, 2] > a[:, 0]) & (a[:, 3] > a[:, 1])]
    b = a if within is None else _boxes(within, "within")
    b = b[(b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])]
    if not len(a) or not len(b):
        return 0.0
    xs = np.unique(np.concatenate([a[:, [0, 2]].ravel(), b[:, [0, 2]].ravel()]))
    ys = np.unique(np.concatenate([a[:, [1, 3]].ravel(), b[:, [1, 3]].ravel()]))
    rows, block = len(ys) - 1, max(1, _BLOCK_CELLS // len(xs))
    heights, widths = np.diff(ys), np.diff(xs)
    blocks = _covered_blocks(_row_events(a, xs, ys), len(xs), rows, block)
    if within is not None:
        other = _covered_blocks(_row_events(b, xs, ys), len(xs), rows, block)
        blocks = (p & q for p, q in zip(blocks, other, strict=True))
    area, start = 0.0, 0
    for cells in blocks:
        h = heights[start : start + len(cells)]
        area += float((cells * widths[None, :]).sum(axis=1) @ h)
        start += len(cells)
    return area


def transition_counts(
    boxes_img: np.ndarray,
    valid_ranges: Sequence[Sequence[float]],
    s: int,
    reached: np.ndarray,
    chips: np.ndarray,
    tolerance: float = 0.0,
) -> TransitionCounts:
    """The counts of transition `s` of one image (module doc).

    Args:
        boxes_img: float `(N, 4)` non-crowd GT boxes, image px.
        valid_ranges: the cascade's S ranges (parsed: `hi` may be inf).
        s: the transition, `0 <= s < S - 1`.
        reached: float `(R, 4)` windows processed at scale `s` (image px).
        chips: float `(K, 4)` FocusChips of the transition: the windows processed at scale
            `s+1` (image px).
        tolerance: px a box may stick out of a window and still count as inside.
    """
    boxes = _boxes(boxes_img, "boxes_img")
    finer = boxes[needs_finer_scale(boxes, valid_ranges, s)]
    responsible = finer[boxes_inside(finer, reached, tolerance)]
    covered = boxes_inside(responsible, chips, tolerance)
    chip_area = union_area(chips)
    return TransitionCounts(
        responsible=len(responsible),
        missed=int((~covered).sum()),
        chip_area=chip_area,
        empty_area=chip_area - union_area(finer, within=chips),
    )


class FocusStats:
    """Sums `TransitionCounts` per transition over the images of an evaluation.

    Args:
        valid_ranges: the cascade's S ranges (parsed, `CascadeParams.valid_ranges`).
        tolerance: as `transition_counts`.
    """

    def __init__(self, valid_ranges: Sequence[Sequence[float]], tolerance: float = 0.0) -> None:
        self.valid_ranges = [tuple(float(v) for v in r) for r in valid_ranges]
        self.tolerance = float(tolerance)
        self.counts = [TransitionCounts() for _ in range(max(len(self.valid_ranges) - 1, 0))]

    def add(self, record: Mapping[str, Any], output: Mapping[str, Any]) -> None:
        """Add one image: `record["boxes"]` (float `(N, 4)` image px, non-crowd GT) and the
        cascade's `output["chips_per_scale"]` (S float `(K_s, 4)` image px windows)."""
        chips = output["chips_per_scale"]
        if len(chips) != len(self.valid_ranges):
            raise ValueError(
                f"chips_per_scale has {len(chips)} scales, the ranges {len(self.valid_ranges)}"
            )
        boxes = record.get("boxes", np.zeros((0, 4)))
        for s, total in enumerate(self.counts):
            total += transition_counts(
                boxes, self.valid_ranges, s, chips[s], chips[s + 1], self.tolerance
            )

    def merge(self, others: Sequence[list[TransitionCounts]]) -> None:
        """Add the `counts` lists of other accumulators (e.g. gathered from other ranks)."""
        for other in others:
            for total, part in zip(self.counts, other, strict=True):
                total += part

    def summary(self) -> dict[str, float]:
        """Per transition `s`: `missing_rate_t<s>`, `empty_rate_t<s>` (fractions),
        `responsible_boxes_t<s>`, `missed_boxes_t<s>` and `chip_area_t<s>` (image px squared)."""
        out: dict[str, float] = {}
        for s, c in enumerate(self.counts):
            out[f"missing_rate_t{s}"] = c.missing_rate
            out[f"empty_rate_t{s}"] = c.empty_rate
            out[f"responsible_boxes_t{s}"] = float(c.responsible)
            out[f"missed_boxes_t{s}"] = float(c.missed)
            out[f"chip_area_t{s}"] = c.chip_area
        return out

    def describe(self) -> str:
        """One phrase per transition: `t0: missing 0.0100 (2/200 boxes), empty 0.8123`."""
        parts = [
            f"t{s}: missing {c.missing_rate:.4f} ({c.missed}/{c.responsible} boxes), "
            f"empty {c.empty_rate:.4f}"
            for s, c in enumerate(self.counts)
        ]
        return "; ".join(parts) or "(one scale: no transition)"
