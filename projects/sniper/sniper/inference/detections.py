"""The per-input and per-scale steps of the inference runner on detections (numpy in,
docs/design.md section 6): the inner-edge cut, the mapping to image px, and one scale's
de-duplication of tiles, clipping and valid-range filter. ``InferenceRunner`` calls them;
they are functions so that other engines and tests can use each step alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import batched_nms

from chipping.scales import box_sizes, in_range
from sniper.structures import chip_to_image

from .network_input import NetworkInput

__all__ = ["Detections", "cut_by_inner_edges", "input_detections", "scale_detections"]

Detections = tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes (N, 4), scores (N,), labels (N,)


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
    """One input's detections, inner-edge cut applied, boxes in image px (not clipped)."""
    keep = ~cut_by_inner_edges(out["boxes"], inp)
    boxes_img = chip_to_image(out["boxes"][keep], inp.canvas_box, inp.factor)
    return boxes_img, out["scores"][keep], out["labels"][keep]


def scale_detections(
    parts: Sequence[Detections],
    image_size: tuple[int, int],
    valid_range: Sequence[float],
    dedup_iou: float | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """The detections an image keeps from one scale (CPU tensors).

    Args:
        parts: the detections of each input of the image at this scale (image px).
        image_size: ``(height, width)`` to clip to.
        valid_range: the scale's half-open ``[lo, hi)`` box-size range (image px).
        dedup_iou: per-class NMS threshold applied across the parts (overlapping tiles);
            ``None``: none.
    """
    boxes = np.concatenate([p[0] for p in parts]).reshape(-1, 4).astype(np.float32)
    scores = np.concatenate([p[1] for p in parts]).astype(np.float32).reshape(-1)
    labels = np.concatenate([p[2] for p in parts]).astype(np.int64).reshape(-1)
    if dedup_iou is not None and len(parts) > 1:
        keep = batched_nms(
            torch.from_numpy(boxes),
            torch.from_numpy(scores),
            torch.from_numpy(labels),
            float(dedup_iou),
        )
        keep = torch.sort(keep).values.numpy()
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    height, width = image_size
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    ok = in_range(box_sizes(boxes), float(valid_range[0]), float(valid_range[1]))
    return (
        torch.from_numpy(boxes[ok]),
        torch.from_numpy(scores[ok]),
        torch.from_numpy(labels[ok]),
    )
