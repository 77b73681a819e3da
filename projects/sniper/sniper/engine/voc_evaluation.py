"""Pascal VOC box AP with the semantics of detectron2's `PascalVOCDetectionEvaluator`.

Per class and IoU threshold ``t`` (0.50, 0.55, ..., 0.95), as the VOC devkit's
``voc_eval``: the detections of the class over all images, best score first (ties in
processing order), are matched in turn to the class's GT boxes of their image: with the
GT box of highest IoU ``o``, a detection is a true positive if ``o > t`` and that box is
not ``difficult`` and not matched yet, *ignored* (neither true nor false positive) if
``o > t`` and the box is difficult, else a false positive. Recall is over the
non-difficult GT boxes. AP from the precision/recall curve:

- VOC2007's 11-point metric (dataset metadata ``year == 2007``): the mean over
  ``r = 0, 0.1, ..., 1`` of the best precision at recall ``>= r`` (0 if none);
- the area metric otherwise (VOC2010+): the area under the precision envelope
  (precision made non-increasing in recall from the right).

IoU is that of XYXY boxes with an exclusive right/bottom edge, ``w = x2 - x1``: the records'
boxes are VOC's ``(xmin - 1, ymin - 1, xmax, ymax)``, so this equals the devkit's ``+ 1``
IoU on its 1-based inclusive coordinates.

Results (percent): {"bbox": {"AP": mean over the ten thresholds of the mean over classes,
"AP50", "AP75": that mean at 0.5 / 0.75, "AP50-<class>" per class}}. A class without
non-difficult GT box has AP NaN and is left out of the means (detectron2 would let the NaN
through; on VOC every class has GT).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from torch import Tensor

from sniper.data.catalog import MetadataCatalog

from .detection_caps import warn_dense_image
from .launch import all_gather, is_main_process

__all__ = ["PascalVOCEvaluator", "box_iou", "voc_ap", "voc_class_ap"]

logger = logging.getLogger(__name__)

IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one XYXY box (4,) with boxes (K, 4), image px, exclusive edges -> float64 (K,)."""
    iw = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = iw * ih
    area = (box[2] - box[0]) * (box[3] - box[1])
    union = area + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return inter / np.maximum(union, np.finfo(np.float64).eps)


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool) -> float:
    """AP (0-1) of a precision/recall curve: float (D,) each, in detection order."""
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            above = precision[recall >= t]
            ap += (float(above.max()) if above.size else 0.0) / 11.0
        return ap
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def voc_class_ap(
    detections: Sequence[tuple[int, float, np.ndarray]],
    gt_boxes: dict[int, np.ndarray],
    gt_difficult: dict[int, np.ndarray],
    iou_threshold: float,
    use_07_metric: bool,
) -> float:
    """AP (0-1) of one class at one IoU threshold (module docstring); NaN without GT.

    Args:
        detections: (image key, score, XYXY box float (4,)) of the class, any order.
        gt_boxes: image key -> float (G, 4) XYXY GT boxes of the class (difficult included).
        gt_difficult: image key -> bool (G,) the difficult flags of ``gt_boxes``.
        iou_threshold: a detection matches a GT box with IoU strictly above it.
        use_07_metric: VOC2007's 11-point metric instead of the area.
    """
    n_pos = int(sum(int((~d).sum()) for d in gt_difficult.values()))
    if n_pos == 0:
        return float("nan")
    scores = np.array([d[1] for d in detections], dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    matched = {key: np.zeros(len(b), dtype=bool) for key, b in gt_boxes.items()}
    tp, fp = np.zeros(len(order)), np.zeros(len(order))
    for rank, k in enumerate(order):
        key, _, box = detections[k]
        gts = gt_boxes.get(key, np.zeros((0, 4)))
        ious = box_iou(np.asarray(box, dtype=np.float64), gts.astype(np.float64))
        j = int(np.argmax(ious)) if ious.size else -1
        if j < 0 or ious[j] <= iou_threshold:
            fp[rank] = 1
        elif gt_difficult[key][j]:
            continue
        elif not matched[key][j]:
            tp[rank], matched[key][j] = 1, True
        else:
            fp[rank] = 1
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    recall = tp / n_pos
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return voc_ap(recall, precision, use_07_metric)


class PascalVOCEvaluator:
    """Collect detections of one VOC dataset and compute VOC AP (module docstring).

    Args:
        dataset_name: registered dataset; its metadata needs ``thing_classes`` and ``year``
            (2007: 11-point metric; any other year: area). The GT comes from the records
            given to `process` (``boxes``, ``classes``, ``crowd_boxes`` = difficult,
            ``crowd_classes``; see `sniper.data.voc`).
        detections_cap: detections the inference keeps per image
            (``SNIPER.DETECTIONS_PER_IMAGE``; VOC itself scores them all); an image with more
            GT boxes is warned about once. ``<= 0``: no cap.
    """

    def __init__(self, dataset_name: str, *, detections_cap: int = 0) -> None:
        self.detections_cap = int(detections_cap)
        meta = MetadataCatalog.get(dataset_name)
        self.dataset_name = dataset_name
        self.class_names: list[str] = list(meta.thing_classes)
        self.use_07_metric = int(meta.year) == 2007
        self._images: list[tuple] = []

    def reset(self) -> None:
        """Forget everything processed so far."""
        self._images = []

    def process(self, records: Sequence[dict], outputs: Sequence[dict[str, Tensor]]) -> None:
        """Add the GT of each record and its detections (boxes XYXY original-image px,
        scores, labels 1..C)."""
        for record, out in zip(records, outputs, strict=True):
            if "crowd_classes" not in record:
                raise ValueError(
                    f"{self.dataset_name}: record of {record.get('file_name')} has no "
                    "'crowd_classes' (the classes of difficult boxes): not a VOC record "
                    "(sniper.data.voc.load_voc_instances)"
                )
            if self.detections_cap > 0:
                warn_dense_image(
                    self.dataset_name, record, self.detections_cap, "SNIPER.DETECTIONS_PER_IMAGE"
                )
            gt = [np.asarray(record[k]) for k in ("boxes", "classes")]
            hard = [np.asarray(record[k]) for k in ("crowd_boxes", "crowd_classes")]
            dets = (
                out["boxes"].detach().float().cpu().numpy().reshape(-1, 4),
                out["scores"].detach().float().cpu().numpy().reshape(-1),
                out["labels"].detach().cpu().numpy().reshape(-1).astype(np.int64) - 1,
            )
            self._images.append((gt, hard, dets))

    def evaluate(self) -> dict[str, dict[str, float]]:
        """Gather to rank 0 and evaluate there; other ranks return {}."""
        gathered = all_gather(self._images)
        if not is_main_process():
            return {}
        images = [im for part in gathered for im in part]
        aps = np.array(
            [
                [self._class_ap(images, c, t) for t in IOU_THRESHOLDS]
                for c in range(len(self.class_names))
            ]
        ).reshape(len(self.class_names), len(IOU_THRESHOLDS))
        with_gt = ~np.isnan(aps[:, 0])
        per_t = aps[with_gt].mean(axis=0) * 100 if with_gt.any() else np.full(10, np.nan)
        results = {"AP": float(per_t.mean()), "AP50": float(per_t[0]), "AP75": float(per_t[5])}
        for name, ap in zip(self.class_names, aps[:, 0], strict=True):
            results[f"AP50-{name}"] = float(ap * 100)
        metric = "11-point (VOC2007)" if self.use_07_metric else "area"
        logger.info(
            "Pascal VOC evaluation of %s (%s metric): AP %.3f | AP50 %.3f | AP75 %.3f",
            self.dataset_name,
            metric,
            results["AP"],
            results["AP50"],
            results["AP75"],
        )
        return {"bbox": results}

    def _class_ap(self, images: list[tuple], c: int, threshold: float) -> float:
        detections, gt_boxes, gt_difficult = [], {}, {}
        for key, ((boxes, classes), (hard, hard_classes), (d_boxes, scores, labels)) in enumerate(
            images
        ):
            easy, diff = boxes[classes == c], hard[hard_classes == c]
            gt_boxes[key] = np.concatenate([easy.reshape(-1, 4), diff.reshape(-1, 4)])
            gt_difficult[key] = np.r_[np.zeros(len(easy), bool), np.ones(len(diff), bool)]
            detections += [
                (key, float(s), b)
                for b, s in zip(d_boxes[labels == c], scores[labels == c], strict=True)
            ]
        return voc_class_ap(detections, gt_boxes, gt_difficult, threshold, self.use_07_metric)
