"""FocusChip geometry of the cascade: image px -> canvas windows, merging overlapping chips.

Frames (docs/design.md section 3, `sniper.structures`): *image* px of the original image;
*canvas* px of the image resized by a scale's factor `f` (`canvas = image * f`); a *window*
is an integer XYXY box on a canvas, the network input cut by `sniper.image_ops.cut_chip`.
Boxes are XYXY with exclusive right/bottom edges.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["canvas_window", "merge_overlapping"]

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


def merge_overlapping(rects: np.ndarray) -> np.ndarray:
    """Replace rectangles that overlap (positive-area intersection) by their union, until
    none overlap.

    Args:
        rects: float `(K, 4)` XYXY.

    Returns:
        float32 `(K', 4)`, `K' <= K`, sorted by (y1, x1, y2, x2).
    """
    boxes = [list(map(float, r)) for r in np.asarray(rects, np.float64).reshape(-1, 4)]
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1]):
                    boxes[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    out = np.asarray(boxes, np.float32).reshape(-1, 4)
    order = np.lexsort((out[:, 2], out[:, 3], out[:, 0], out[:, 1]))
    return out[order]
