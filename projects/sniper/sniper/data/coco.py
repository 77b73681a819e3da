"""Load COCO-format instance jsons into per-image records; register them in the catalogs.

Record (one dict per kept image, exactly these keys):

- ``file_name`` str: absolute path, ``os.path.abspath(os.path.join(image_root, file_name))``.
- ``image_id`` int: the COCO image id.  ``height``, ``width`` int: from the json.
- ``boxes`` float32 (N, 4): XYXY, original-image pixels, exclusive right/bottom edge
  (``x2 = x + w`` from COCO's ``[x, y, w, h]``), clipped to the image.
- ``classes`` int64 (N,): contiguous ids 0..C-1, in the order of sorted COCO category ids.
- ``crowd_boxes`` float32 (M, 4): XYXY, the ``iscrowd=1`` annotations. They are ignore
  regions (neither positive nor negative), never positives. ``crowd_classes`` int64 (M,):
  their contiguous classes (the evaluation ignores detections of that class there).
- ``ann_ids`` int64 (N,): the COCO annotation ids of ``boxes``, row by row.
- ``areas`` float32 (N,), ``crowd_areas`` float32 (M,): each annotation's ``area`` (COCO's
  object area, which the evaluation's small / medium / large ranges use), or the area
  ``w * h`` of its clipped box when the json has none.

Annotations keep their json order within an image; images keep their json order.

Annotation rules (crowd and non-crowd alike; each dropped annotation is counted once, under
the first rule it breaks, in this order):

1. ``bbox`` not a list of 4 numbers (int/float, not bool) -> dropped ("malformed bbox").
2. ``image_id`` not in ``images`` -> dropped ("unknown image").  Annotations of images that
   are dropped because their file is missing go away with the image, uncounted.
3. ``category_id`` not in ``categories`` -> dropped ("unknown category <id>", per id).
4. NaN/inf coordinate -> dropped ("non-finite bbox").
5. width or height <= 0 -> dropped ("non-positive size").
6. no overlap with the image (clipped width or height <= 0) -> dropped ("outside image").
7. otherwise clipped to ``[0, width] x [0, height]``; if the clipped box is narrower or
   shorter than 1 px -> dropped ("under 1 px after clipping").  Kept boxes changed by the
   clipping are counted as "clipped".

Field rules: ``iscrowd`` (default 0) must be 0, 1, true or false and ``area`` (default:
the clipped box's ``w * h``) a finite number >= 0; anything else (``"yes"``, ``"0"``, 2,
null) -> ``ValueError`` naming the file, the annotation id and the value.

Image rules: duplicate image id -> ``ValueError`` naming the id; missing/invalid ``height``
or ``width`` (must be a positive integer) -> ``ValueError`` naming the image id; missing
``file_name`` or non-integer ``id`` -> ``ValueError``; file missing on disk (only when
``check_images``) -> the image is dropped ("missing file").  Images without annotations are
kept: they contribute negative chips.

File rules: missing json -> ``FileNotFoundError``; malformed json, a top level that is not
an object, or a missing/non-list ``images``, ``annotations`` or ``categories`` ->
``ValueError`` naming the file (and the key); an annotation without integer ``id``,
duplicate category ids or a category without ``name`` -> ``ValueError``.

After loading, exactly one summary line is logged on logger ``sniper.data`` (INFO, or
WARNING when anything was dropped), e.g.::

    load_coco_json(foo.json): 500 images, 3210 boxes, 12 crowd boxes; clipped 4 boxes;
    dropped 2 (outside image), 1 (unknown category 99), 1 image (missing file)

(one line in the log). When anything was dropped the same text is also issued with
``warnings.warn``.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections import Counter
from typing import Any

import numpy as np

from sniper.data.catalog import DatasetCatalog, MetadataCatalog

__all__ = ["load_coco_json", "register_coco_instances"]

logger = logging.getLogger("sniper.data")

_TOP_LEVEL_KEYS = ("images", "annotations", "categories")
# Reasons in the order they are checked and reported ("unknown category <id>" sits at 3).
_R_BBOX, _R_IMAGE = "malformed bbox", "unknown image"
_R_NONFINITE, _R_NONPOS = "non-finite bbox", "non-positive size"
_R_OUTSIDE, _R_TINY = "outside image", "under 1 px after clipping"


def _read_json(json_file: str, require_annotations: bool = True) -> dict[str, list]:
    """Parse ``json_file`` and check its top-level structure (a missing file raises OSError).

    With ``require_annotations=False`` a missing ``annotations`` key reads as an empty list
    (COCO's ``image_info_*.json`` test files have none)."""
    with open(json_file, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{json_file}: cannot read COCO json: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{json_file}: top level must be a json object, got {type(data)}")
    if not require_annotations:
        data.setdefault("annotations", [])
    for key in _TOP_LEVEL_KEYS:
        if key not in data:
            raise ValueError(f"{json_file}: missing top-level key '{key}'")
        if not isinstance(data[key], list):
            raise ValueError(f"{json_file}: top-level key '{key}' must be a list")
    return data


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
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One pass over the annotations: schema rules 1-3; the geometry is left to numpy.

    Returns (image_idx int64 (K,), classes int64 (K,), bbox_xywh float64 (K, 4),
    is_crowd bool (K,), ann_ids int64 (K,), areas float64 (K,), NaN where missing) for the K
    annotations passing rules 1-3.
    """
    img_idx: list[int] = []
    classes: list[int] = []
    bboxes: list[list] = []
    crowd: list[bool] = []
    ann_ids: list[int] = []
    areas: list[float] = []
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
    return (
        np.asarray(img_idx, dtype=np.int64),
        np.asarray(classes, dtype=np.int64),
        np.asarray(bboxes, dtype=np.float64).reshape(-1, 4),
        np.asarray(crowd, dtype=bool),
        np.asarray(ann_ids, dtype=np.int64),
        np.asarray(areas, dtype=np.float64),
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


def _group(img_idx: np.ndarray, mask: np.ndarray, n_images: int) -> tuple[np.ndarray, np.ndarray]:
    """Stable grouping of the annotations selected by ``mask`` by image.

    Args:
        img_idx: int64 (K,) image index of every annotation; mask: bool (K,).
    Returns:
        (bounds int64 (n_images + 1,), order int64 (n,)): annotation indices sorted by image;
        image i owns ``order[bounds[i]:bounds[i + 1]]``.
    """
    selected = np.flatnonzero(mask)
    order = selected[np.argsort(img_idx[selected], kind="stable")]
    bounds = np.searchsorted(img_idx[order], np.arange(n_images + 1))
    return bounds, order


def _summary(
    json_file: str,
    n_images: int,
    n_boxes: int,
    n_crowd: int,
    n_clipped: int,
    dropped: Counter,
    n_missing_files: int,
) -> str:
    """The one-line load summary (see the module docstring)."""
    order = [_R_BBOX, _R_IMAGE]
    unknown = [r for r in dropped if r.startswith("unknown category ")]
    order += sorted(unknown, key=lambda r: (len(r), r))  # numeric order for integer ids
    order += [_R_NONFINITE, _R_NONPOS, _R_OUTSIDE, _R_TINY]
    parts = [f"{dropped[r]} ({r})" for r in order if dropped.get(r)]
    if n_missing_files:
        parts.append(f"{n_missing_files} image{'s' if n_missing_files > 1 else ''} (missing file)")
    return (
        f"load_coco_json({json_file}): {n_images} images, {n_boxes} boxes, "
        f"{n_crowd} crowd boxes; clipped {n_clipped} boxes; "
        f"dropped {', '.join(parts) if parts else 'nothing'}"
    )


def load_coco_json(
    json_file: str,
    image_root: str,
    dataset_name: str | None = None,
    *,
    check_images: bool = True,
    require_annotations: bool = True,
) -> list[dict]:
    """Load a COCO instances json into per-image records (format and rules: module docstring).

    Args:
        json_file: path of the COCO json.
        image_root: folder that the images' ``file_name`` entries are relative to.
        dataset_name: if given, sets ``thing_classes``, ``thing_dataset_id_to_contiguous_id``,
            ``json_file``, ``image_root`` (both absolute) and ``evaluator_type="coco"`` on
            ``MetadataCatalog.get(dataset_name)``.
        check_images: drop images whose file does not exist on disk.
        require_annotations: False accepts a json without ``annotations`` (an image-info
            file such as COCO's test-dev): every record then has no boxes.
    Returns:
        One record per kept image, in json order.
    """
    data = _read_json(json_file, require_annotations)
    cat_ids, cat_names = _parse_categories(json_file, data["categories"])
    cat_to_contiguous = {cid: i for i, cid in enumerate(cat_ids)}
    images = _parse_images(json_file, data["images"], image_root)
    # Images whose file is missing map to -1: their annotations vanish with them, uncounted.
    image_index = {img["image_id"]: -1 for img in images}
    if check_images:
        images = [img for img in images if os.path.isfile(img["file_name"])]
    n_missing_files = len(image_index) - len(images)
    image_index.update({img["image_id"]: i for i, img in enumerate(images)})

    dropped: Counter = Counter()
    img_idx, classes, bbox_xywh, is_crowd, ann_ids, areas = _gather_annotations(
        data["annotations"], image_index, cat_to_contiguous, json_file, dropped
    )
    del data
    widths = np.array([img["width"] for img in images], dtype=np.float64)
    heights = np.array([img["height"] for img in images], dtype=np.float64)
    boxes_img, keep, n_clipped = _clip_and_filter(
        bbox_xywh, widths[img_idx], heights[img_idx], dropped
    )

    with np.errstate(invalid="ignore", over="ignore"):  # dropped rows may be NaN / inf
        box_area = (boxes_img[:, 2] - boxes_img[:, 0]) * (boxes_img[:, 3] - boxes_img[:, 1])
    areas = np.where(np.isnan(areas), box_area, areas).astype(np.float32)

    # Group per image with stable sorts (json order within an image is kept).
    boxes_img = boxes_img.astype(np.float32)
    pos_bounds, pos_order = _group(img_idx, keep & ~is_crowd, len(images))
    crowd_bounds, crowd_order = _group(img_idx, keep & is_crowd, len(images))
    pos_boxes, pos_classes = boxes_img[pos_order], classes[pos_order]
    pos_ann_ids, crowd_boxes = ann_ids[pos_order], boxes_img[crowd_order]
    pos_areas, crowd_areas = areas[pos_order], areas[crowd_order]
    crowd_classes = classes[crowd_order]
    for i, img in enumerate(images):
        p0, p1, c0, c1 = pos_bounds[i], pos_bounds[i + 1], crowd_bounds[i], crowd_bounds[i + 1]
        img["boxes"], img["classes"] = pos_boxes[p0:p1], pos_classes[p0:p1]
        img["crowd_boxes"], img["ann_ids"] = crowd_boxes[c0:c1], pos_ann_ids[p0:p1]
        img["areas"], img["crowd_areas"] = pos_areas[p0:p1], crowd_areas[c0:c1]
        img["crowd_classes"] = crowd_classes[c0:c1]

    line = _summary(
        json_file,
        len(images),
        len(pos_order),
        len(crowd_order),
        n_clipped,
        dropped,
        n_missing_files,
    )
    anything_dropped = bool(n_missing_files or sum(dropped.values()))
    logger.log(logging.WARNING if anything_dropped else logging.INFO, line)
    if anything_dropped:
        warnings.warn(line, stacklevel=2)

    if dataset_name is not None:
        MetadataCatalog.get(dataset_name).set(
            thing_classes=cat_names,
            thing_dataset_id_to_contiguous_id=dict(cat_to_contiguous),
            json_file=os.path.abspath(json_file),
            image_root=os.path.abspath(image_root),
            evaluator_type="coco",
        )
    return images


def register_coco_instances(
    name: str, json_file: str, image_root: str, metadata: dict | None = None
) -> None:
    """Register a COCO-json dataset under ``name`` (loaded lazily by ``DatasetCatalog.get``).

    Sets ``json_file``/``image_root`` (absolute), ``evaluator_type="coco"`` and the extra
    ``metadata`` on ``MetadataCatalog.get(name)`` now; ``thing_classes`` and the id mapping
    are set when the dataset is first loaded.
    """
    json_file, image_root = os.path.abspath(json_file), os.path.abspath(image_root)
    DatasetCatalog.register(name, lambda: load_coco_json(json_file, image_root, name))
    try:
        MetadataCatalog.get(name).set(
            json_file=json_file, image_root=image_root, evaluator_type="coco", **(metadata or {})
        )
    except ValueError:
        DatasetCatalog.remove(name)
        raise
