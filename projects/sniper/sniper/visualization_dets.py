"""Drawing detections: boxes coloured by class with a "name 0.93" label.

Takes and returns uint8 ``(H, W, 3)`` images in RGB order and never modifies its input.
Colours are RGB. (Chips and GT boxes coloured by scale are drawn by ``sniper.visualization``.)
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import cv2
import numpy as np

__all__ = ["class_color", "class_label", "draw_detections"]


def class_color(class_id: int) -> tuple[int, int, int]:
    """A bright, well separated RGB colour for contiguous class ``class_id`` (golden-ratio hue)."""
    hue = (0.61803398875 * (int(class_id) + 1)) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def class_label(class_id: int, class_names: Sequence[str] | None) -> str:
    """``class_names[class_id]``, or ``"class k"`` when no name is known for it."""
    if class_names is not None and 0 <= int(class_id) < len(class_names):
        return str(class_names[int(class_id)])
    return f"class {int(class_id)}"


def draw_detections(
    image: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    class_names: Sequence[str] | None = None,
    score_thresh: float = 0.0,
) -> np.ndarray:
    """Draw detections scoring at least ``score_thresh`` on a copy of ``image``.

    Args:
        image: uint8 ``(H, W, 3)`` RGB.
        boxes: float ``(N, 4)`` XYXY in image px (exclusive right/bottom edge).
        scores: float ``(N,)``.
        classes: int ``(N,)`` contiguous class ids 0..C-1.
        class_names: names indexed by class id (``"class k"`` for unknown ids).
        score_thresh: detections below it are not drawn.

    Returns:
        A new uint8 ``(H, W, 3)`` RGB image; lower-scoring detections are drawn first so the
        best ones stay on top.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    out = np.ascontiguousarray(image.copy())
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    classes = np.asarray(classes).reshape(-1)
    if not len(boxes) == len(scores) == len(classes):
        raise ValueError(f"got {len(boxes)} boxes, {len(scores)} scores, {len(classes)} classes")
    height, width = out.shape[:2]
    thick = max(1, int(round(max(height, width) / 600)))
    font_scale = max(0.4, max(height, width) / 1600)
    for i in np.argsort(scores, kind="stable"):
        if scores[i] < score_thresh:
            continue
        color = class_color(int(classes[i]))
        x1, y1, x2, y2 = (int(round(v)) for v in boxes[i])
        cv2.rectangle(out, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), color, thick)
        text = f"{class_label(int(classes[i]), class_names)} {scores[i]:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        # Label above the box, or inside it when the box touches the top edge.
        top = y1 - th - base if y1 - th - base >= 0 else y1
        left = min(max(x1, 0), max(0, width - tw))
        cv2.rectangle(out, (left, top), (left + tw, top + th + base), color, -1)
        ink = (0, 0, 0) if sum(color) > 3 * 150 else (255, 255, 255)
        cv2.putText(
            out, text, (left, top + th), cv2.FONT_HERSHEY_SIMPLEX, font_scale, ink, 1, cv2.LINE_AA
        )
    return out
