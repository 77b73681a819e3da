"""One picture per image of what AutoFocus did: FocusPixel heat map, FocusChips, detections.

All functions take and return uint8 `(H, W, 3)` RGB images and never modify their input.
FocusChips are coloured by scale with `sniper.visualization.scale_color` (scale s >= 1; scale
0 is the whole image), detections by class (`sniper.visualization_dets`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from sniper.visualization import draw_chips
from sniper.visualization_dets import draw_detections

from .structures import FocusMap

__all__ = ["draw_autofocus", "draw_heatmap", "focus_heatmap"]


def focus_heatmap(maps: Sequence[FocusMap], image_size: tuple[int, int]) -> np.ndarray:
    """float32 `(H, W)`: FocusPixel probability at every image pixel (centre sampling).

    Image pixel `(x, y)` takes the cell holding its centre in each map
    (`floor((x + 0.5 - x0) * factor / stride)`); where maps overlap the maximum wins; pixels
    outside every map are 0.
    """
    height, width = image_size
    heat = np.zeros((height, width), np.float32)
    for m in maps:
        prob = np.asarray(m.prob, np.float32)
        cx = np.floor((np.arange(width) + 0.5 - m.offset[0]) * m.factor / m.stride).astype(int)
        cy = np.floor((np.arange(height) + 0.5 - m.offset[1]) * m.factor / m.stride).astype(int)
        xs = np.flatnonzero((cx >= 0) & (cx < prob.shape[1]))
        ys = np.flatnonzero((cy >= 0) & (cy < prob.shape[0]))
        if xs.size and ys.size:
            block = prob[np.ix_(cy[ys], cx[xs])]
            heat[np.ix_(ys, xs)] = np.maximum(heat[np.ix_(ys, xs)], block)
    return heat


def draw_heatmap(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a JET colour map of `heat` (float `(H, W)` in [0, 1]) over `image` with weight
    `alpha` (0 = image unchanged)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    if heat.shape != image.shape[:2]:
        raise ValueError(f"heat map {heat.shape} does not match the image {image.shape[:2]}")
    levels = np.round(np.clip(heat, 0.0, 1.0) * 255).astype(np.uint8)
    colours = cv2.cvtColor(cv2.applyColorMap(levels, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colours.astype(np.float32)
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def _scale_names(result: dict[str, Any]) -> list[str]:
    names = []
    for s, chips in enumerate(result["chips_per_scale"]):
        px = result["pixels_per_scale"][s]
        full = result.get("full_pixels_per_scale", result["pixels_per_scale"])[s]
        what = "whole image" if s == 0 else f"{len(chips)} chips"
        share = f", {100.0 * px / full:.0f}% px" if full else ""
        names.append(f"scale {s}: {what}{share}")
    return names


def draw_autofocus(
    image: np.ndarray,
    result: dict[str, Any],
    class_names: Sequence[str] | None = None,
    score_thresh: float = 0.5,
    heat_scale: int = 0,
    alpha: float = 0.45,
) -> np.ndarray:
    """The heat map of scale `heat_scale`'s FocusPixel maps, every finer scale's FocusChips
    and the detections scoring at least `score_thresh`, with a legend.

    Args:
        image: uint8 `(H, W, 3)` RGB, the original image.
        result: one `AutoFocusCascade` / `AutoFocusPredictor` result (`focus_maps`,
            `chips_per_scale`, `pixels_per_scale`, `boxes`, `scores`, `classes`; with
            `masks`, COCO RLE per detection, the masks are drawn too).
        class_names: names by contiguous class id.
        heat_scale: scale whose maps are drawn (0: the coarse map of the whole image).
        alpha: heat map weight (0 = no heat map).

    Returns:
        A new uint8 `(H, W, 3)` RGB image.
    """
    out = image
    maps = result["focus_maps"]
    if alpha > 0 and 0 <= heat_scale < len(maps) and maps[heat_scale]:
        out = draw_heatmap(out, focus_heatmap(maps[heat_scale], image.shape[:2]), alpha)
    chips = [np.asarray(c, np.float32).reshape(-1, 4) for c in result["chips_per_scale"]]
    fine = [(c, s) for s, c in enumerate(chips) if s > 0 and len(c)]
    all_chips = np.concatenate([c for c, _ in fine]) if fine else np.zeros((0, 4), np.float32)
    scales = np.concatenate([np.full(len(c), s) for c, s in fine]) if fine else np.zeros(0, int)
    out = draw_chips(out, all_chips, scales, scale_names=_scale_names(result))
    boxes, scores, classes = (np.asarray(result[k]) for k in ("boxes", "scores", "classes"))
    masks = result.get("masks")
    return draw_detections(out, boxes, scores, classes, class_names, score_thresh, masks)
