"""Box rules shared by the RPN and the RoI heads: sizes, valid ranges, ignore overlap.

All boxes are float XYXY in chip pixels (the pixels of the network input). ``box_sizes`` and
``in_range_mask`` are the torch twins of ``chipping.scales.box_sizes`` / ``in_range`` (the
project's one size ``sqrt(w * h)`` and one half-open range test ``[lo, hi)``).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_iou

__all__ = ["box_sizes", "in_range_mask", "max_iou_with"]


def box_sizes(boxes: Tensor) -> Tensor:
    """(K, 4) XYXY -> (K,) size sqrt(w * h), negative extents counted as 0."""
    wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0)
    return torch.sqrt(wh[:, 0] * wh[:, 1])


def in_range_mask(boxes: Tensor, valid_range: Tensor | None) -> Tensor:
    """(K, 4) boxes, optional (2,) ``[lo, hi)`` size range (hi may be inf) -> (K,) bool mask
    of boxes whose size lies in the half-open ``[lo, hi)``. No range keeps every box."""
    if valid_range is None:
        return torch.ones(boxes.shape[0], dtype=torch.bool, device=boxes.device)
    lo, hi = valid_range.to(device=boxes.device, dtype=boxes.dtype).reshape(2).unbind(0)
    sizes = box_sizes(boxes)
    return (sizes >= lo) & (sizes < hi)


def max_iou_with(boxes: Tensor, others: Tensor | None) -> Tensor:
    """(K, 4) boxes, (M, 4) others -> (K,) max IoU of each box with any of `others`
    (zeros when `others` is None or empty)."""
    if others is None or others.numel() == 0:
        return boxes.new_zeros(boxes.shape[0])
    return box_iou(others.to(boxes.dtype), boxes).max(dim=0).values
