"""Load Pascal VOC folders into per-image records; register them in the catalogs.

Layout of ``dirname`` (the official ``VOCdevkit/VOC2007`` / ``VOC2012`` folders)::

    Annotations/<id>.xml          one XML per image: <size>, <object>s with <name>,
                                  <difficult> and <bndbox> (xmin, ymin, xmax, ymax)
    JPEGImages/<id>.jpg
    ImageSets/Main/<split>.txt    one image id per line (train, val, trainval, test)

Record (one dict per kept image; the fields of `sniper.data.coco` plus two):

- ``file_name`` str: absolute path of ``JPEGImages/<id>.jpg``.
- ``image_id`` int: the image's 0-based line in the split file.  ``file_id`` str: ``<id>``.
- ``height``, ``width`` int: from the XML's ``<size>``.
- ``boxes`` float32 (N, 4): XYXY, image px, exclusive right/bottom edge. VOC's 1-based,
  inclusive pixel coordinates become ``(xmin - 1, ymin - 1, xmax, ymax)``, as detectron2
  converts them; then the box rules of `sniper.data.coco` apply (clipped to the image;
  non-finite, non-positive, outside or under 1 px after clipping -> dropped, counted).
- ``classes`` int64 (N,): index of ``<name>`` in ``class_names`` (0..C-1).
- ``crowd_boxes`` float32 (M, 4): the ``difficult`` objects, same frame and rules. They are
  ignore regions, as crowd boxes are: neither positive nor negative in training, and the
  VOC evaluator neither counts nor penalizes detections of them.
- ``crowd_classes`` int64 (M,): the class of each difficult box (for the evaluator).
- ``ann_ids`` int64 (N,): 0-based position of each of ``boxes`` among the XML's objects.

Errors: a missing split file or XML -> ``FileNotFoundError`` naming the path and this
layout; malformed XML, a missing or non-positive ``<size>``, an object without ``<name>``
or a ``<bndbox>`` coordinate that is not a number, or a class not in ``class_names`` ->
``ValueError`` naming the file. An image whose JPEG is missing (``check_images``) is
dropped and counted. One summary line is logged (WARNING and ``warnings.warn`` when
anything was dropped), as for COCO jsons.
"""

from __future__ import annotations

import logging
import os
import warnings
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from sniper.data.catalog import DatasetCatalog, MetadataCatalog
from sniper.data.coco_fields import _clip_and_filter

__all__ = ["VOC_CLASS_NAMES", "load_voc_instances", "read_voc_xml", "register_pascal_voc"]

logger = logging.getLogger("sniper.data")

# The 20 classes of Pascal VOC in detectron2's order (contiguous ids 0..19).
VOC_CLASS_NAMES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip

LAYOUT = "Annotations/<id>.xml, JPEGImages/<id>.jpg, ImageSets/Main/<split>.txt"


def _text(node: ET.Element, tag: str, xml_file: str, what: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise ValueError(f"{xml_file}: {what} has no <{tag}>")
    return child.text.strip()


def _number(node: ET.Element, tag: str, xml_file: str, what: str) -> float:
    text = _text(node, tag, xml_file, what)
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{xml_file}: {what} <{tag}> is not a number: {text!r}") from None


def read_voc_xml(xml_file: str, class_names: Sequence[str]) -> dict[str, Any]:
    """Parse one VOC annotation XML (no box rules applied yet).

    Returns:
        {"height": int, "width": int, "boxes": float64 (K, 4) raw VOC ``(xmin, ymin, xmax,
        ymax)`` (1-based, inclusive px), "classes": int64 (K,), "difficult": bool (K,)}
        with the objects in XML order.
    Raises:
        FileNotFoundError: no such file.  ValueError: see the module docstring.
    """
    if not os.path.isfile(xml_file):
        raise FileNotFoundError(f"{xml_file}: VOC annotation not found (layout: {LAYOUT})")
    try:
        root = ET.parse(xml_file).getroot()
    except ET.ParseError as err:
        raise ValueError(f"{xml_file}: malformed VOC annotation XML: {err}") from None
    size = root.find("size")
    if size is None:
        raise ValueError(f"{xml_file}: annotation has no <size>")
    hw = [_number(size, tag, xml_file, "<size>") for tag in ("height", "width")]
    if not all(v > 0 and v.is_integer() for v in hw):
        raise ValueError(f"{xml_file}: <size> height/width must be positive integers, got {hw}")
    index = {name: i for i, name in enumerate(class_names)}
    boxes, classes, difficult = [], [], []
    for k, obj in enumerate(root.findall("object")):
        what = f"object {k}"
        name = _text(obj, "name", xml_file, what)
        if name not in index:
            raise ValueError(
                f"{xml_file}: {what} has class {name!r}, not in class_names {list(class_names)}"
            )
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise ValueError(f"{xml_file}: {what} has no <bndbox>")
        boxes.append([_number(bndbox, t, xml_file, what) for t in ("xmin", "ymin", "xmax", "ymax")])
        classes.append(index[name])
        flag = obj.find("difficult")
        difficult.append(flag is not None and (flag.text or "0").strip() not in ("0", ""))
    return {
        "height": int(hw[0]),
        "width": int(hw[1]),
        "boxes": np.array(boxes, dtype=np.float64).reshape(-1, 4),
        "classes": np.array(classes, dtype=np.int64),
        "difficult": np.array(difficult, dtype=bool),
    }


def _read_split(dirname: str, split: str) -> list[str]:
    path = os.path.join(dirname, "ImageSets", "Main", f"{split}.txt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: VOC split file not found (layout of {dirname}: {LAYOUT})")
    with open(path, encoding="utf-8") as f:
        return [line.split()[0] for line in f if line.strip()]


def _record(dirname: str, image_id: int, file_id: str, ann: dict, dropped: Counter) -> dict:
    """One record from a parsed XML (box rules of `sniper.data.coco` applied)."""
    raw = ann["boxes"]
    xywh = np.stack(
        [raw[:, 0] - 1, raw[:, 1] - 1, raw[:, 2] - raw[:, 0] + 1, raw[:, 3] - raw[:, 1] + 1], 1
    )
    n = len(raw)
    w, h = np.full(n, float(ann["width"])), np.full(n, float(ann["height"]))
    boxes, keep, _ = _clip_and_filter(xywh, w, h, dropped)
    boxes = boxes.astype(np.float32)
    pos, hard = keep & ~ann["difficult"], keep & ann["difficult"]
    return {
        "file_name": os.path.abspath(os.path.join(dirname, "JPEGImages", f"{file_id}.jpg")),
        "image_id": image_id,
        "file_id": file_id,
        "height": ann["height"],
        "width": ann["width"],
        "boxes": boxes[pos].reshape(-1, 4),
        "classes": ann["classes"][pos],
        "crowd_boxes": boxes[hard].reshape(-1, 4),
        "crowd_classes": ann["classes"][hard],
        "ann_ids": np.flatnonzero(pos).astype(np.int64),
    }


def load_voc_instances(
    dirname: str, split: str, class_names: Sequence[str], *, check_images: bool = True
) -> list[dict]:
    """Load the images of ``ImageSets/Main/<split>.txt`` of a VOC folder (module docstring).

    Args:
        dirname: the VOC folder (e.g. ``.../VOCdevkit/VOC2007``).
        split: split file name without ``.txt`` ("trainval", "test", ...).
        class_names: class names; position = contiguous class id.
        check_images: drop images whose JPEG does not exist.
    Returns:
        One record per kept image, in split-file order.
    """
    if len(set(class_names)) != len(class_names) or not class_names:
        raise ValueError(f"class_names must be non-empty and unique, got {list(class_names)}")
    dropped: Counter = Counter()
    records, missing = [], 0
    for i, file_id in enumerate(_read_split(dirname, split)):
        xml_file = os.path.join(dirname, "Annotations", f"{file_id}.xml")
        record = _record(dirname, i, file_id, read_voc_xml(xml_file, class_names), dropped)
        if check_images and not os.path.isfile(record["file_name"]):
            missing += 1
            continue
        records.append(record)
    parts = [f"{v} ({k})" for k, v in dropped.items()]
    parts += [f"{missing} image{'s' * (missing > 1)} (missing file)"] if missing else []
    line = (
        f"load_voc_instances({dirname}, {split}): {len(records)} images, "
        f"{sum(len(r['boxes']) for r in records)} boxes, "
        f"{sum(len(r['crowd_boxes']) for r in records)} difficult boxes; "
        f"dropped {', '.join(parts) if parts else 'nothing'}"
    )
    logger.log(logging.WARNING if parts else logging.INFO, line)
    if parts:
        warnings.warn(line, stacklevel=2)
    return records


def register_pascal_voc(
    name: str,
    dirname: str,
    split: str,
    year: int,
    class_names: Sequence[str] = VOC_CLASS_NAMES,
) -> None:
    """Register a VOC folder under ``name`` (loaded lazily by ``DatasetCatalog.get``), with
    metadata ``thing_classes``, ``dirname`` (absolute), ``split``, ``year`` and
    ``evaluator_type="pascal_voc"`` (year 2007: the 11-point metric; else the area metric).
    """
    dirname, names = os.path.abspath(dirname), list(class_names)
    DatasetCatalog.register(name, lambda: load_voc_instances(dirname, split, names))
    try:
        MetadataCatalog.get(name).set(
            thing_classes=names,
            dirname=dirname,
            split=split,
            year=int(year),
            evaluator_type="pascal_voc",
        )
    except ValueError:
        DatasetCatalog.remove(name)
        raise
