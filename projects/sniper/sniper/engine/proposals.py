"""RPN proposals on whole training images for negative chip mining (docs/design.md section 4).

``extract_proposals`` runs a proposal network (``sniper.modeling.SniperRPN``: eval outputs are
proposals with objectness ``scores``) on every image at every given scale. The resizing, the mapping
back to original-image pixels (``image = canvas / f``), the clipping to the image, the tiling
of huge canvases and the cross-scale merge are those of SNIPER inference
(``sniper.inference.multiscale.MultiScaleInference``, which resizes with
``sniper.image_ops.cut_chip``): no scale filters by size, the union of all scales is
de-duplicated with hard NMS at ``nms_iou`` and the best ``max_per_image`` are kept.

``write_proposals_file`` does that at ``SNIPER.TEST_SCALES`` ("run it on the training images
at the test scales") and writes the proposals file of ``sniper.data.proposals``.

Distributed: rank ``r`` of ``w`` processes ``records[r::w]``; results are gathered
(``sniper.engine.launch.all_gather``) every ``gather_every`` images per rank, so that no
single message holds the proposals of a whole dataset, and every rank returns all of them.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence

import numpy as np
import torch
from fvcore.common.config import CfgNode
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from sniper.config import parse_scale_list
from sniper.data.proposals import save_proposals
from sniper.image_ops import ImageReadError, read_image
from sniper.inference.multiscale import MultiScaleInference
from sniper.progress import Progress

from .launch import all_gather, get_rank, get_world_size, is_main_process, synchronize

__all__ = ["extract_proposals", "write_proposals_file"]

logger = logging.getLogger(__name__)

ScaleSpec = float | tuple[float, float]
# Boxes smaller than this (sqrt(w * h), image px) are dropped: it removes the boxes that
# clipping to the image made empty, before they can take a place among the top proposals.
_MIN_SIZE = 1e-6


def _run_images(
    inference: MultiScaleInference, records: Sequence[dict], input_format: str
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Proposals (image px) of ``records`` and their network-input pixels per scale."""
    images, ok = [], []
    for rec in records:
        try:
            images.append(read_image(rec["file_name"], input_format))
            ok.append(True)
        except ImageReadError as err:
            logger.warning("no proposals for image %s: %s", rec.get("image_id"), err)
            ok.append(False)
    outputs = iter(inference(images) if images else [])
    boxes, scores = [], []
    pixels = np.zeros(len(inference.scales), np.int64)
    for good in ok:
        if not good:
            boxes.append(np.zeros((0, 4), np.float32))
            scores.append(np.zeros(0, np.float32))
            continue
        out = next(outputs)
        boxes.append(out["boxes"].numpy().astype(np.float32).reshape(-1, 4))
        scores.append(out["scores"].numpy().astype(np.float32).reshape(-1))
        pixels += np.asarray(out["pixels_per_scale"], np.int64)
    return boxes, scores, pixels


@torch.no_grad()
def extract_proposals(
    model: nn.Module,
    records: Sequence[dict],
    scales: Sequence[ScaleSpec],
    input_format: str = "RGB",
    *,
    max_per_image: int = 1000,
    nms_iou: float = 0.7,
    device: str | torch.device | None = None,
    images_per_batch: int = 4,
    gather_every: int = 1000,
    max_pixels: int | None = None,
    tile_size: int | None = None,
) -> tuple[list[int], list[np.ndarray], list[np.ndarray]]:
    """Multi-scale RPN proposals of every record, in original-image pixels.

    Args:
        model: a ``SniperRPN`` (or any model whose eval output per input is ``{"boxes"
            (K, 4) input px, "scores" (K,), "labels" (K,)}``); run in eval mode, its
            training flag is restored afterwards. A DDP wrapper is unwrapped.
        records: dataset records (``file_name``, ``image_id``, ``height``, ``width``).
        scales: factors or ``(short, long)`` pairs; each image is resized as a whole.
        input_format: channel order the model expects (``"RGB"`` or ``"BGR"``).
        max_per_image: proposals kept per image after the merge (best objectness first).
        nms_iou: IoU of the hard NMS over the union of all scales (and between tiles).
        device: where inputs go (default: the device of the model's parameters).
        images_per_batch: images read and run per call (inputs of one scale are batched).
        gather_every: images per rank between two gathers of the results.
        max_pixels, tile_size: canvases of more pixels are run in overlapping tiles
            (``sniper.inference.tiling``); ``max_pixels`` None: the runner's batch budget
            (8,000,000), 0: never tile; ``tile_size`` None: the runner's default (2048).

    Returns:
        ``(image_ids, boxes, scores)`` in the order of ``records``, on every rank: ids of the
        records, float32 ``(P_i, 4)`` XYXY boxes clipped to their image and float32
        ``(P_i,)`` objectness, best first, ``P_i <= max_per_image``. An unreadable image
        gets no proposals (warning).
    """
    if isinstance(model, DistributedDataParallel):
        model = model.module
    if images_per_batch < 1 or gather_every < 1:
        raise ValueError(
            f"need images_per_batch >= 1 and gather_every >= 1, got "
            f"{images_per_batch} and {gather_every}"
        )
    inference = MultiScaleInference(
        model,
        list(scales),
        [[_MIN_SIZE, -1]] * len(scales),
        merge="nms",
        nms_iou=nms_iou,
        min_score=-math.inf,
        top_k=max_per_image,
        input_format=input_format,
        max_pixels=max_pixels,
        tile_size=tile_size,
        tile_nms_iou=nms_iou,
        device=device,
    )
    records = list(records)
    rank, world = get_rank(), get_world_size()
    mine = list(range(len(records)))[rank::world]
    per_rank = -(-len(records) // world)
    rounds = -(-per_rank // gather_every)
    boxes: list[np.ndarray | None] = [None] * len(records)
    scores: list[np.ndarray | None] = [None] * len(records)
    pixels = np.zeros(len(scales), np.int64)
    start = time.perf_counter()
    # rank 0 counts every rank's images (the ranks advance together between gathers)
    progress = Progress(desc="proposals", total=len(records), enabled=is_main_process())
    with progress:
        for r in range(rounds):
            part = mine[r * gather_every : (r + 1) * gather_every]
            found: list[tuple[int, np.ndarray, np.ndarray]] = []
            for k in range(0, len(part), images_per_batch):
                idx = part[k : k + images_per_batch]
                b, s, px = _run_images(inference, [records[i] for i in idx], input_format)
                found += list(zip(idx, b, s, strict=True))
                pixels += px
                progress.update(len(idx) * world)
            for shard in all_gather(found):
                for i, b, s in shard:
                    boxes[i], scores[i] = b, s
    totals = np.sum(all_gather(pixels), axis=0)
    out_boxes = [b if b is not None else np.zeros((0, 4), np.float32) for b in boxes]
    out_scores = [s if s is not None else np.zeros(0, np.float32) for s in scores]
    count = sum(len(b) for b in out_boxes)
    logger.info(
        "extracted %d proposals on %d images (%.1f per image) at scales %s in %.1f s; "
        "network-input pixels %d in all, per scale %s",
        count,
        len(records),
        count / max(len(records), 1),
        list(scales),
        time.perf_counter() - start,
        int(totals.sum()),
        [int(v) for v in totals],
    )
    return [int(rec["image_id"]) for rec in records], out_boxes, out_scores


def write_proposals_file(
    cfg: CfgNode, model: nn.Module, records: Sequence[dict], path: str
) -> dict[str, float]:
    """Proposals of ``model`` on ``records`` at ``SNIPER.TEST_SCALES``, saved to ``path``.

    Every rank must call it (the work is shared); the main process writes the file
    (``save_proposals``, atomic) and all ranks wait until it exists. Keeps
    ``MODEL.RPN.POST_NMS_TOPK_TEST`` proposals per image, merged across scales with NMS at
    ``MODEL.RPN.NMS_THRESH``; inputs go to ``MODEL.DEVICE``, in ``INPUT.FORMAT`` order.

    Returns:
        ``{"images", "proposals", "proposals_per_image", "seconds"}``.
    """
    start = time.perf_counter()
    ids, boxes, scores = extract_proposals(
        model,
        records,
        parse_scale_list(cfg.SNIPER.TEST_SCALES),
        cfg.INPUT.FORMAT,
        max_per_image=int(cfg.MODEL.RPN.POST_NMS_TOPK_TEST),
        nms_iou=float(cfg.MODEL.RPN.NMS_THRESH),
        device=cfg.MODEL.DEVICE,
    )
    if is_main_process():
        save_proposals(path, ids, boxes, scores)
    synchronize()
    count = sum(len(b) for b in boxes)
    stats = {
        "images": float(len(ids)),
        "proposals": float(count),
        "proposals_per_image": count / max(len(ids), 1),
        "seconds": time.perf_counter() - start,
    }
    logger.info("wrote the proposals of %d images (%d boxes) to %s", len(ids), count, path)
    return stats
