"""The one check of a detections dict as our predictors and engines return it.

``boxes`` float ``(N, 4)`` XYXY image px (exclusive right/bottom edge), ``scores`` float
``(N,)``, ``classes`` integer ``(N,)`` contiguous ids ``0..C-1`` and, optionally, ``masks``:
N COCO RLE dicts ``{"size": [H, W], "counts": str | bytes}`` of the image. Other keys
(``pixels``, ``mask_patches``, ...) are ignored by the converters. numpy arrays or torch
tensors are accepted (anything ``np.asarray`` reads).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["check_detections", "mask_image_size"]


def check_detections(out: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(boxes float32 (N, 4), scores float32 (N,), classes int64 (N,))`` of ``out``.

    Raises:
        ValueError: naming the key: missing, wrong shape, non-finite values, lengths that
            disagree, non-integer or negative classes, or ``masks`` not N RLE dicts.
    """
    if not isinstance(out, Mapping):
        raise ValueError(f"detections must be a dict, got {type(out).__name__}")
    for key in ("boxes", "scores", "classes"):
        if key not in out:
            raise ValueError(f"detections have no {key!r} key (keys: {sorted(out)})")
    boxes = np.asarray(out["boxes"], dtype=np.float64)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"detections 'boxes' must be (N, 4), got shape {boxes.shape}")
    scores = np.asarray(out["scores"], dtype=np.float64).reshape(-1)
    raw_classes = np.asarray(out["classes"]).reshape(-1)
    n = boxes.shape[0]
    for key, arr in (("scores", scores), ("classes", raw_classes)):
        if arr.shape[0] != n:
            raise ValueError(f"detections {key!r} has {arr.shape[0]} entries for {n} boxes")
    if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
        raise ValueError("detections 'boxes' or 'scores' hold NaN or infinite values")
    classes = raw_classes.astype(np.int64)
    if n and (not np.array_equal(classes, raw_classes) or classes.min() < 0):
        raise ValueError(f"detections 'classes' must be integers >= 0, got {raw_classes[:8]}")
    if "masks" in out:
        masks = out["masks"]
        if not isinstance(masks, list | tuple) or len(masks) != n:
            raise ValueError(f"detections 'masks' must be a list of {n} COCO RLE dicts")
        for i, rle in enumerate(masks):
            if not isinstance(rle, Mapping) or "size" not in rle or "counts" not in rle:
                raise ValueError(f"detections 'masks'[{i}] is not a COCO RLE dict: {rle!r}")
    return boxes.astype(np.float32), scores.astype(np.float32), classes


def mask_image_size(masks: list | tuple, image_size: tuple[int, int] | None) -> tuple[int, int]:
    """The ``(height, width)`` every RLE of ``masks`` holds (and ``image_size`` if given).

    Raises:
        ValueError: no mask and no ``image_size``, or sizes that disagree.
    """
    sizes = {tuple(int(v) for v in rle["size"]) for rle in masks}
    if image_size is not None:
        sizes.add(tuple(int(v) for v in image_size))
    if len(sizes) != 1:
        raise ValueError(
            "masks need one image size: "
            + (f"got {sorted(sizes)}" if sizes else "no mask and no image_size given")
        )
    height, width = sizes.pop()
    if height < 1 or width < 1:
        raise ValueError(f"image size must be >= 1 x 1, got {(height, width)}")
    return height, width
