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
- ``segmentations`` list (N,), only when at least one kept non-crowd annotation of the json
  has a mask (then in every record): each box's ``segmentation`` in its compact json form,
  image px, never decoded (`sniper.data.chip_masks.check_segmentation`): a list of flat
  ``[x, y, ...]`` polygons (those under 3 points left out), an RLE dict (``counts`` str or
  list, ``size`` [height, width]) or None (no mask). Crowd masks are not kept: crowd
  annotations stay ignore regions (``crowd_boxes``).

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
null) -> ``ValueError`` naming the file, the annotation id and the value. The same holds for
the ``segmentation`` of a kept non-crowd box: not a list or dict, a polygon of odd length,
not numbers or with NaN/inf, an RLE whose ``size`` is not the image's ``[height, width]`` or
whose ``counts`` are neither a string nor run lengths summing to ``height * width``.

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

import numpy as np

from sniper.data.catalog import DatasetCatalog, MetadataCatalog

from .coco_fields import (
    _R_BBOX,
    _R_IMAGE,
    _R_NONFINITE,
    _R_NONPOS,
    _R_OUTSIDE,
    _R_TINY,
    _clip_and_filter,
    _gather_annotations,
    _kept_segmentations,
    _parse_categories,
    _parse_images,
)

__all__ = ["load_coco_json", "register_coco_instances"]

logger = logging.getLogger("sniper.data")

_TOP_LEVEL_KEYS = ("images", "annotations", "categories")


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
    img_idx, classes, bbox_xywh, is_crowd, ann_ids, areas, segms = _gather_annotations(
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
    pos_segms = _kept_segmentations(
        json_file, segms, pos_order, ann_ids, heights[img_idx], widths[img_idx]
    )
    del segms
    for i, img in enumerate(images):
        p0, p1, c0, c1 = pos_bounds[i], pos_bounds[i + 1], crowd_bounds[i], crowd_bounds[i + 1]
        img["boxes"], img["classes"] = pos_boxes[p0:p1], pos_classes[p0:p1]
        img["crowd_boxes"], img["ann_ids"] = crowd_boxes[c0:c1], pos_ann_ids[p0:p1]
        img["areas"], img["crowd_areas"] = pos_areas[p0:p1], crowd_areas[c0:c1]
        img["crowd_classes"] = crowd_classes[c0:c1]
        if pos_segms is not None:
            img["segmentations"] = pos_segms[p0:p1]

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
