"""Convert VisDrone-DET txt annotations to a COCO instances json.

VisDrone-DET ground truth: one ``<stem>.txt`` per image ``<stem>.<ext>``, one object per line::

    bbox_left,bbox_top,bbox_width,bbox_height,score,object_category,truncation,occlusion

(integers; a single trailing comma and blank lines are tolerated). Categories: 0 ignored
regions, 1 pedestrian, 2 people, 3 bicycle, 4 car, 5 van, 6 truck, 7 tricycle,
8 awning-tricycle, 9 bus, 10 motor, 11 others.

Conversion rules:

- Images: every ``.jpg/.jpeg/.png/.bmp`` file (case-insensitive) directly in ``image_dir``,
  sorted by file name, get image ids 1, 2, ...; ``file_name`` is the bare file name (so
  register the json with ``image_root=image_dir``); ``height``/``width`` are read from the
  image header with Pillow. An image without its txt file is an error
  (``FileNotFoundError``); txt files without an image are skipped with a warning.
- COCO categories: ids 1..10 with the VisDrone names above (same ids as VisDrone).
- Category 1..10 with score 1 -> an ordinary annotation (``iscrowd=0``) of that category.
- Category 1..10 with score 0 (the ground truth's "ignore this box") -> ``iscrowd=1`` of
  that category, so it becomes an ignore region, never a positive.
- Category 0 (ignored region) and 11 (others) -> an ignore region for *every* class: one
  ``iscrowd=1`` annotation per category 1..10 with the same box. This matches VisDrone's own
  evaluation (detections in those regions are ignored whatever their class) under COCO
  evaluation, and the loader keeps them as crowd (ignore) boxes.
- Boxes are written as in the file, ``bbox = [left, top, width, height]`` (floats), ``area
  = width * height``; clipping/dropping degenerate boxes is the loader's job
  (``sniper.data.coco.load_coco_json``).
- Annotation ids are 1, 2, ... in image order, then line order.
- Malformed lines (not 8 integer fields, category outside 0..11, score not 0/1) raise
  ``ValueError`` naming the file and line number; nothing is written then.

The json is written atomically (temporary file in the output folder + ``os.replace``).
CLI: ``python -m sniper.data.visdrone IMAGE_DIR ANN_DIR OUT_JSON`` (prints the stats).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import warnings

from PIL import Image

from sniper.progress import track

__all__ = ["VISDRONE_CLASSES", "convert_visdrone_to_coco", "main"]

#: Names of VisDrone categories 1..10 (COCO category ids 1..10).
VISDRONE_CLASSES = (
    "pedestrian",
    "people",
    "bicycle",
    "car",
    "van",
    "truck",
    "tricycle",
    "awning-tricycle",
    "bus",
    "motor",
)
_IGNORED_REGION, _OTHERS = 0, 11
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def _parse_line(line: str, txt_path: str, lineno: int) -> list[int]:
    """The 8 integer fields of one annotation line; ``ValueError`` naming file:line if bad."""
    fields = line.split(",")
    if len(fields) == 9 and fields[8].strip() == "":
        fields = fields[:8]
    where = f"{txt_path}:{lineno}"
    if len(fields) != 8:
        raise ValueError(f"{where}: expected 8 comma-separated fields, got {len(fields)}")
    try:
        values = [int(v) for v in fields]
    except ValueError:
        raise ValueError(f"{where}: fields must be integers, got {line!r}") from None
    score, category = values[4], values[5]
    if not 0 <= category <= _OTHERS:
        raise ValueError(f"{where}: object_category {category} is outside 0..11")
    if score not in (0, 1):
        raise ValueError(f"{where}: score {score} is not 0 or 1 (ground truth expected)")
    return values


def _annotations_of(txt_path: str, image_id: int, next_id: int, stats: dict) -> list[dict]:
    """COCO annotations of one txt file (ids from ``next_id``); updates ``stats`` counts."""
    anns: list[dict] = []
    with open(txt_path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.strip()
            if not line:
                continue
            left, top, width, height, score, category, _, _ = _parse_line(line, txt_path, lineno)
            if category in (_IGNORED_REGION, _OTHERS):
                stats["ignore_regions"] += 1
                cat_ids, iscrowd = list(range(1, len(VISDRONE_CLASSES) + 1)), 1
            elif score == 0:
                stats["ignored_score_zero"] += 1
                cat_ids, iscrowd = [category], 1
            else:
                stats["boxes"] += 1
                cat_ids, iscrowd = [category], 0
            for cat_id in cat_ids:
                anns.append(
                    {
                        "id": next_id + len(anns),
                        "image_id": image_id,
                        "category_id": cat_id,
                        "bbox": [float(left), float(top), float(width), float(height)],
                        "area": float(width * height),
                        "iscrowd": iscrowd,
                    }
                )
    return anns


logger = logging.getLogger("sniper.data")


def _write_json_atomic(obj: dict, output_json: str) -> None:
    """Write ``obj`` to ``output_json`` via a temp file in the same folder + ``os.replace``."""
    out_dir = os.path.dirname(os.path.abspath(output_json))
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".visdrone-", suffix=".json.tmp", dir=out_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, output_json)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def convert_visdrone_to_coco(image_dir: str, annotation_dir: str, output_json: str) -> dict:
    """Convert a VisDrone-DET split to a COCO instances json (rules: module docstring).

    Args:
        image_dir: folder with the split's images.
        annotation_dir: folder with one ``<image stem>.txt`` per image.
        output_json: path of the json to write (folders are created).
    Returns:
        stats ``{"images", "annotations", "boxes", "crowd_annotations", "ignore_regions",
        "ignored_score_zero", "orphan_annotation_files"}`` (ints): images written, all
        annotations written, ``iscrowd=0`` annotations, ``iscrowd=1`` annotations, category
        0/11 lines, score-0 lines of categories 1..10, txt files without an image.
    """
    names = sorted(
        n
        for n in os.listdir(image_dir)
        if n.lower().endswith(_IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(image_dir, n))
    )
    stats = dict.fromkeys(
        (
            "images",
            "annotations",
            "boxes",
            "crowd_annotations",
            "ignore_regions",
            "ignored_score_zero",
            "orphan_annotation_files",
        ),
        0,
    )
    images: list[dict] = []
    annotations: list[dict] = []
    for image_id, name in enumerate(track(names, desc="convert VisDrone", log=logger), start=1):
        txt_path = os.path.join(annotation_dir, os.path.splitext(name)[0] + ".txt")
        if not os.path.isfile(txt_path):
            raise FileNotFoundError(f"annotation file {txt_path} for image {name} is missing")
        with Image.open(os.path.join(image_dir, name)) as im:
            width, height = im.size
        images.append({"id": image_id, "file_name": name, "height": height, "width": width})
        annotations += _annotations_of(txt_path, image_id, len(annotations) + 1, stats)

    stems = {os.path.splitext(n)[0] for n in names}
    orphans = sorted(
        n
        for n in os.listdir(annotation_dir)
        if n.endswith(".txt") and os.path.splitext(n)[0] not in stems
    )
    if orphans:
        warnings.warn(
            f"{len(orphans)} annotation file(s) in {annotation_dir} have no image in "
            f"{image_dir} and were skipped: {', '.join(orphans[:5])}"
            + (", ..." if len(orphans) > 5 else ""),
            stacklevel=2,
        )
    stats["images"] = len(images)
    stats["annotations"] = len(annotations)
    stats["crowd_annotations"] = sum(a["iscrowd"] for a in annotations)
    stats["orphan_annotation_files"] = len(orphans)
    coco = {
        "info": {"description": "VisDrone-DET converted by sniper.data.visdrone"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": i, "name": n, "supercategory": "none"}
            for i, n in enumerate(VISDRONE_CLASSES, start=1)
        ],
    }
    _write_json_atomic(coco, output_json)
    return stats


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: ``python -m sniper.data.visdrone IMAGE_DIR ANN_DIR OUT_JSON``."""
    parser = argparse.ArgumentParser(
        prog="python -m sniper.data.visdrone",
        description="Convert VisDrone-DET txt annotations to a COCO instances json.",
    )
    parser.add_argument("image_dir", help="folder with the images")
    parser.add_argument("annotation_dir", help="folder with one <image stem>.txt per image")
    parser.add_argument("output_json", help="COCO json to write (atomically)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s"
    )
    try:
        stats = convert_visdrone_to_coco(args.image_dir, args.annotation_dir, args.output_json)
    except (OSError, ValueError) as err:  # a missing folder, a malformed txt line
        named = isinstance(err, OSError) and err.filename is not None
        reason = f"{err.filename}: {err.strerror}" if named else err
        print(f"error: {' '.join(str(reason).split())}", file=sys.stderr)
        return 2
    print(json.dumps(stats, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
