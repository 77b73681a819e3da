"""COCO mask AP (``segm``) pieces of `sniper.engine.evaluation.COCOEvaluator`.

Predicted masks arrive as the engines give them (`sniper.inference`): per image a list
``masks`` of COCO RLE dicts ``{"size": [H, W], "counts": str}`` aligned with ``boxes``,
image px (the compact form; no ``(N, H, W)`` array). `detection_rles` checks them and
turns ``bytes`` counts (what ``pycocotools.mask.encode`` returns) into ``str``, the form the
results json holds. `segm_results` drops the ``bbox`` of each result, as detectron2 does,
so that pycocotools' ``loadRes`` gives every detection its *mask* area (the area ranges of
APs / APm / APl then judge masks by mask area, boxes by box area).

Ground truth: `sniper.engine.coco_ground_truth.gt_segmentation` (a box without a mask, and
every crowd region, is its box as a rectangle polygon).
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral
from typing import Any

from .detection_caps import COCO_MAX_DETS

__all__ = ["detection_rles", "segm_results", "segm_task_name"]


def segm_task_name(max_dets_per_image: int) -> str:
    """Name of the COCO mask AP table: "segm", or "segm@maxDets=N" when N != 100 (the
    twin of `sniper.engine.detection_caps.bbox_task_name`)."""
    if max_dets_per_image == COCO_MAX_DETS:
        return "segm"
    return f"segm@maxDets={max_dets_per_image}"


def detection_rles(
    masks: Sequence[Any], n_boxes: int, image_size: tuple[int, int], where: str
) -> list[dict[str, Any]]:
    """The checked RLE masks of one image's detections, ``counts`` as ``str``.

    Args:
        masks: one COCO RLE dict per detection (``size`` ``[H, W]``, ``counts`` the
            compressed string as ``str`` or ``bytes``), aligned with the boxes.
        n_boxes: the number of detections (boxes) of the image.
        image_size: (height, width) of the image (its record's), image px; (0, 0) when the
            record gives no size (then only the form is checked).
        where: names the image in errors (e.g. "COCOEvaluator('x'): image 12").
    Returns:
        New dicts ``{"size": [H, W], "counts": str}``.
    Raises:
        ValueError: naming the image and the detection: not as many masks as boxes, a mask
            that is not an RLE dict of compressed counts, or an RLE of another size.
    """
    if isinstance(masks, dict | str | bytes) or len(masks) != n_boxes:
        got = type(masks).__name__ if isinstance(masks, dict | str | bytes) else len(masks)
        raise ValueError(f"{where}: 'masks' must be a list of {n_boxes} RLE dicts, got {got}")
    h, w = (int(v) for v in image_size)
    out = []
    for i, rle in enumerate(masks):
        size = rle.get("size") if isinstance(rle, dict) else None
        counts = rle.get("counts") if isinstance(rle, dict) else None
        if isinstance(counts, bytes):
            counts = counts.decode("ascii")
        if not isinstance(counts, str) or not counts:
            raise ValueError(
                f"{where}: mask {i} must be a COCO RLE dict with compressed 'counts' "
                f"(str or bytes), got {type(rle).__name__}"
                + (f" with counts of type {type(counts).__name__}" if isinstance(rle, dict) else "")
            )
        if (
            not isinstance(size, list | tuple)
            or len(size) != 2
            or not all(isinstance(v, Integral) and not isinstance(v, bool) for v in size)
        ):
            raise ValueError(f"{where}: mask {i} has 'size' {size!r}, not [height, width]")
        if (h, w) != (0, 0) and [int(size[0]), int(size[1])] != [h, w]:
            raise ValueError(
                f"{where}: mask {i} has size {list(size)} but the image is [height, width] "
                f"[{h}, {w}]"
            )
        out.append({"size": [int(size[0]), int(size[1])], "counts": counts})
    return out


def segm_results(predictions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of the results (each with a ``segmentation``) without ``bbox``, for ``loadRes``
    to score masks with their own area and bounding box."""
    return [{k: v for k, v in p.items() if k != "bbox"} for p in predictions]
