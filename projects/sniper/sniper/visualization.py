"""Drawing helpers: training chips per scale and GT boxes coloured by their valid scale.

All functions take and return uint8 ``(H, W, 3)`` images in RGB order and never modify their
input. Colours are RGB.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from chipping.scales import box_sizes, in_range, parse_ranges

SCALE_COLORS = [
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
]
NOT_VALID_COLOR = (200, 200, 200)


def scale_color(scale_index: int) -> tuple[int, int, int]:
    """RGB colour of scale ``scale_index``."""
    return SCALE_COLORS[scale_index % len(SCALE_COLORS)]


def valid_scale_of_boxes(boxes: np.ndarray, valid_ranges: Sequence) -> np.ndarray:
    """int ``(N,)``: the first scale whose valid range holds each box's size, -1 if none."""
    ranges = parse_ranges([list(r) for r in valid_ranges])
    size = box_sizes(boxes)
    ok = np.stack([in_range(size, lo, hi) for lo, hi in ranges], axis=1).reshape(len(size), -1)
    return np.where(ok.any(axis=1), ok.argmax(axis=1), -1)


def _rect(img: np.ndarray, box, color, thickness: int) -> None:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    cv2.rectangle(img, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), color, thickness)


def draw_chips(
    image: np.ndarray,
    chips_img: np.ndarray,
    chip_scales: np.ndarray,
    boxes: np.ndarray | None = None,
    valid_ranges: Sequence | None = None,
    scale_names: Sequence[str] | None = None,
) -> np.ndarray:
    """Draws chips (image px, coloured by scale) and GT boxes (coloured by valid scale).

    Args:
        image: uint8 ``(H, W, 3)`` RGB.
        chips_img: float ``(K, 4)`` XYXY chips in image px.
        chip_scales: int ``(K,)`` scale index of each chip.
        boxes: float ``(N, 4)`` GT boxes in image px; coloured by the first scale whose
            ``valid_ranges`` entry holds their size (grey if none).
        scale_names: legend labels per scale.
    """
    out = np.ascontiguousarray(image.copy())
    thick = max(2, int(round(max(out.shape[:2]) / 400)))
    if boxes is not None and len(boxes):
        which = (
            valid_scale_of_boxes(boxes, valid_ranges)
            if valid_ranges is not None
            else np.full(len(boxes), -1)
        )
        for b, s in zip(np.asarray(boxes).reshape(-1, 4), which, strict=True):
            _rect(out, b, scale_color(int(s)) if s >= 0 else NOT_VALID_COLOR, 1)
    for c, s in zip(np.asarray(chips_img).reshape(-1, 4), chip_scales, strict=True):
        _rect(out, c, scale_color(int(s)), thick)
    if scale_names:
        for s, name in enumerate(scale_names):
            y = 22 + 26 * s
            cv2.rectangle(out, (6, y - 16), (26, y + 4), scale_color(s), -1)
            cv2.putText(
                out,
                str(name),
                (32, y),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.6,
                (255, 255, 255),
                2,
                cv2.LINE_AA,
            )
    return out
