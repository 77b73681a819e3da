"""The scoring cap of dense scenes (docs/design.md section 6, "Dense scenes: the caps").

COCO's protocol scores 100 detections per image; aerial and drone images hold hundreds of
objects (VisDrone-DET scores 500). `bbox_task_name` names the AP table after the cap used,
`warn_dense_image` warns once when an image holds more GT boxes than the cap lets through.
"""

from __future__ import annotations

import logging
import warnings

__all__ = ["COCO_MAX_DETS", "bbox_task_name", "warn_dense_image"]

logger = logging.getLogger("sniper.engine.evaluation")

COCO_MAX_DETS = 100  # COCO's protocol: 100 detections scored per image
_WARNED_DENSE: set[tuple[str, int]] = set()  # (dataset, cap) already warned in this process


def bbox_task_name(max_dets_per_image: int) -> str:
    """Name of the COCO box AP table: "bbox", or "bbox@maxDets=N" when N != 100."""
    if max_dets_per_image == COCO_MAX_DETS:
        return "bbox"
    return f"bbox@maxDets={max_dets_per_image}"


def warn_dense_image(dataset_name: str, record: dict, cap: int, key: str) -> None:
    """Warn (once per dataset and cap in this process) that ``record`` holds more GT boxes
    than ``cap``, the number of detections per image that config key ``key`` lets through."""
    n_gt = len(record.get("boxes", ()))
    if n_gt <= cap or (dataset_name, cap) in _WARNED_DENSE:
        return
    _WARNED_DENSE.add((dataset_name, cap))
    msg = (
        f"{dataset_name}: image {record.get('image_id')} holds {n_gt} GT boxes but at most "
        f"{cap} detections per image are kept ({key}), so its recall is at most "
        f"{100.0 * cap / n_gt:.0f}%; raise {key} (and the caps before it) for dense scenes"
    )
    logger.warning(msg)
    warnings.warn(msg, stacklevel=3)
