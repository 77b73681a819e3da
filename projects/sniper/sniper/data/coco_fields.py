"""The field checks of a COCO json (`sniper.data.coco`): images, categories, annotations.

The rules (numbered as in the `sniper.data.coco` docstring): image entries (id, height,
width, file name), categories (id, name), the annotation fields ``iscrowd`` and ``area``,
schema rules 1-3 (bbox, image id, category id), the vectorized geometry rules 4-7 and the
``segmentation`` check of the kept boxes.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import numpy as np

from .chip_masks import check_segmentation

# Reasons in the order they are checked and reported ("unknown category <id>" sits at 3).
_R_BBOX, _R_IMAGE = "malformed bbox", "unknown image"
_R_NONFINITE, _R_NONPOS = "non-finite bbox", "non-positive size"
_R_OUTSIDE, _R_TINY = "outside image", "under 1 px after clipping"


def _positive_int(value: Any) -> int | None:
    """``value`` as a positive int if it is one (ints or integral floats), else None."""
    if type(value) is int and value > 0:
        return value
    if type(value) is float and value.is_integer() and value > 0:
        return int(value)
    return None


def _parse_categories(json_file: str, categories: list) -> tuple[list[int], list[str]]:
    """Sorted COCO category ids and their names."""
    by_id: dict[int, str] = {}
    for cat in categories:
        if not isinstance(cat, dict) or type(cat.get("id")) is not int:
            raise ValueError(f"{json_file}: category without integer 'id': {cat!r}")
        if cat["id"] in by_id:
            raise ValueError(f"{json_file}: duplicate category id {cat['id']}")
        if not isinstance(cat.get("name"), str):
            raise ValueError(f"{json_file}: category {cat['id']} has no 'name'")
        by_id[cat["id"]] = cat["name"]
    ids = sorted(by_id)
    return ids, [by_id[i] for i in ids]


def _parse_images(json_file: str, images: list, image_root: str) -> list[dict[str, Any]]:
    """Validated image entries (record skeletons without annotations), in json order."""
    out: list[dict[str, Any]] = []
    seen: set[int] = set()
    for img in images:
        if not isinstance(img, dict) or type(img.get("id")) is not int:
            raise ValueError(f"{json_file}: image without integer 'id': {img!r}")
        image_id = img["id"]
        if image_id in seen:
            raise ValueError(f"{json_file}: duplicate image id {image_id}")
        seen.add(image_id)
        height, width = _positive_int(img.get("height")), _positive_int(img.get("width"))
        if height is None or width is None:
            raise ValueError(
                f"{json_file}: image id {image_id} has missing or invalid height/width "
                f"(height={img.get('height')!r}, width={img.get('width')!r})"
            )
        if not isinstance(img.get("file_name"), str):
            raise ValueError(f"{json_file}: image id {image_id} has no 'file_name'")
        path = os.path.abspath(os.path.join(image_root, img["file_name"]))
        out.append({"file_name": path, "image_id": image_id, "height": height, "width": width})
    return out


def _iscrowd(json_file: str, ann: dict) -> bool:
    """The annotation's ``iscrowd`` (0, 1 or a bool; default 0), or ``ValueError``."""
    value = ann.get("iscrowd", 0)
    if type(value) is bool or (type(value) is int and value in (0, 1)):
        return bool(value)
    raise ValueError(
        f"{json_file}: annotation id {ann['id']} has iscrowd = {value!r}; expected 0 or 1 "
        "(or true / false)"
    )


def _area(json_file: str, ann: dict) -> float:
    """The annotation's ``area`` (NaN when it has none), or ``ValueError``."""
    if "area" not in ann:
        return float("nan")
    value = ann["area"]
    if type(value) in (int, float) and np.isfinite(value) and value >= 0:
        return float(value)
    raise ValueError(
        f"{json_file}: annotation id {ann['id']} has area = {value!r}; expected a finite "
        "number >= 0 (or no 'area': the box's w * h)"
    )


def _gather_annotations(
    annotations: list,
    image_index: dict[int, int],
    cat_to_contiguous: dict[int, int],
    json_file: str,
    dropped: Counter,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, list]:
    """One pass over the annotations: schema rules 1-3; the geometry is left to numpy.

    Returns (image_idx int64 (K,), classes int64 (K,), bbox_xywh float64 (K, 4),
    is_crowd bool (K,), ann_ids int64 (K,), areas float64 (K,), NaN where missing,
    segmentations: list of K raw ``segmentation`` values, None where missing; unchecked) for
    the K annotations passing rules 1-3.
    """
    img_idx: list[int] = []
    classes: list[int] = []
    bboxes: list[list] = []
    crowd: list[bool] = []
    ann_ids: list[int] = []
    areas: list[float] = []
    segms: list = []
    for k, ann in enumerate(annotations):
        if not isinstance(ann, dict) or type(ann.get("id")) is not int:
            raise ValueError(f"{json_file}: annotation #{k} has no integer 'id': {ann!r}")
        is_crowd, area = _iscrowd(json_file, ann), _area(json_file, ann)
        bbox = ann.get("bbox")
        if (
            type(bbox) is not list
            or len(bbox) != 4
            or not all(type(v) is float or type(v) is int for v in bbox)
        ):
            dropped[_R_BBOX] += 1
            continue
        image_id, cat_id = ann.get("image_id"), ann.get("category_id")
        idx = image_index.get(image_id) if type(image_id) is int else None
        if idx is None:
            dropped[_R_IMAGE] += 1
            continue
        if idx < 0:
            continue
        cls = cat_to_contiguous.get(cat_id) if type(cat_id) is int else None
        if cls is None:
            dropped[f"unknown category {cat_id!r}"] += 1
            continue
        img_idx.append(idx)
        classes.append(cls)
        bboxes.append(bbox)
        crowd.append(is_crowd)
        ann_ids.append(ann["id"])
        areas.append(area)
        segms.append(ann.get("segmentation"))
    return (
        np.asarray(img_idx, dtype=np.int64),
        np.asarray(classes, dtype=np.int64),
        np.asarray(bboxes, dtype=np.float64).reshape(-1, 4),
        np.asarray(crowd, dtype=bool),
        np.asarray(ann_ids, dtype=np.int64),
        np.asarray(areas, dtype=np.float64),
        segms,
    )


def _clip_and_filter(
    bbox_xywh: np.ndarray, img_w: np.ndarray, img_h: np.ndarray, dropped: Counter
) -> tuple[np.ndarray, np.ndarray, int]:
    """Rules 4-7, vectorized.

    Args:
        bbox_xywh: float64 (K, 4) COCO ``[x, y, w, h]``, image pixels.
        img_w, img_h: float64 (K,) size of each box's image.
    Returns:
        (boxes_img float64 (K, 4) XYXY clipped, keep bool (K,), number of kept clipped boxes).
    """
    with np.errstate(invalid="ignore", over="ignore"):
        x1, y1 = bbox_xywh[:, 0], bbox_xywh[:, 1]
        x2, y2 = x1 + bbox_xywh[:, 2], y1 + bbox_xywh[:, 3]
        raw = np.stack([x1, y1, x2, y2], axis=1)
        finite = np.isfinite(bbox_xywh).all(axis=1) & np.isfinite(raw).all(axis=1)
        positive = finite & (bbox_xywh[:, 2] > 0) & (bbox_xywh[:, 3] > 0)
        clipped = np.clip(raw, 0.0, np.stack([img_w, img_h, img_w, img_h], axis=1))
        cw, ch = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
        inside = positive & (cw > 0) & (ch > 0)
        keep = inside & (cw >= 1) & (ch >= 1)
    for reason, count in (
        (_R_NONFINITE, ~finite),
        (_R_NONPOS, finite & ~positive),
        (_R_OUTSIDE, positive & ~inside),
        (_R_TINY, inside & ~keep),
    ):
        if count.any():
            dropped[reason] += int(count.sum())
    n_clipped = int((keep & (clipped != raw).any(axis=1)).sum())
    return clipped, keep, n_clipped


def _kept_segmentations(
    json_file: str,
    segms: list,
    order: np.ndarray,
    ann_ids: np.ndarray,
    heights: np.ndarray,
    widths: np.ndarray,
) -> list | None:
    """The checked segmentations of the annotations ``order`` (the kept non-crowd boxes).

    Args:
        segms: the raw ``segmentation`` of every gathered annotation (K entries).
        order: int64 (N,) indices into ``segms`` of the kept boxes, in record order.
        ann_ids: int64 (K,); heights, widths: int (K,) size of each annotation's image.
    Returns:
        N entries (`sniper.data.chip_masks.check_segmentation`: None, polygons or an RLE
        dict), or None when none of them has a mask (the json has no masks).
    Raises:
        ValueError: naming the file, the annotation id and the problem.
    """
    out = []
    for k in order.tolist():
        try:
            out.append(check_segmentation(segms[k], (int(heights[k]), int(widths[k]))))
        except ValueError as e:
            raise ValueError(
                f"{json_file}: annotation id {int(ann_ids[k])} has a malformed segmentation: {e}"
            ) from None
    return out if any(s is not None for s in out) else None
