"""Inference over a dataset and COCO box AP (detectron2's `inference_on_dataset` and
`COCOEvaluator`).

`inference_on_dataset(inference, records, evaluator)` reads every record's image and runs an
*inference engine* on it: any callable mapping a list of ``(H, W, 3)`` images to detections
in original-image pixels with the number of network-input pixels it processed (SNIPER's
`sniper.inference.MultiScaleInference`, one scale of it, or AutoFocus's cascade). Records are
split across processes (`records[rank::world_size]`); `COCOEvaluator.evaluate` gathers the
detections on rank 0, writes `coco_instances_results.json` and runs pycocotools' COCOeval
against the dataset's json (`MetadataCatalog.get(name).json_file`).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor

from sniper.data.catalog import MetadataCatalog
from sniper.image_ops import read_image as load_image

from .launch import all_gather, get_rank, get_world_size, is_main_process

__all__ = ["COCOEvaluator", "METRICS", "inference_on_dataset", "load_image"]

logger = logging.getLogger(__name__)

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
RESULTS_FILE = "coco_instances_results.json"


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
                self._predictions.append(
                    {
                        "image_id": image_id,
                        "category_id": self.contiguous_to_dataset_id[int(label) - 1],
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "score": float(score),
                    }
                )

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


def inference_on_dataset(
    inference: Callable[[list[np.ndarray]], list[dict[str, Any]]],
    records: Sequence[dict],
    evaluator: COCOEvaluator,
    *,
    input_format: str = "RGB",
) -> dict[str, dict[str, float]]:
    """Run ``inference`` on this process's share of ``records`` and evaluate.

    Args:
        inference: maps ``[image]`` (uint8 ``(H, W, 3)`` in ``input_format``) to one dict
            per image with ``boxes`` (N, 4) XYXY original-image px, ``scores`` (N,),
            ``classes`` (N,) contiguous 0..C-1 and ``pixels`` (int, network-input pixels
            processed); optionally ``pixels_per_scale`` (list of int).
        records: dataset records (file_name, image_id, height, width, ...).
        evaluator: receives the detections.
        input_format: channel order the images are read in.

    Returns:
        The evaluator's results plus "speed": {"images_per_s", "input_pixels",
        "pixels_per_image", "images", and "pixels_scale<k>" per scale when reported}
        (summed over all processes); {} on ranks > 0.
    """
    shard = list(records)[get_rank() :: get_world_size()]
    evaluator.reset()
    pixels, per_scale, start = 0, [], time.perf_counter()
    with torch.no_grad():
        for record in shard:
            out = inference([load_image(record["file_name"], input_format)])[0]
            pixels += int(out["pixels"])
            for k, px in enumerate(out.get("pixels_per_scale", [])):
                per_scale += [0] * (k + 1 - len(per_scale))
                per_scale[k] += int(px)
            labels = torch.as_tensor(out["classes"]).long() + 1
            evaluator.process(
                [record],
                [
                    {
                        "boxes": torch.as_tensor(out["boxes"]),
                        "scores": torch.as_tensor(out["scores"]),
                        "labels": labels,
                    }
                ],
            )
    seconds = time.perf_counter() - start
    stats = all_gather((len(shard), pixels, seconds, per_scale))
    results = evaluator.evaluate()
    if not is_main_process():
        return {}
    images = sum(s[0] for s in stats)
    slowest = max(s[2] for s in stats)
    total = float(sum(s[1] for s in stats))
    speed = {
        "images_per_s": images / slowest if slowest > 0 else 0.0,
        "input_pixels": total,
        "pixels_per_image": total / max(images, 1),
        "images": float(images),
    }
    for k in range(max(len(s[3]) for s in stats)):
        speed[f"pixels_scale{k}"] = float(sum(s[3][k] for s in stats if k < len(s[3])))
    results["speed"] = speed
    logger.info(
        "inference on %d images: %.2f images/s, %.4g input pixels per image",
        images,
        speed["images_per_s"],
        speed["pixels_per_image"],
    )
    return results
