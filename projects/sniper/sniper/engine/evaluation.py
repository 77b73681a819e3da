"""Inference over a dataset and COCO box and mask AP (detectron2's `inference_on_dataset`
and `COCOEvaluator`).

`inference_on_dataset` (and the `DatasetEvaluator` interface) live in
`sniper.engine.inference_loop` and are re-exported here.

`COCOEvaluator.evaluate` gathers the detections on rank 0, writes
`coco_instances_results.json` and runs pycocotools' COCOeval against the ground truth *of the
records it processed*: the cleaned annotations the loader produced (`sniper.data.coco`:
dropped boxes are not there, kept boxes are clipped to the image, ``area`` filled in), never
the raw json, so that what the model was trained on and what it is scored against agree.

Dense scenes: COCOeval scores at most `max_dets_per_image` detections per image
(`TEST.MAX_DETS_PER_IMAGE`, pycocotools' ``maxDets = [1, 10, N]``; 100 in COCO's protocol,
500 in VisDrone-DET's). With N != 100 the results table is named ``bbox@maxDets=N`` instead
of ``bbox``, so that such numbers are never mistaken for COCO's. A test image with more GT
boxes than N is warned about once per dataset and process (its recall cannot reach 100%).
`build_evaluator` picks the evaluator from the dataset's metadata ``evaluator_type``
("coco" or "pascal_voc", `sniper.engine.voc_evaluation`).

Masks: when the detections carry ``masks`` (COCO RLE per box, image px; models with
``MODEL.MASK_ON``) and the records carry ``segmentations``, mask AP is computed beside box
AP, under ``segm`` (``segm@maxDets=N`` with the same cap), and every detection of the
results json holds its RLE ``segmentation`` (`sniper.engine.coco_segm`; the ground truth's
rule for boxes without a mask and for crowd regions: `sniper.engine.coco_ground_truth`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from fvcore.common.config import CfgNode
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from sniper.data.catalog import MetadataCatalog
from sniper.image_ops import read_image as load_image
from sniper.output_files import atomic_write_json

from .coco_ground_truth import coco_from_ground_truth, record_ground_truth
from .coco_segm import detection_rles, segm_results, segm_task_name
from .detection_caps import COCO_MAX_DETS, bbox_task_name, warn_dense_image
from .inference_loop import DatasetEvaluator, inference_on_dataset
from .launch import all_gather, is_main_process
from .voc_evaluation import PascalVOCEvaluator

__all__ = [
    "COCOEvaluator",
    "DatasetEvaluator",
    "METRICS",
    "bbox_task_name",
    "build_evaluator",
    "inference_on_dataset",
    "load_image",
    "segm_task_name",
]

logger = logging.getLogger(__name__)

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
RESULTS_FILE = "coco_instances_results.json"


class COCOEvaluator:
    """Collect detections of one dataset and compute COCO box (and mask) AP with pycocotools.

    Args:
        dataset_name: registered dataset; its metadata needs
            `thing_dataset_id_to_contiguous_id` (set when the dataset is loaded). The ground
            truth comes from the records given to `process` (``boxes``, ``classes``,
            ``crowd_boxes``, optional ``areas`` / ``crowd_areas`` and ``segmentations``;
            image px).
        output_dir: where rank 0 writes `coco_instances_results.json` (None: not written).
        max_dets_per_image: detections scored per image (pycocotools ``maxDets[2]``; the
            best-scored ones); names the results tables (`bbox_task_name`,
            `segm_task_name`).
    """

    def __init__(
        self,
        dataset_name: str,
        output_dir: str | None = None,
        *,
        max_dets_per_image: int = COCO_MAX_DETS,
    ) -> None:
        if type(max_dets_per_image) is not int or max_dets_per_image < 1:
            raise ValueError(
                f"COCOEvaluator({dataset_name!r}): max_dets_per_image must be an integer "
                f">= 1, got {max_dets_per_image!r}"
            )
        self.max_dets_per_image = max_dets_per_image
        self.task = bbox_task_name(max_dets_per_image)
        self.segm_task = segm_task_name(max_dets_per_image)
        meta = MetadataCatalog.get(dataset_name)
        self.dataset_name = dataset_name
        self.json_file: str | None = meta.get("json_file")
        id_map: dict[int, int] = meta.thing_dataset_id_to_contiguous_id
        self.contiguous_to_dataset_id = {v: k for k, v in id_map.items()}
        self.class_names: list[str] = list(meta.get("thing_classes", []))
        self.output_dir = output_dir
        self._predictions: list[dict[str, Any]] = []
        self._image_ids: list[int] = []
        self._gt: list[dict[str, Any]] = []
        self._with_masks = [0, 0]  # outputs processed with / without "masks"

    def reset(self) -> None:
        """Forget everything processed so far."""
        self._predictions, self._image_ids, self._gt = [], [], []
        self._with_masks = [0, 0]

    def _category(self, label: int) -> int:
        """The dataset category id of model label ``label`` (1..C), or ``ValueError``."""
        cat = self.contiguous_to_dataset_id.get(label - 1)
        if cat is None:
            n = len(self.contiguous_to_dataset_id)
            raise ValueError(
                f"COCOEvaluator({self.dataset_name!r}): the model predicted label {label} "
                f"but the dataset has {n} categories (labels 1..{n}); MODEL.NUM_CLASSES must "
                f"be {n}"
            )
        return cat

    def process(self, records: Sequence[dict], outputs: Sequence[dict[str, Any]]) -> None:
        """Add detections (``boxes`` XYXY in original-image px, ``scores``, ``labels`` 1..C,
        optional ``masks``: one COCO RLE dict per box, of the record's image size) per
        record; warn once when a record holds more GT ``boxes`` than `max_dets_per_image`.

        Raises:
            ValueError: a label beyond the categories, or ``masks`` that are not one RLE of
                the image's size per box (`sniper.engine.coco_segm.detection_rles`).
        """
        for record, out in zip(records, outputs, strict=True):
            warn_dense_image(
                self.dataset_name, record, self.max_dets_per_image, "TEST.MAX_DETS_PER_IMAGE"
            )
            image_id = int(record["image_id"])
            self._image_ids.append(image_id)
            self._gt.append(record_ground_truth(record))
            boxes = out["boxes"].detach().float().cpu().numpy().reshape(-1, 4)
            scores = out["scores"].detach().float().cpu().numpy().reshape(-1)
            labels = out["labels"].detach().cpu().numpy().reshape(-1)
            rles = None
            if out.get("masks") is not None:
                size = (int(record.get("height", 0)), int(record.get("width", 0)))
                where = f"COCOEvaluator({self.dataset_name!r}): image {image_id}"
                rles = detection_rles(out["masks"], len(boxes), size, where)
            self._with_masks[rles is None] += 1
            for i, (box, score, label) in enumerate(zip(boxes, scores, labels, strict=True)):
                x1, y1, x2, y2 = (float(v) for v in box)
                result = {
                    "image_id": image_id,
                    "category_id": self._category(int(label)),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": float(score),
                }
                if rles is not None:
                    result["segmentation"] = rles[i]
                self._predictions.append(result)

    def evaluate(self) -> dict[str, dict[str, float]]:
        """Gather to rank 0 and evaluate there; other ranks return {}.

        Returns:
            {task: {"AP", "AP50", "AP75", "APs", "APm", "APl" (percent; NaN when no GT
            object is in that area range), "AP-<class name>" per category (NaN without
            GT)}}, task = `bbox_task_name(max_dets_per_image)` ("bbox" for 100), plus
            `segm_task_name(max_dets_per_image)` ("segm") with the same keys for mask AP
            when the outputs had ``masks`` and the records ``segmentations``.

        Raises:
            ValueError: some outputs had ``masks`` and others not (one model gives both or
                neither).
        """
        gathered = all_gather((self._predictions, self._image_ids, self._gt, self._with_masks))
        if not is_main_process():
            return {}
        predictions = [p for preds, _, _, _ in gathered for p in preds]
        image_ids = sorted({i for _, ids, _, _ in gathered for i in ids})
        ground_truth = [g for _, _, gts, _ in gathered for g in gts]
        with_masks, without = (sum(g[3][k] for g in gathered) for k in (0, 1))
        if with_masks and without:
            raise ValueError(
                f"COCOEvaluator({self.dataset_name!r}): {with_masks} images had predicted "
                f"'masks' and {without} had none; the outputs of one model have both or neither"
            )
        if self.output_dir:
            os.makedirs(self.output_dir, exist_ok=True)
            path = os.path.join(self.output_dir, RESULTS_FILE)
            atomic_write_json(path, predictions)
            logger.info("wrote %d detections to %s", len(predictions), path)
        results = {self.task: self._coco_eval(predictions, image_ids, ground_truth, "bbox")}
        if with_masks:
            if ground_truth and all(g.get("segmentations") is not None for g in ground_truth):
                segm = self._coco_eval(segm_results(predictions), image_ids, ground_truth, "segm")
                results[self.segm_task] = segm
            else:
                logger.warning(
                    "%s: the detections have masks but the dataset has no 'segmentations'; "
                    "no mask AP",
                    self.dataset_name,
                )
        return results

    def coco_ground_truth(self, ground_truth: Sequence[dict[str, Any]]) -> COCO:
        """A pycocotools ``COCO`` of the processed records' annotations
        (`sniper.engine.coco_ground_truth.coco_from_ground_truth`)."""
        return coco_from_ground_truth(ground_truth, self.contiguous_to_dataset_id, self.class_names)

    def _coco_eval(
        self, predictions: list[dict], image_ids: list[int], ground_truth: list[dict], iou_type: str
    ) -> dict[str, float]:
        """One COCOeval run (``iou_type`` "bbox" or "segm") -> that task's results."""
        task = self.task if iou_type == "bbox" else self.segm_task
        stdout = io.StringIO()
        coco_gt = self.coco_ground_truth(ground_truth)
        cat_ids = sorted(coco_gt.getCatIds())
        if not predictions:
            logger.warning("%s: no detections; every %s AP is 0", self.dataset_name, task)
            results = dict.fromkeys(METRICS, 0.0)
            results.update({f"AP-{name}": 0.0 for name in self._names(cat_ids, coco_gt)})
            return results
        with contextlib.redirect_stdout(stdout):
            coco_dt = coco_gt.loadRes(predictions)
            coco_eval = COCOeval(coco_gt, coco_dt, iou_type)
            coco_eval.params.imgIds = image_ids
            # COCOeval sorts maxDets and evaluates at the largest: keep N the largest
            # whenever it is >= 10 ([1, 10, N]), else read the results at N's index.
            coco_eval.params.maxDets = sorted({1, 10, self.max_dets_per_image})
            coco_eval.evaluate()
            coco_eval.accumulate()
        m = list(coco_eval.params.maxDets).index(self.max_dets_per_image)
        # precision: (IoU thresholds, recall points, classes, area ranges, max dets)
        precision = coco_eval.eval["precision"][..., m]
        results = _box_stats(precision, coco_eval.params.iouThrs)
        table = " | ".join(f"{k} {results[k]:.3f}" for k in METRICS)
        logger.info("COCO %s of %s: %s", task, self.dataset_name, table)
        for k, name in enumerate(self._names(cat_ids, coco_gt)):
            p = precision[:, :, k, 0]
            p = p[p > -1]
            results[f"AP-{name}"] = float(np.mean(p) * 100) if p.size else float("nan")
        return results

    def _names(self, cat_ids: list[int], coco_gt: COCO) -> list[str]:
        """Class names in sorted category-id order (= contiguous order)."""
        if len(self.class_names) == len(cat_ids):
            return self.class_names
        return [coco_gt.loadCats(c)[0]["name"] for c in cat_ids]


def _box_stats(precision: np.ndarray, iou_thrs: np.ndarray) -> dict[str, float]:
    """COCO's six AP numbers (percent; boxes or masks) at one max-dets entry, as
    ``COCOeval.summarize`` computes them (which hard-codes 100 for "AP"); an area range
    without GT objects (-1 everywhere) gives NaN, as detectron2.

    Args:
        precision: float (T, R, K, A) ``COCOeval.eval["precision"]`` at one max-dets index,
            -1 where undefined.
        iou_thrs: float (T,) the IoU thresholds (0.5:0.95).
    """

    def mean(p: np.ndarray) -> float:
        p = p[p > -1]
        return float(np.mean(p) * 100) if p.size else float("nan")

    at = {t: int(np.flatnonzero(np.isclose(iou_thrs, t))[0]) for t in (0.5, 0.75)}
    values = [
        mean(precision[:, :, :, 0]),
        mean(precision[at[0.5], :, :, 0]),
        mean(precision[at[0.75], :, :, 0]),
        *(mean(precision[:, :, :, a]) for a in (1, 2, 3)),
    ]
    return dict(zip(METRICS, values, strict=True))


def build_evaluator(
    cfg: CfgNode, dataset_name: str, output_dir: str | None = None
) -> DatasetEvaluator:
    """The evaluator of ``dataset_name``'s metadata ``evaluator_type``: "coco" (the
    default when unset) -> `COCOEvaluator` scoring TEST.MAX_DETS_PER_IMAGE detections per
    image; "pascal_voc" -> `PascalVOCEvaluator` (its metadata ``year`` picks the metric;
    it warns about images with more GT boxes than SNIPER.DETECTIONS_PER_IMAGE).

    Raises:
        ValueError: an unknown ``evaluator_type``, naming the dataset and the value.
    """
    kind = MetadataCatalog.get(dataset_name).get("evaluator_type", "coco")
    if kind == "coco":
        cap = int(cfg.TEST.MAX_DETS_PER_IMAGE)
        return COCOEvaluator(dataset_name, output_dir, max_dets_per_image=cap)
    if kind == "pascal_voc":
        cap = int(cfg.SNIPER.DETECTIONS_PER_IMAGE) if "SNIPER" in cfg else 0
        return PascalVOCEvaluator(dataset_name, detections_cap=cap)
    raise ValueError(
        f"dataset '{dataset_name}': metadata evaluator_type = {kind!r} has no evaluator; "
        'known: "coco", "pascal_voc"'
    )
