"""Our detections <-> lists of SAHI ``ObjectPrediction`` (extra ``[sahi]``).

A detection becomes ``ObjectPrediction(bbox=box, score=score, category_id=class,
category_name=names[class])``: the box as XYXY px, the class id unchanged (contiguous
0..C-1, so SAHI's ``category_mapping`` is ``{"0": name0, ...}``). SAHI keeps a box in the
frame of the slice it came from plus a ``shift_amount`` (the slice's top-left in image px),
added once by ``get_shifted_object_prediction``; ``to_object_predictions`` takes that shift
and ``from_object_predictions`` applies it, so what comes back is in image px.

**Masks.** SAHI holds a mask as COCO polygons (``[[x1, y1, x2, y2, ...], ...]``) and draws
them with ``cv2.fillPoly`` of the rounded vertices (``sahi.annotation.Mask.bool_mask``).
Our RLE mask goes to polygons with SAHI's own ``get_coco_segmentation_from_bool_mask``
(contours of the mask's set pixels), computed on the mask's pixel box only; polygons come
back to RLE with SAHI's fill rule, on the polygons' box only (no ``(H, W)`` array either
way). Shapes whose contour refills to the same pixels (rectangles, discs, any hole-free
shape without one-pixel spurs) come back exactly; holes are filled, as in SAHI. Note that
SAHI replaces the box of a prediction that has a mask by the polygons' extent
(``ObjectAnnotation``), so boxes of masked detections change on the way; a mask with no
polygon (empty, or thinner than SAHI's three-point minimum) is left out and the detection
kept as a box.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from sniper.patch_rle import patch_to_rle
from sniper.rle_window import rle_window

from ._optional import import_optional
from .detections_dict import check_detections

__all__ = ["from_object_predictions", "polygons_to_rle", "rle_to_polygons", "to_object_predictions"]


def _sahi(module: str) -> Any:
    return import_optional(module, "sahi")


def rle_to_polygons(rle: Mapping[str, Any]) -> list[list[float]]:
    """SAHI polygons (image px, pixel-index vertices) of one COCO RLE mask, from its pixel
    box only; ``[]`` for an empty mask or one too thin for a three-point polygon."""
    height, width = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    elif not isinstance(counts, bytes):  # uncompressed run lengths
        counts = mask_utils.frPyObjects(
            {"size": [height, width], "counts": list(counts)}, height, width
        )["counts"]
    encoded = {"size": [height, width], "counts": counts}
    x, y, w, h = (int(v) for v in mask_utils.toBbox(encoded))
    if w == 0 or h == 0:
        return []
    window = rle_window(rle, x, y, x + w, y + h)
    polygons = _sahi("sahi.utils.cv").get_coco_segmentation_from_bool_mask(window)
    return [[v + (x if k % 2 == 0 else y) for k, v in enumerate(p)] for p in polygons]


def polygons_to_rle(polygons: Sequence[Sequence[float]], height: int, width: int) -> dict:
    """COCO RLE ``{"size": [H, W], "counts": str}`` of SAHI polygons drawn by SAHI's rule
    (``cv2.fillPoly`` of the rounded vertices, clipped to the image), on their box only."""
    points = [np.asarray(p, np.float64).reshape(-1, 2).round().astype(np.int64) for p in polygons]
    points = [p for p in points if p.size]
    if not points:
        return patch_to_rle(np.zeros((0, 0), bool), 0, 0, height, width)
    stacked = np.concatenate(points)
    x0, y0 = np.maximum(stacked.min(axis=0), 0)
    x1 = min(int(stacked[:, 0].max()) + 1, width)
    y1 = min(int(stacked[:, 1].max()) + 1, height)
    if x1 <= x0 or y1 <= y0:
        return patch_to_rle(np.zeros((0, 0), bool), 0, 0, height, width)
    window = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(window, [(p - (x0, y0)).astype(np.int32) for p in points], (1,))
    return patch_to_rle(window, int(x0), int(y0), height, width)


def to_object_predictions(
    out: Mapping[str, Any],
    category_names: Sequence[str] | None = None,
    with_masks: bool = True,
    shift_amount: Sequence[int] = (0, 0),
    full_shape: Sequence[int] | None = None,
) -> list[Any]:
    """SAHI ``ObjectPrediction`` of every detection of ``out`` (module doc).

    Args:
        out: our detections dict (``sniper.integrations.detections_dict``), px of the
            frame ``shift_amount`` places in the image (a slice; the image itself for
            ``(0, 0)``).
        category_names: names of classes 0..C-1 (default: the id as text, as SAHI does).
        with_masks: convert ``out["masks"]`` when present.
        shift_amount: ``(shift_x, shift_y)`` integer image px of the frame's top-left.
        full_shape: ``(height, width)`` of the full image; default: the masks' RLE size.

    Raises:
        ValueError: a bad detections dict, a class without a name, a negative box
            coordinate (SAHI refuses them) or a non-integer shift.
        ImportError: sahi is not installed (names the extra).
    """
    boxes, scores, classes = check_detections(out)
    prediction = _sahi("sahi.prediction")
    shift = [int(v) for v in shift_amount]
    if len(shift) != 2 or shift != list(shift_amount):
        raise ValueError(f"shift_amount must be two integers, got {shift_amount!r}")
    if boxes.size and boxes.min() < 0:
        raise ValueError(f"SAHI boxes must be >= 0, got a box coordinate {boxes.min()}")
    names = None if category_names is None else list(category_names)
    if names is not None and classes.size and classes.max() >= len(names):
        raise ValueError(f"class {int(classes.max())} has no name in {len(names)} names")
    masks = out.get("masks") if with_masks else None
    result = []
    for i in range(boxes.shape[0]):
        c = int(classes[i])
        polygons = rle_to_polygons(masks[i]) if masks is not None else []
        shape = full_shape
        if polygons and shape is None:
            shape = [int(v) for v in masks[i]["size"]]
        result.append(
            prediction.ObjectPrediction(
                bbox=[float(v) for v in boxes[i]],
                category_id=c,
                category_name=names[c] if names is not None else str(c),
                segmentation=polygons or None,
                score=float(scores[i]),
                shift_amount=shift,
                full_shape=None if shape is None else [int(v) for v in shape],
            )
        )
    return result


def from_object_predictions(
    predictions: Sequence[Any], image_size: tuple[int, int] | None = None
) -> dict[str, Any]:
    """Our detections dict of SAHI predictions, shifts applied (image px), best first.

    Args:
        predictions: ``ObjectPrediction`` (or any ``ObjectAnnotation`` with a ``score``).
        image_size: ``(height, width)`` of the image; default: the masks' ``full_shape``.

    Returns:
        ``boxes`` float32 ``(N, 4)``, ``scores`` float32, ``classes`` int64 (the category
        ids) and, when any prediction has a mask, ``masks``: N COCO RLE dicts (counts
        ``str``; an empty mask for a prediction without one).

    Raises:
        ValueError: a prediction that is not an ``ObjectPrediction``, or masks whose image
            sizes disagree.
        ImportError: sahi is not installed (names the extra).
    """
    prediction = _sahi("sahi.prediction")
    for i, p in enumerate(predictions):
        if not isinstance(p, prediction.ObjectPrediction):
            raise ValueError(f"predictions[{i}] is a {type(p).__name__}, not an ObjectPrediction")
    shifted = [p.get_shifted_object_prediction() for p in predictions]
    n = len(shifted)
    order = sorted(range(n), key=lambda i: -float(shifted[i].score.value))
    out: dict[str, Any] = {
        "boxes": np.array([shifted[i].bbox.to_xyxy() for i in order], np.float32).reshape(-1, 4),
        "scores": np.array([shifted[i].score.value for i in order], np.float32),
        "classes": np.array([shifted[i].category.id for i in order], np.int64),
    }
    if any(p.mask is not None for p in shifted):
        sizes = {tuple(p.mask.full_shape) for p in shifted if p.mask is not None}
        if image_size is not None:
            sizes.add(tuple(int(v) for v in image_size))
        if len(sizes) != 1:
            raise ValueError(f"masks of one image must share its size, got {sorted(sizes)}")
        height, width = sizes.pop()
        out["masks"] = [
            polygons_to_rle(shifted[i].mask.segmentation if shifted[i].mask else [], height, width)
            for i in order
        ]
    check_detections(out)
    return out
