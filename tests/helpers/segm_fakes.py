"""Shared inputs of the mask AP tests: a two-image COCO dataset with polygon, RLE and
box-only annotations (gray images recognizable by their level), detections made from given
masks, a fake inference engine returning them, and pycocotools run by hand."""

from __future__ import annotations

import contextlib
import io
import json
import os

import cv2
import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from sniper.data.catalog import DatasetCatalog
from sniper.data.coco import register_coco_instances

SIZES = [(60, 80), (50, 70)]  # (h, w) of images 10 and 11
LEVELS = (60, 110)  # gray level of each image (the fake engine recognizes them by it)


def disk(h: int, w: int, cx: float, cy: float, r: float) -> np.ndarray:
    """uint8 (h, w): the pixels whose centre lies within ``r`` of ``(cx, cy)``."""
    yy, xx = np.mgrid[:h, :w]
    return ((xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r * r).astype(np.uint8)


def to_rle(mask: np.ndarray) -> dict:
    """The json form of pycocotools' RLE of a (h, w) mask: counts as str."""
    enc = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in enc["size"]], "counts": enc["counts"].decode()}


def box_mask(h: int, w: int, x: int, y: int, bw: int, bh: int) -> np.ndarray:
    """uint8 (h, w): the integer box ``[x, x + bw) x [y, y + bh)``."""
    m = np.zeros((h, w), np.uint8)
    m[y : y + bh, x : x + bw] = 1
    return m


DISK = disk(*SIZES[0], 55, 30, 8)
# (image index, category index, segmentation or None, box [x, y, w, h] when None)
ANNS = [
    (0, 0, [[20, 20, 30, 20, 30, 30, 20, 30]], None),  # 10x10 square polygon
    (0, 1, to_rle(DISK), None),  # a disk as compressed RLE
    (1, 0, [[5, 5, 25, 5, 25, 15, 15, 15, 15, 35, 5, 35]], None),  # an L polygon
    (1, 0, None, [40, 10, 20, 15]),  # a box without a mask
]


def gt_masks() -> list[np.ndarray]:
    """Each annotation's mask (h, w) uint8 by pycocotools; the box for the box-only one."""
    out = []
    for i, _, segm, box in ANNS:
        h, w = SIZES[i]
        if segm is None:
            out.append(box_mask(h, w, *box))
        elif isinstance(segm, list):
            out.append(mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(segm, h, w))))
        else:
            out.append(mask_utils.decode({"size": segm["size"], "counts": segm["counts"].encode()}))
    return out


def coco_json(extra: list[dict] = (), *, with_box_polygon: bool = False) -> dict:
    """The dataset json (areas = mask areas); ``with_box_polygon`` gives the box-only
    annotation its box as a polygon (the reference of the evaluator's rule)."""
    images = [
        {"id": 10 + i, "file_name": f"{i}.png", "height": h, "width": w}
        for i, (h, w) in enumerate(SIZES)
    ]
    anns = []
    for k, ((i, cat, segm, box), mask) in enumerate(zip(ANNS, gt_masks(), strict=True)):
        bbox = box or [
            float(v) for v in mask_utils.toBbox(mask_utils.encode(np.asfortranarray(mask)))
        ]
        ann = {"id": k + 1, "image_id": 10 + i, "category_id": 5 + 2 * cat, "bbox": bbox}
        ann.update(area=float(mask.sum()), iscrowd=0)
        if segm is not None:
            ann["segmentation"] = segm
        elif with_box_polygon:
            x, y, w, h = box
            ann["segmentation"] = [[x, y, x, y + h, x + w, y + h, x + w, y]]
        anns.append(ann)
    anns += [dict(a, id=100 + j) for j, a in enumerate(extra)]
    cats = [{"id": 5, "name": "a"}, {"id": 7, "name": "b"}]
    return {"images": images, "annotations": anns, "categories": cats}


def register(tmp_path, data: dict, name: str) -> tuple[str, list[dict], str]:
    """Write the gray images and ``data`` as the json under ``tmp_path``, register
    ``name`` and load it: (name, records, json file)."""
    root = tmp_path / "data"
    os.makedirs(root / "images", exist_ok=True)
    for i, (h, w) in enumerate(SIZES):
        cv2.imwrite(str(root / "images" / f"{i}.png"), np.full((h, w, 3), LEVELS[i], np.uint8))
    json_file = str(root / "instances.json")
    with open(json_file, "w", encoding="utf-8") as f:
        json.dump(data, f)
    register_coco_instances(name, json_file, str(root / "images"))
    return name, DatasetCatalog.get(name), json_file


def detections(masks: list[np.ndarray], scores: list[float], keep: list[int] | None = None):
    """Per image: one detection per kept annotation, its GT box and the given mask."""
    keep = list(range(len(ANNS))) if keep is None else keep
    outputs = []
    for i in range(len(SIZES)):
        ks = [k for k in keep if ANNS[k][0] == i]
        boxes = []
        for k in ks:
            m = gt_masks()[k]
            x, y, bw, bh = mask_utils.toBbox(mask_utils.encode(np.asfortranarray(m)))
            boxes.append([x, y, x + bw, y + bh])
        outputs.append(
            {
                "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                "scores": torch.tensor([scores[k] for k in ks]),
                "labels": torch.tensor([ANNS[k][1] + 1 for k in ks], dtype=torch.int64),
                "masks": [to_rle(masks[k]) for k in ks],
            }
        )
    return outputs


def by_hand(gt_json: dict, results: list[dict], iou_type: str) -> list[float]:
    """COCO's six numbers (percent) by pycocotools on the raw json."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = gt_json
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(results), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) * 100 if v >= 0 else float("nan") for v in ev.stats[:6]]


def engine(masks: list[np.ndarray]):
    """A fake inference engine: the detections of ``detections`` of the image it recognizes
    by its gray level, with ``masks`` RLE and ``classes`` 0..C-1."""
    outputs = detections(masks, [0.9, 0.8, 0.7, 0.6])

    def infer(images):
        res = []
        for im in images:
            out = outputs[LEVELS.index(int(im[0, 0, 0]))]
            res.append(
                {
                    "boxes": out["boxes"].numpy(),
                    "scores": out["scores"].numpy(),
                    "classes": out["labels"].numpy() - 1,
                    "masks": out["masks"],
                    "pixels": im.shape[0] * im.shape[1],
                }
            )
        return res

    return infer
