"""A hand-made Pascal VOC folder for the tests: XMLs, JPEGs and a split file."""

from __future__ import annotations

import os
from typing import Any

import cv2
import numpy as np


def voc_xml(height: int, width: int, objects: list[tuple[str, list[float], int]]) -> str:
    """The text of one VOC annotation XML; `objects` lists (name, [xmin, ymin, xmax, ymax]
    in VOC's 1-based inclusive px, difficult 0/1)."""
    parts = [
        "<annotation>",
        "  <folder>VOC2007</folder>",
        f"  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>",
    ]
    for name, (x1, y1, x2, y2), difficult in objects:
        parts += [
            "  <object>",
            f"    <name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>",
            f"    <difficult>{difficult}</difficult>",
            f"    <bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax>"
            f"<ymax>{y2}</ymax></bndbox>",
            "  </object>",
        ]
    return "\n".join([*parts, "</annotation>", ""])


def write_voc_folder(
    root: Any,
    images: dict[str, tuple[int, int, list[tuple[str, list[float], int]]]],
    split: str = "test",
) -> str:
    """Write `root/{Annotations,JPEGImages,ImageSets/Main}` for `images` (file id ->
    (height, width, objects), see `voc_xml`), the split file listing them in dict order.
    Returns `root` as a string."""
    root = str(root)
    for sub in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    for file_id, (h, w, objects) in images.items():
        with open(os.path.join(root, "Annotations", f"{file_id}.xml"), "w") as f:
            f.write(voc_xml(h, w, objects))
        image = np.full((h, w, 3), 128, np.uint8)
        cv2.imwrite(os.path.join(root, "JPEGImages", f"{file_id}.jpg"), image)
    with open(os.path.join(root, "ImageSets", "Main", f"{split}.txt"), "w") as f:
        f.write("".join(f"{file_id}\n" for file_id in images))
    return root
