"""The ground truth of a COCO evaluation, from the dataset records it evaluates.

`COCOEvaluator` scores against the annotations *as the loader cleaned them*
(`sniper.data.coco`: dropped boxes are gone, kept ones clipped to the image, ``area``
filled in), which it takes from each processed record (`record_ground_truth`) and turns
into an in-memory pycocotools ``COCO`` (`coco_from_ground_truth`); never the raw json.
Every annotation also gets a ``segmentation`` for mask AP (`gt_segmentation`): the record's
own (``segmentations``: compact polygons or RLE, image px) where it has one, else its box as
a rectangle polygon. So a box without a mask still counts as an object to be found (a model
is not rewarded for missing it) and is matched by masks covering its box; crowd regions,
whose masks the loader does not keep, are ignore regions (``iscrowd=1``) of their box, as
for box AP. Box AP never reads the segmentations.
`read_test_image` is the evaluation's image read: None (with a warning) for an image that
cannot be read or whose size differs from its record's, which the evaluation skips.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pycocotools.coco import COCO

from sniper.image_ops import ImageReadError, read_image

__all__ = [
    "coco_from_ground_truth",
    "gt_segmentation",
    "read_test_image",
    "record_ground_truth",
]

logger = logging.getLogger("sniper.engine.evaluation")


def record_ground_truth(record: dict) -> dict[str, Any]:
    """The evaluation's ground truth of one record: positives then crowd boxes (XYXY image
    px), contiguous classes, areas (the record's ``areas`` / ``crowd_areas``, else the box
    areas ``w * h``), crowd flags and ``segmentations``: None when the record has no
    ``segmentations`` (a dataset without masks), else one entry per box (the record's, then
    None for each crowd box).

    Raises:
        ValueError: the record's ``segmentations`` are not one per box (naming the image).
    """
    boxes = np.asarray(record.get("boxes", np.zeros((0, 4))), np.float64).reshape(-1, 4)
    crowd = np.asarray(record.get("crowd_boxes", np.zeros((0, 4))), np.float64).reshape(-1, 4)
    classes = np.asarray(record.get("classes", np.zeros(0)), np.int64).reshape(-1)
    crowd_classes = np.asarray(record.get("crowd_classes", np.zeros(0)), np.int64).reshape(-1)
    if len(crowd_classes) != len(crowd):  # unknown class: the region counts for every class
        crowd_classes = np.full(len(crowd), -1, np.int64)

    def areas(key: str, b: np.ndarray) -> np.ndarray:
        given = record.get(key)
        if given is not None and len(given) == len(b):
            return np.asarray(given, np.float64)
        return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])

    segms = record.get("segmentations")
    if segms is not None:
        if len(segms) != len(boxes):
            raise ValueError(
                f"image {record.get('image_id')} ({record.get('file_name')}): "
                f"{len(segms)} segmentations for {len(boxes)} boxes"
            )
        segms = [*segms, *([None] * len(crowd))]
    return {
        "image_id": int(record["image_id"]),
        "height": int(record.get("height", 0)),
        "width": int(record.get("width", 0)),
        "boxes": np.concatenate([boxes, crowd]),
        "classes": np.concatenate([classes, crowd_classes]),
        "areas": np.concatenate([areas("areas", boxes), areas("crowd_areas", crowd)]),
        "crowd": np.r_[np.zeros(len(boxes), bool), np.ones(len(crowd), bool)],
        "segmentations": segms,
    }


def gt_segmentation(segm: Any, box: Sequence[float]) -> list[list[float]] | dict:
    """The ``segmentation`` of one ground-truth annotation (module docstring): ``segm``
    (compact polygons or an RLE dict, image px, as `sniper.data.chip_masks.
    check_segmentation` keeps them) or, for None, the box XYXY (image px) as the polygon
    ``[[x1, y1, x1, y2, x2, y2, x2, y1]]``."""
    if segm is not None:
        return segm
    x1, y1, x2, y2 = (float(v) for v in box)
    return [[x1, y1, x1, y2, x2, y2, x2, y1]]


def read_test_image(record: dict, input_format: str, name: str) -> np.ndarray | None:
    """The record's image, or None (with a warning) when it cannot be read or its size is
    not the record's ``height`` x ``width`` (the boxes are in the record's frame)."""
    try:
        image = read_image(record["file_name"], input_format)
    except ImageReadError as e:
        logger.warning("%s: skipping image %s: %s", name, record.get("image_id"), e)
        return None
    expected = (record.get("height"), record.get("width"))
    if None not in expected and tuple(image.shape[:2]) != tuple(int(v) for v in expected):
        logger.warning(
            "%s: skipping image %s (%s): it is %dx%d (HxW) but its record says %dx%d, the "
            "frame of its boxes",
            name,
            record.get("image_id"),
            record["file_name"],
            image.shape[0],
            image.shape[1],
            *expected,
        )
        return None
    return image


def coco_from_ground_truth(
    ground_truth: Sequence[Mapping[str, Any]],
    contiguous_to_dataset_id: Mapping[int, int],
    class_names: Sequence[str] = (),
) -> COCO:
    """A pycocotools ``COCO`` of `record_ground_truth` entries.

    Annotation ids are 1..K in entry order (COCOeval reads id 0 as "unmatched"); boxes go
    from XYXY to COCO's ``[x, y, w, h]``; crowd boxes get ``iscrowd=1`` in their class, or
    in every category when the record had no ``crowd_classes``; an image given twice counts
    once. Every annotation has a ``segmentation`` (`gt_segmentation`). Categories:
    ``contiguous_to_dataset_id`` (contiguous class -> dataset id), named by ``class_names``
    (contiguous order) where given.
    """
    images, annotations, seen = [], [], set()
    all_cats = sorted(contiguous_to_dataset_id.values())
    for g in ground_truth:
        if g["image_id"] in seen:
            continue
        seen.add(g["image_id"])
        images.append({"id": g["image_id"], "height": g["height"], "width": g["width"]})
        segms = g.get("segmentations") or [None] * len(g["boxes"])
        for box, cls, area, crowd, segm in zip(
            g["boxes"], g["classes"], g["areas"], g["crowd"], segms, strict=True
        ):
            x1, y1, x2, y2 = (float(v) for v in box)
            for cat in [contiguous_to_dataset_id[int(cls)]] if cls >= 0 else all_cats:
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": g["image_id"],
                        "category_id": cat,
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "area": float(area),
                        "iscrowd": int(crowd),
                        "segmentation": gt_segmentation(segm, box),
                    }
                )
    categories = [
        {"id": cat, "name": class_names[c] if c < len(class_names) else str(cat)}
        for c, cat in sorted(contiguous_to_dataset_id.items())
    ]
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations, "categories": categories}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco
