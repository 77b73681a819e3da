"""Slow, readable pure-numpy twin of the compiled FocusChips (``focus_chips.cpp``): dilation,
8-connected components, growth to the minimum size and the merge of overlapping rectangles.
Part of the test oracle ``chipping._reference``, which re-exports every name here.
"""

from __future__ import annotations

import numpy as np


def _dilate(on: np.ndarray, dilation: int) -> np.ndarray:
    """Square dilation: each on cell spreads (d-1)//2 cells up/left and d//2 down/right.

    Separable, with window counts from cumulative sums: O(h * w) whatever the dilation.
    """
    if dilation <= 1:
        return on
    before, after = (dilation - 1) // 2, dilation // 2
    out = on
    for axis in (1, 0):
        n = out.shape[axis]
        counts = np.cumsum(out, axis=axis, dtype=np.int64)
        counts = np.concatenate([np.zeros_like(counts.take([0], axis=axis)), counts], axis=axis)
        # cell i is on if a source lies in [i - after, i + before] (clipped to the line)
        hi = np.minimum(np.arange(n) + before + 1, n)
        lo = np.maximum(np.arange(n) - after, 0)
        out = (counts.take(hi, axis=axis) - counts.take(lo, axis=axis)) > 0
    return out


def _component_boxes(on: np.ndarray) -> list[list[int]]:
    """Bounding boxes [x1, y1, x2, y2) of 8-connected components, by first cell in raster order."""
    height, width = on.shape
    seen = np.zeros_like(on)
    boxes = []
    for y0, x0 in np.argwhere(on):
        if seen[y0, x0]:
            continue
        seen[y0, x0] = True
        stack, cells = [(y0, x0)], []
        while stack:
            y, x = stack.pop()
            cells.append((y, x))
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = y + dy, x + dx
                    if 0 <= ny < height and 0 <= nx < width and on[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        stack.append((ny, nx))
        ys, xs = zip(*cells, strict=True)
        boxes.append([min(xs), min(ys), max(xs) + 1, max(ys) + 1])
    return boxes


def _grow(lo: int, hi: int, size: int, limit: int) -> tuple[int, int]:
    if hi - lo >= size:
        return lo, hi
    if size >= limit:
        return 0, limit
    new_lo = lo - (size - (hi - lo)) // 2
    new_lo = max(0, min(new_lo, limit - size))
    return new_lo, new_lo + size


def _merge(rects: list[list[int]], height: int, width: int) -> list[list[int]]:
    """Union overlapping rectangles until none overlap (the fixed point is order-independent).

    Inserts the rectangles one at a time into a set of disjoint live ones, kept in a map of
    cells -> live id: a rectangle inside the live one of its top-left cell is absorbed;
    otherwise it grows to the hull of the live ones under it until that is stable, replaces
    them and is painted. O(h * w + the area of the rectangles not absorbed), not quadratic
    in their number.
    """
    owner = np.full((height, width), -1, dtype=np.int64)
    live: dict[int, list[int]] = {}
    for new_id, rect in enumerate(rects):
        x1, y1, x2, y2 = rect
        first = int(owner[y1, x1])
        if first >= 0:
            a = live[first]
            if a[0] <= x1 and a[1] <= y1 and x2 <= a[2] and y2 <= a[3]:
                continue
        box = list(rect)
        while True:
            ids = np.unique(owner[box[1] : box[3], box[0] : box[2]])
            ids = [int(i) for i in ids if i >= 0]
            grown = [
                min([box[0]] + [live[i][0] for i in ids]),
                min([box[1]] + [live[i][1] for i in ids]),
                max([box[2]] + [live[i][2] for i in ids]),
                max([box[3]] + [live[i][3] for i in ids]),
            ]
            if grown == box:
                break
            box = grown
        for i in ids:
            del live[i]
        owner[box[1] : box[3], box[0] : box[2]] = new_id
        live[new_id] = box
    return list(live.values())


def focus_chips_map(
    prob: np.ndarray, threshold: float, dilation: int, min_size: int
) -> list[list[int]]:
    """FocusChips of one map, in cells, sorted by (y1, x1, y2, x2)."""
    if prob.size == 0:
        return []
    on = _dilate(prob.astype(np.float64) >= threshold, dilation)
    height, width = on.shape
    rects = []
    for x1, y1, x2, y2 in _component_boxes(on):
        x1, x2 = _grow(x1, x2, min_size, width)
        y1, y2 = _grow(y1, y2, min_size, height)
        rects.append([x1, y1, x2, y2])
    return sorted(_merge(rects, height, width), key=lambda r: (r[1], r[0], r[3], r[2]))


def focus_chips_batch(maps, map_shapes, map_offsets, threshold, dilation, min_size, num_threads):
    """Twin of ``_planner.focus_chips_batch``."""
    rects, index = [], []
    for i, (h, w) in enumerate(map_shapes):
        prob = maps[map_offsets[i] : map_offsets[i + 1]].reshape(int(h), int(w))
        found = focus_chips_map(prob, threshold, int(dilation), int(min_size))
        rects += found
        index += [i] * len(found)
    return {
        "rects": np.array(rects, dtype=np.int32).reshape(-1, 4),
        "map_index": np.array(index, dtype=np.int32),
    }
