"""FocusChip geometry of the cascade: FocusPixel maps -> FocusChips (image px), image px ->
canvas windows, merging overlapping chips.

Frames (docs/design.md section 3, `sniper.structures`): *image* px of the original image;
*canvas* px of the image resized by a scale's factor `f` (`canvas = image * f`); a *window*
is an integer XYXY box on a canvas, the network input cut by `sniper.image_ops.cut_chip`.
Boxes are XYXY with exclusive right/bottom edges.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from chipping import focus_chips_batch, focus_chips_to_image

from .structures import FocusMap

__all__ = ["canvas_window", "focus_chips_from_maps", "merge_overlapping"]

_EPS = 1e-6  # tolerance of floor/ceil on products like 352.0000001


def canvas_window(
    chip_img: Sequence[float], factor: float, canvas_size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """The canvas window holding a chip given in image px, rounded outward.

    Args:
        chip_img: XYXY image px.
        factor: the scale's resize factor.
        canvas_size: `(height, width)` of the canvas (`chipping.scaled_size`).

    Returns:
        int XYXY canvas px `(floor(x1 f), floor(y1 f), ceil(x2 f), ceil(y2 f))` clipped to the
        canvas, at least 1 px wide and high.
    """
    height, width = canvas_size
    x1, y1, x2, y2 = (float(v) * factor for v in chip_img)
    cx1 = min(max(math.floor(x1 + _EPS), 0), width - 1)
    cy1 = min(max(math.floor(y1 + _EPS), 0), height - 1)
    cx2 = max(min(math.ceil(x2 - _EPS), width), cx1 + 1)
    cy2 = max(min(math.ceil(y2 - _EPS), height), cy1 + 1)
    return cx1, cy1, cx2, cy2


def _overlaps(a: Sequence[float], b: Sequence[float]) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def _union(a: Sequence[float], b: Sequence[float]) -> list[float]:
    return [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]


def _area(a: Sequence[float]) -> float:
    return (a[2] - a[0]) * (a[3] - a[1])


def _ring(outer: Sequence[float], inner: Sequence[float]) -> list[list[float]]:
    """``outer`` minus ``inner`` (``inner`` inside ``outer``) as up to 4 rectangles."""
    x1, y1, x2, y2 = outer
    a1, b1, a2, b2 = inner
    parts = [[x1, y1, a1, y2], [a2, y1, x2, y2], [a1, y1, a2, b1], [a1, b2, a2, y2]]
    return [p for p in parts if p[2] > p[0] and p[3] > p[1]]


class _Grid:
    """Disjoint rectangles (``boxes``: id -> XYXY) indexed by the square buckets of side
    ``cell`` that they cover. A rectangle absorbed into another is dropped from ``boxes`` only
    (its bucket entries go stale and are skipped); a growing union keeps its id and is added
    to the buckets of the area it gains."""

    def __init__(self, cell: float) -> None:
        self.cell = cell
        self.buckets: dict[tuple[int, int], set[int]] = {}
        self.boxes: dict[int, list[float]] = {}

    def _keys(self, box: Sequence[float]) -> list[tuple[int, int]]:
        c = self.cell
        x0, y0 = math.floor(box[0] / c), math.floor(box[1] / c)
        xs = range(x0, max(math.ceil(box[2] / c), x0 + 1))
        ys = range(y0, max(math.ceil(box[3] / c), y0 + 1))
        return [(x, y) for y in ys for x in xs]

    def overlapping(self, regions: Sequence[Sequence[float]], box: Sequence[float]) -> set[int]:
        """Ids of the stored rectangles in the buckets of ``regions`` that overlap ``box``."""
        found: set[int] = set()
        for region in regions:
            for key in self._keys(region):
                for i in self.buckets.get(key, ()):
                    if i in self.boxes and i not in found and _overlaps(self.boxes[i], box):
                        found.add(i)
        return found

    def cover(self, key_id: int, regions: Sequence[Sequence[float]]) -> None:
        """Add ``key_id`` to the buckets of ``regions``."""
        for region in regions:
            for key in self._keys(region):
                self.buckets.setdefault(key, set()).add(key_id)

    def insert(self, key_id: int, box: list[float]) -> None:
        """Store ``box``, absorbing every stored rectangle its growing union overlaps."""
        hits = self.overlapping([box], box)
        base_id, base = key_id, box
        self.boxes[key_id] = box
        self.cover(key_id, [box])
        while hits:
            union = base
            for hit in hits:
                union = _union(union, self.boxes[hit])
            largest = max(hits, key=lambda i: _area(self.boxes[i]))
            if _area(self.boxes[largest]) > _area(base):  # grow the largest in place
                base_id, base = largest, self.boxes[largest]
            for i in {*hits, key_id} - {base_id}:
                self.boxes.pop(i, None)
            # anything else that overlaps the union lies in the area the base gains
            gained = _ring(union, base)
            self.boxes[base_id] = base = union
            self.cover(base_id, gained)
            hits = self.overlapping(gained, union) - {base_id}
            key_id = base_id


def merge_overlapping(rects: np.ndarray) -> np.ndarray:
    """Replace rectangles that overlap (positive-area intersection) by their union, until
    none overlap.

    The result of that rule is unique (it does not depend on the order of the unions), so
    the rectangles are inserted one at a time into a set of disjoint ones: an inserted
    rectangle absorbs every stored one it overlaps, as often as the growing union meets
    more. Stored rectangles are found through square buckets (side: the median rectangle
    side) and a union is searched only in the area it gains, so the cost grows with the
    number of rectangles and with the area their unions cover in buckets (at most the image
    area over the squared median chip side), not with the square of their number.

    Args:
        rects: float `(K, 4)` XYXY, finite.

    Returns:
        float32 `(K', 4)`, `K' <= K`, sorted by (y1, x1, y2, x2).
    """
    boxes = np.asarray(rects, np.float64).reshape(-1, 4)
    if not np.isfinite(boxes).all():
        raise ValueError("merge_overlapping: rects must be finite")
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    cell = float(np.median(sides)) if len(boxes) else 1.0
    grid = _Grid(cell if cell > 0 else 1.0)
    for key_id, row in enumerate(boxes.tolist()):
        grid.insert(key_id, row)
    out = np.asarray(list(grid.boxes.values()), np.float32).reshape(-1, 4)
    order = np.lexsort((out[:, 2], out[:, 3], out[:, 0], out[:, 1]))
    return out[order]


def focus_chips_from_maps(
    maps: Sequence[FocusMap],
    image_index: Sequence[int],
    sizes: Sequence[tuple[int, int]],
    threshold: float,
    dilation: int,
    min_size: int,
    *,
    num_threads: int = 0,
) -> list[np.ndarray]:
    """The FocusChips of one transition (docs/design.md section 5), per image.

    Every map is turned into cell rectangles by `chipping.focus_chips_batch` (threshold t,
    dilation d, minimum side k), mapped to image px with `chipping.focus_chips_to_image`
    (the map's stride, factor and offset); the chips of one image (from all its maps) that
    overlap are merged into their union until none overlap.

    Args:
        maps: the FocusPixel maps of the network inputs of one scale (any images).
        image_index: which image each map belongs to (`0 <= i < len(sizes)`).
        sizes: `(height, width)` of every image (image px).
        threshold, dilation, min_size: t (probability), d and k (cells) of the transition.
        num_threads: threads of `focus_chips_batch` (0 = all cores).

    Returns:
        One float32 `(K_i, 4)` XYXY image px array per image (non-empty chips, disjoint,
        sorted as `merge_overlapping` sorts).
    """
    if len(maps) != len(image_index):
        raise ValueError(
            f"focus_chips_from_maps: {len(maps)} maps but {len(image_index)} image indices"
        )
    per_image: list[list[np.ndarray]] = [[] for _ in sizes]
    if maps:
        rects, which = focus_chips_batch(
            [np.asarray(m.prob, np.float32) for m in maps],
            threshold,
            dilation,
            min_size,
            num_threads=num_threads,
        )
        for m, (fmap, i) in enumerate(zip(maps, image_index, strict=True)):
            mine = rects[which == m]
            if len(mine):
                per_image[i].append(
                    focus_chips_to_image(mine, fmap.stride, fmap.factor, sizes[i], fmap.offset)
                )
    chips = []
    for parts in per_image:
        c = np.concatenate(parts) if parts else np.zeros((0, 4), np.float32)
        c = c[(c[:, 2] > c[:, 0]) & (c[:, 3] > c[:, 1])]
        chips.append(merge_overlapping(c))
    return chips
