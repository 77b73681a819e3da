"""The per-input and per-scale steps of the inference runner on detections (numpy in,
docs/design.md section 6): the inner-edge cut, the mapping to image px, and one scale's
de-duplication of tiles, clipping and valid-range filter. ``InferenceRunner`` calls them;
they are functions so that other engines and tests can use each step alone.

Mask patches ride along: when the model gives ``mask_patches`` (float32 ``(D, M, M)``, the
patch of ``boxes[i]``, ``sniper.inference.mask_patches``), every step that selects
detections selects their patches with the same indices. The patch's frame is its box: it
is mapped to image px with the box (the patch itself never changes) and kept *before*
clipping as the ``mask_boxes``, while the reported box is clipped to the image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import batched_nms

from chipping.scales import box_sizes, in_range
from sniper.structures import chip_to_image

from .mask_patches import patches_to_rle
from .network_input import NetworkInput

__all__ = [
    "Detections",
    "cut_by_inner_edges",
    "input_detections",
    "merged_masks",
    "model_patches",
    "scale_detections",
]

#: boxes (N, 4), scores (N,), labels (N,), plus mask patches (N, M, M) when the model gives them
Detections = tuple[np.ndarray, ...]


def cut_by_inner_edges(boxes_input: np.ndarray, inp: NetworkInput) -> np.ndarray:
    """bool ``(N,)``: detections (float ``(N, 4)`` XYXY input px) closer than the edge's
    margin (``inp.edge_margins``) to an edge of the window that is not a canvas edge."""
    b = np.asarray(boxes_input).reshape(-1, 4)
    x1, y1, x2, y2 = inp.canvas_box
    width, height = x2 - x1, y2 - y1
    left, top, right, bottom = inp.edge_margins
    inner_left, inner_top, inner_right, inner_bottom = inp.inner_edges
    cut = np.zeros(len(b), dtype=bool)
    if inner_left:
        cut |= b[:, 0] < left
    if inner_top:
        cut |= b[:, 1] < top
    if inner_right:
        cut |= b[:, 2] > width - right
    if inner_bottom:
        cut |= b[:, 3] > height - bottom
    return cut


def input_detections(inp: NetworkInput, out: dict[str, np.ndarray]) -> Detections:
    """One input's detections, inner-edge cut applied, boxes in image px (not clipped):
    ``(boxes, scores, labels)``, plus ``out["mask_patches"]`` of the kept rows when present
    (each patch stays over its box, now in image px)."""
    keep = ~cut_by_inner_edges(out["boxes"], inp)
    boxes_img = chip_to_image(out["boxes"][keep], inp.canvas_box, inp.factor)
    dets = (boxes_img, out["scores"][keep], out["labels"][keep])
    if "mask_patches" in out:
        return (*dets, out["mask_patches"][keep])
    return dets


def scale_detections(
    parts: Sequence[Detections],
    image_size: tuple[int, int],
    valid_range: Sequence[float],
    dedup_iou: float | None = None,
) -> tuple[Tensor, ...]:
    """The detections an image keeps from one scale (CPU tensors).

    Args:
        parts: the detections of each input of the image at this scale (image px), all
            with mask patches or all without.
        image_size: ``(height, width)`` to clip to.
        valid_range: the scale's half-open ``[lo, hi)`` box-size range (image px).
        dedup_iou: per-class NMS threshold applied across the parts (overlapping tiles);
            ``None``: none.

    Returns:
        ``(boxes (K, 4) clipped, scores (K,), labels (K,))``; with patches also
        ``patches float32 (K, M, M)`` and ``mask_boxes float32 (K, 4)``, the boxes before
        clipping (the patches' frames).
    """
    with_masks = {len(p) for p in parts}
    if len(with_masks) > 1:
        raise ValueError("some inputs of the scale have mask patches and others do not")
    boxes = np.concatenate([p[0] for p in parts]).reshape(-1, 4).astype(np.float32)
    scores = np.concatenate([p[1] for p in parts]).astype(np.float32).reshape(-1)
    labels = np.concatenate([p[2] for p in parts]).astype(np.int64).reshape(-1)
    patches = None
    if with_masks == {4}:
        patches = np.concatenate([p[3] for p in parts]).astype(np.float32)
    if dedup_iou is not None and len(parts) > 1:
        keep = batched_nms(
            torch.from_numpy(boxes),
            torch.from_numpy(scores),
            torch.from_numpy(labels),
            float(dedup_iou),
        )
        keep = torch.sort(keep).values.numpy()
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        patches = None if patches is None else patches[keep]
    mask_boxes = boxes.copy()
    height, width = image_size
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    ok = in_range(box_sizes(boxes), float(valid_range[0]), float(valid_range[1]))
    kept = (torch.from_numpy(boxes[ok]), torch.from_numpy(scores[ok]), torch.from_numpy(labels[ok]))
    if patches is None:
        return kept
    return (*kept, torch.from_numpy(patches[ok]), torch.from_numpy(mask_boxes[ok]))


def model_patches(patches: Tensor, num_boxes: int) -> np.ndarray:
    """The model's ``mask_patches`` of one input as float32 numpy ``(D, M, M)``; a
    ``ValueError`` naming the shape when it is not ``(num_boxes, M, M)``."""
    arr = patches.detach().float().cpu().numpy()
    if arr.ndim != 3 or arr.shape[0] != num_boxes or arr.shape[1] != arr.shape[2]:
        raise ValueError(
            f"the model's mask_patches must be (D, M, M) with D = {num_boxes} boxes, "
            f"got {tuple(arr.shape)}"
        )
    return arr


def merged_masks(
    attached: Sequence[Tensor], keep: Tensor, mask_size: int, image_size: tuple[int, int]
) -> dict:
    """The mask entries of an image's result: ``attached`` = ``(patches (N, M, M),
    mask_boxes (N, 4))`` of all its scales (empty: the image had no input), ``keep`` the
    merge's indices. Returns ``mask_patches``, ``mask_boxes`` (numpy) and ``masks`` (RLE)."""
    if len(attached) == 2:
        patches, mask_boxes = attached[0][keep].numpy(), attached[1][keep].numpy()
    else:
        patches = np.zeros((0, mask_size, mask_size), np.float32)
        mask_boxes = np.zeros((0, 4), np.float32)
    return {
        "mask_patches": patches,
        "mask_boxes": mask_boxes,
        "masks": patches_to_rle(patches, mask_boxes, image_size),
    }
