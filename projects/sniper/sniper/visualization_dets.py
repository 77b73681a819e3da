"""Drawing detections: boxes coloured by class with a "name 0.93" label, and instance
masks (COCO RLE) as a semi-transparent fill in the class colour with an outline.

Takes and returns uint8 ``(H, W, 3)`` images in RGB order and never modifies its input.
Colours are RGB. (Chips and GT boxes coloured by scale are drawn by ``sniper.visualization``.)
A mask is decoded only on its own bounding box (``pycocotools.mask.toBbox``, read from the
runs) with `sniper.rle_window.rle_window`, never as a full-image array.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from sniper.rle_window import rle_window

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


def _mask_window(rle: dict, height: int, width: int) -> tuple[np.ndarray, int, int] | None:
    """(bool mask on its bounding box, x0, y0) of an RLE of the image, None when empty.

    Raises:
        ValueError: an RLE that is not of the ``height`` x ``width`` image.
    """
    if not isinstance(rle, dict) or list(rle.get("size", ())) != [height, width]:
        got = rle.get("size") if isinstance(rle, dict) else type(rle).__name__
        raise ValueError(
            f"masks must be COCO RLE dicts of the {height}x{width} (HxW) image, got size {got!r}"
        )
    counts = rle["counts"]
    rle_b = dict(rle, counts=counts.encode("ascii")) if isinstance(counts, str) else rle
    if isinstance(counts, list):
        rle_b = mask_utils.frPyObjects(rle, height, width)
    x, y, w, h = (int(v) for v in mask_utils.toBbox(rle_b))
    if w <= 0 or h <= 0:
        return None
    return rle_window(rle, x, y, x + w, y + h), x, y


def _draw_mask(
    out: np.ndarray, rle: dict, color: tuple[int, int, int], alpha: float, thick: int
) -> None:
    """Blend ``color`` into ``out`` (in place) on the mask and draw its outline."""
    found = _mask_window(rle, *out.shape[:2])
    if found is None:
        return
    mask, x0, y0 = found
    window = out[y0 : y0 + mask.shape[0], x0 : x0 + mask.shape[1]]
    tint = np.asarray(color, np.float32)
    window[mask] = np.round(window[mask] * (1.0 - alpha) + tint * alpha).astype(np.uint8)
    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE, offset=(x0, y0)
    )
    cv2.drawContours(out, contours, -1, color, thick)


def draw_detections(
    image: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    class_names: Sequence[str] | None = None,
    score_thresh: float = 0.0,
    masks: Sequence[dict] | None = None,
    mask_alpha: float = 0.5,
) -> np.ndarray:
    """Draw detections scoring at least ``score_thresh`` on a copy of ``image``.

    Args:
        image: uint8 ``(H, W, 3)`` RGB.
        boxes: float ``(N, 4)`` XYXY in image px (exclusive right/bottom edge).
        scores: float ``(N,)``.
        classes: int ``(N,)`` contiguous class ids 0..C-1.
        class_names: names indexed by class id (``"class k"`` for unknown ids).
        score_thresh: detections below it are not drawn.
        masks: None, or N COCO RLE dicts of the image (``size`` ``[H, W]``, ``counts``
            str / bytes / run lengths), aligned with ``boxes``: each is filled with its
            class colour at ``mask_alpha`` and outlined, under its box.
        mask_alpha: weight of the colour in the fill, in [0, 1].

    Returns:
        A new uint8 ``(H, W, 3)`` RGB image; lower-scoring detections are drawn first so the
        best ones stay on top.

    Raises:
        ValueError: an image that is not uint8 ``(H, W, 3)``, inputs of different lengths,
            a mask that is not an RLE of the image, or ``mask_alpha`` outside [0, 1].
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    out = np.ascontiguousarray(image.copy())
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    classes = np.asarray(classes).reshape(-1)
    if not len(boxes) == len(scores) == len(classes):
        raise ValueError(f"got {len(boxes)} boxes, {len(scores)} scores, {len(classes)} classes")
    if masks is not None and len(masks) != len(boxes):
        raise ValueError(f"got {len(masks)} masks for {len(boxes)} boxes")
    if not 0.0 <= mask_alpha <= 1.0:
        raise ValueError(f"mask_alpha must be in [0, 1], got {mask_alpha!r}")
    height, width = out.shape[:2]
    thick = max(1, int(round(max(height, width) / 600)))
    font_scale = max(0.4, max(height, width) / 1600)
    for i in np.argsort(scores, kind="stable"):
        if scores[i] < score_thresh:
            continue
        color = class_color(int(classes[i]))
        if masks is not None:
            _draw_mask(out, masks[i], color, mask_alpha, thick)
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
