"""Single-scale inference over a dataset and COCO box AP (detectron2's `inference_on_dataset`
and `COCOEvaluator`).

`inference_on_dataset(model, records, evaluator, scale=...)` reads every record's image,
resizes it by the scale (a factor, or a (short, long) pair resolved per image as in
`chipping.scale_factor`), runs the model on it and maps the boxes back to original-image
pixels before handing them to the evaluator. Records are split across processes
(`records[rank::world_size]`); `COCOEvaluator.evaluate` gathers the detections on rank 0,
writes `coco_instances_results.json` and runs pycocotools' COCOeval against the dataset's
json (`MetadataCatalog.get(name).json_file`). The multi-scale SNIPER evaluator builds on this.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor, nn

from chipping import scale_factor, scaled_size
from sniper.data.catalog import MetadataCatalog

from .launch import all_gather, get_rank, get_world_size, is_main_process

__all__ = ["COCOEvaluator", "METRICS", "inference_on_dataset", "load_image"]

logger = logging.getLogger(__name__)

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
RESULTS_FILE = "coco_instances_results.json"


def load_image(file_name: str, input_format: str = "RGB") -> np.ndarray:
    """Read an image as uint8 (H, W, 3) in `input_format` channel order ("RGB" or "BGR")."""
    image = cv2.imread(file_name, cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read image {file_name!r}")
    return image[:, :, ::-1].copy() if input_format == "RGB" else image


class COCOEvaluator:
    """Collect detections of one dataset and compute COCO box AP with pycocotools.

    Args:
        dataset_name: registered dataset; its metadata needs `json_file` and
            `thing_dataset_id_to_contiguous_id` (set when the dataset is loaded).
        output_dir: where rank 0 writes `coco_instances_results.json` (None: not written).
    """

    def __init__(self, dataset_name: str, output_dir: str | None = None) -> None:
        meta = MetadataCatalog.get(dataset_name)
        self.dataset_name = dataset_name
        self.json_file: str = meta.json_file
        id_map: dict[int, int] = meta.thing_dataset_id_to_contiguous_id
        self.contiguous_to_dataset_id = {v: k for k, v in id_map.items()}
        self.class_names: list[str] = list(meta.get("thing_classes", []))
        self.output_dir = output_dir
        self._predictions: list[dict[str, Any]] = []
        self._image_ids: list[int] = []

    def reset(self) -> None:
        """Forget everything processed so far."""
        self._predictions, self._image_ids = [], []

    def process(self, records: Sequence[dict], outputs: Sequence[dict[str, Tensor]]) -> None:
        """Add detections (boxes XYXY in original-image px, scores, labels 1..C) per record."""
        for record, out in zip(records, outputs, strict=True):
            image_id = int(record["image_id"])
            self._image_ids.append(image_id)
            boxes = out["boxes"].detach().float().cpu().numpy().reshape(-1, 4)
            scores = out["scores"].detach().float().cpu().numpy().reshape(-1)
            labels = out["labels"].detach().cpu().numpy().reshape(-1)
            for box, score, label in zip(boxes, scores, labels, strict=True):
                x1, y1, x2, y2 = (float(v) for v in box)
                self._predictions.append({
                    "image_id": image_id,
                    "category_id": self.contiguous_to_dataset_id[int(label) - 1],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": float(score),
                })

    def evaluate(self) -> dict[str, dict[str, float]]:
        """Gather to rank 0 and evaluate there; other ranks return {}.

        Returns:
            {"bbox": {"AP", "AP50", "AP75", "APs", "APm", "APl" (percent; NaN when no GT
            box is in that area range), "AP-<class name>" per category (NaN without GT)}}.
        """
        gathered = all_gather((self._predictions, self._image_ids))
        if not is_main_process():
            return {}
        predictions = [p for preds, _ in gathered for p in preds]
        image_ids = sorted({i for _, ids in gathered for i in ids})
        if self.output_dir:
            os.makedirs(self.output_dir, exist_ok=True)
            path = os.path.join(self.output_dir, RESULTS_FILE)
            with open(path, "w", encoding="utf-8") as f:
                json.dump(predictions, f)
            logger.info("wrote %d detections to %s", len(predictions), path)
        return {"bbox": self._coco_eval(predictions, image_ids)}

    def _coco_eval(self, predictions: list[dict], image_ids: list[int]) -> dict[str, float]:
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            coco_gt = COCO(self.json_file)
        cat_ids = sorted(coco_gt.getCatIds())
        if not predictions:
            logger.warning("%s: no detections; every AP is 0", self.dataset_name)
            results = dict.fromkeys(METRICS, 0.0)
            results.update({f"AP-{name}": 0.0 for name in self._names(cat_ids, coco_gt)})
            return results
        with contextlib.redirect_stdout(stdout):
            coco_dt = coco_gt.loadRes(predictions)
            coco_eval = COCOeval(coco_gt, coco_dt, "bbox")
            coco_eval.params.imgIds = image_ids
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        logger.info("COCO evaluation of %s:\n%s", self.dataset_name, stdout.getvalue())
        # pycocotools reports -1 for an area range without GT boxes: NaN, as detectron2.
        stats = [float(v) * 100 if v >= 0 else float("nan") for v in coco_eval.stats[:6]]
        results = dict(zip(METRICS, stats, strict=True))
        # precision: (IoU thresholds, recall points, classes, area ranges, max dets)
        precision = coco_eval.eval["precision"]
        for k, name in enumerate(self._names(cat_ids, coco_gt)):
            p = precision[:, :, k, 0, -1]
            p = p[p > -1]
            results[f"AP-{name}"] = float(np.mean(p) * 100) if p.size else float("nan")
        return results

    def _names(self, cat_ids: list[int], coco_gt: COCO) -> list[str]:
        """Class names in sorted category-id order (= contiguous order)."""
        if len(self.class_names) == len(cat_ids):
            return self.class_names
        return [coco_gt.loadCats(c)[0]["name"] for c in cat_ids]


def _prepare(
    record: dict, scale: float | tuple[float, float], input_format: str
) -> tuple[Tensor, float, float]:
    """Image resized by `scale` as a (3, H', W') uint8 tensor, and the x, y factors used."""
    image = load_image(record["file_name"], input_format)
    height, width = image.shape[:2]
    factor = scale_factor(scale, (height, width))
    new_h, new_w = scaled_size((height, width), factor)
    if (new_h, new_w) != (height, width):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    return tensor, new_w / width, new_h / height


def _to_original(out: dict[str, Tensor], fx: float, fy: float, size: tuple[int, int]) -> dict:
    """Detections of a resized input mapped back to original-image pixels (clipped)."""
    boxes = out["boxes"].detach().float().cpu() / torch.tensor([fx, fy, fx, fy])
    height, width = size
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    return {"boxes": boxes, "scores": out["scores"].cpu(), "labels": out["labels"].cpu()}


def inference_on_dataset(
    model: nn.Module,
    records: Sequence[dict],
    evaluator: COCOEvaluator,
    *,
    scale: float | tuple[float, float] = 1.0,
    input_format: str = "RGB",
    device: torch.device | str | None = None,
) -> dict[str, dict[str, float]]:
    """Run `model` on this process's share of `records` at one scale and evaluate.

    Args:
        model: detector; `model([image])` in eval mode gives boxes in input pixels.
        records: dataset records (file_name, image_id, height, width, ...).
        evaluator: receives the detections in original-image pixels.
        scale: resize factor, or (short, long) pair resolved per image.
        input_format: channel order the model expects.
        device: where inputs go (default: the model's parameters' device).

    Returns:
        The evaluator's results plus "speed": {"images_per_s", "input_pixels", "images"}
        (pixels summed over the network inputs of all processes); {} on ranks > 0.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    shard = list(records)[get_rank()::get_world_size()]
    evaluator.reset()
    pixels, start = 0, time.perf_counter()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for record in shard:
                image, fx, fy = _prepare(record, scale, input_format)
                pixels += int(image.shape[1] * image.shape[2])
                out = model([image.to(device)])[0]
                size = (int(record["height"]), int(record["width"]))
                evaluator.process([record], [_to_original(out, fx, fy, size)])
    finally:
        model.train(was_training)
    seconds = time.perf_counter() - start
    stats = all_gather((len(shard), pixels, seconds))
    results = evaluator.evaluate()
    if not is_main_process():
        return {}
    images = sum(s[0] for s in stats)
    slowest = max(s[2] for s in stats)
    results["speed"] = {
        "images_per_s": images / slowest if slowest > 0 else 0.0,
        "input_pixels": float(sum(s[1] for s in stats)),
        "images": float(images),
    }
    logger.info(
        "inference on %d images at scale %s: %.2f images/s, %.3g input pixels",
        images, scale, results["speed"]["images_per_s"], results["speed"]["input_pixels"],
    )
    return results
