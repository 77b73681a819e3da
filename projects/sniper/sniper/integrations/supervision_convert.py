"""Our detections <-> ``supervision.Detections`` (extra ``[supervision]``).

Boxes, scores and classes carry over unchanged: ``xyxy`` = ``boxes`` (float32 XYXY image
px), ``confidence`` = ``scores``, ``class_id`` = ``classes`` (contiguous 0..C-1). Masks are
converted only when asked, since supervision's plain mask is a full-size ``(N, H, W)`` bool
array: ``mask_format="dense"`` gives that array, ``mask_format="compact"`` a
``supervision.CompactMask`` (crop-scoped RLE, no full-size array), each crop the tight
pixel box of its mask (``pycocotools.mask.toBbox`` of the RLE), so no pixel is lost
whatever the detection box is. Back, a dense or compact mask becomes COCO RLE again
(``sniper.patch_rle.patch_to_rle`` on the mask's window): ``from_detections(to_detections(
out, mask_format=...))`` gives the same boxes, scores, classes and RLE strings.

``supervision_callback`` makes one of our predictors the ``callback`` of supervision's
``InferenceSlicer``, which cuts the slices, shifts their detections to image px and merges.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from sniper.patch_rle import patch_to_rle
from sniper.rle_window import rle_window

from ._optional import import_optional
from .detections_dict import check_detections, mask_image_size

__all__ = ["from_detections", "supervision_callback", "to_detections"]

MASK_FORMATS = (None, "dense", "compact")


def _supervision() -> Any:
    return import_optional("supervision", "supervision")


def _rle_bytes(rle: Mapping[str, Any]) -> dict:
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return {"size": [int(v) for v in rle["size"]], "counts": counts}


def _crop_boxes(masks: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """int ``(N, 4)`` inclusive XYXY pixel box of each mask's set pixels ([0, 0, 0, 0] when
    empty), the crop convention of ``CompactMask``."""
    if not masks:
        return np.zeros((0, 4), np.float32)
    xywh = mask_utils.toBbox([_rle_bytes(rle) for rle in masks]).reshape(-1, 4)
    boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + np.maximum(xywh[:, 2:] - 1, 0)], axis=1)
    return boxes.astype(np.float32)


def _dense_masks(masks: Sequence[Mapping[str, Any]], height: int, width: int) -> np.ndarray:
    dense = np.zeros((len(masks), height, width), dtype=bool)
    for i, rle in enumerate(masks):
        dense[i] = rle_window(rle, 0, 0, width, height)
    return dense


def to_detections(
    out: Mapping[str, Any],
    mask_format: str | None = None,
    class_names: Sequence[str] | None = None,
    image_size: tuple[int, int] | None = None,
) -> Any:
    """``supervision.Detections`` of one image's detections (module doc).

    Args:
        out: our detections dict (``sniper.integrations.detections_dict``).
        mask_format: ``None`` (no mask), ``"dense"`` (bool ``(N, H, W)``) or ``"compact"``
            (``CompactMask``); both need ``out["masks"]``.
        class_names: names of classes 0..C-1; given, ``data["class_name"]`` holds each
            detection's name (supervision's annotators read it).
        image_size: ``(height, width)``; needed for masks only when there is no detection
            (else the RLE sizes give it; given, they must agree).

    Raises:
        ValueError: a bad detections dict, an unknown ``mask_format``, masks asked but
            absent, or a class without a name.
        ImportError: supervision is not installed (names the extra).
    """
    if mask_format not in MASK_FORMATS:
        raise ValueError(f"mask_format must be one of {MASK_FORMATS}, got {mask_format!r}")
    boxes, scores, classes = check_detections(out)
    sv = _supervision()
    data: dict[str, np.ndarray] = {}
    if class_names is not None:
        names = list(class_names)
        if classes.size and classes.max() >= len(names):
            raise ValueError(f"class {int(classes.max())} has no name in {len(names)} names")
        data["class_name"] = np.array([names[c] for c in classes], dtype=object).astype(str)
    mask = None
    if mask_format is not None:
        if "masks" not in out:
            raise ValueError(f"mask_format={mask_format!r} but the detections have no 'masks'")
        masks = list(out["masks"])
        height, width = mask_image_size(masks, image_size)
        if mask_format == "dense":
            mask = _dense_masks(masks, height, width)
        else:
            compact = import_optional("supervision.detection.compact_mask", "supervision")
            mask = compact.CompactMask.from_coco_rle(
                [_rle_bytes(rle) for rle in masks], _crop_boxes(masks), (height, width)
            )
    return sv.Detections(xyxy=boxes, mask=mask, confidence=scores, class_id=classes, data=data)


def _masks_to_rle(mask: Any, n: int) -> list[dict]:
    compact = import_optional("supervision.detection.compact_mask", "supervision")
    if isinstance(mask, compact.CompactMask):
        height, width = (int(v) for v in mask.image_shape)
        rles = []
        for i in range(n):
            crop = mask.crop(i)
            x, y = (int(v) for v in mask.offsets[i])
            # keep the part of the crop inside the image (patch_to_rle's precondition)
            crop = crop[max(0, -y) : max(0, height - y), max(0, -x) : max(0, width - x)]
            rles.append(patch_to_rle(crop, max(x, 0), max(y, 0), height, width))
        return rles
    dense = np.asarray(mask)
    if dense.ndim != 3 or dense.shape[0] != n or min(dense.shape[1:]) < 1:
        raise ValueError(f"Detections.mask must be (N={n}, H, W), got shape {dense.shape}")
    height, width = dense.shape[1:]
    return [patch_to_rle(m.astype(bool), 0, 0, height, width) for m in dense]


def from_detections(detections: Any) -> dict[str, Any]:
    """Our detections dict of a ``supervision.Detections`` (best first, as ours are).

    Returns:
        ``boxes`` float32 ``(N, 4)`` XYXY image px, ``scores`` float32 ``(N,)``, ``classes``
        int64 ``(N,)`` (= ``class_id``) and, when ``detections.mask`` is set, ``masks``: N
        COCO RLE dicts (counts ``str``), from a dense array or a ``CompactMask``.

    Raises:
        ValueError: ``confidence`` or ``class_id`` is None, negative class ids, or a mask of
            the wrong shape.
        ImportError: supervision is not installed (names the extra).
    """
    sv = _supervision()
    if not isinstance(detections, sv.Detections):
        raise ValueError(f"expected supervision.Detections, got {type(detections).__name__}")
    for field in ("confidence", "class_id"):
        if getattr(detections, field) is None:
            raise ValueError(f"Detections.{field} is None: our detections need it")
    n = len(detections)
    order = np.argsort(-np.asarray(detections.confidence, np.float64), kind="stable")
    out: dict[str, Any] = {
        "boxes": np.asarray(detections.xyxy, np.float32).reshape(-1, 4),
        "scores": np.asarray(detections.confidence, np.float32),
        "classes": np.asarray(detections.class_id),
    }
    if detections.mask is not None:
        out["masks"] = _masks_to_rle(detections.mask, n)
    boxes, scores, classes = check_detections(out)
    result: dict[str, Any] = {"boxes": boxes[order], "scores": scores[order]}
    result["classes"] = classes[order]
    if "masks" in out:
        result["masks"] = [out["masks"][i] for i in order]
    return result


def supervision_callback(
    predictor: Callable[[np.ndarray], Mapping[str, Any]],
    mask_format: str | None = None,
    class_names: Sequence[str] | None = None,
) -> Callable[[np.ndarray], Any]:
    """``callback(image_slice) -> supervision.Detections`` running ``predictor`` on a slice.

    Args:
        predictor: one of ours (``SniperPredictor``, ``AutoFocusPredictor``) or any
            callable of a uint8 ``(h, w, 3)`` slice returning our detections dict in slice
            px. The slice has the channel order of the image given to ``InferenceSlicer``
            (BGR for ``cv2.imread``), which must be the predictor's ``input_format``.
        mask_format, class_names: as ``to_detections`` (the mask size is the slice's).
    """
    if mask_format not in MASK_FORMATS:
        raise ValueError(f"mask_format must be one of {MASK_FORMATS}, got {mask_format!r}")

    def callback(image_slice: np.ndarray) -> Any:
        size = tuple(int(v) for v in np.shape(image_slice)[:2])
        return to_detections(predictor(image_slice), mask_format, class_names, size)

    return callback
