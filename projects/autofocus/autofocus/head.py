"""The FocusPixel head and its loss (docs/design.md section 5).

conv3x3(C) - ReLU - conv1x1(C) - ReLU - conv1x1(2) on one FPN level (stride 16 chip px by
default), giving per cell the logits of (not a FocusPixel, FocusPixel). The loss is softmax
cross-entropy averaged over the cells whose label is not -1 (ignore), times a weight.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FocusPixelHead", "focus_loss", "focus_probability"]


class FocusPixelHead(nn.Module):
    """Two-class per-cell classifier on a feature map.

    Args:
        in_channels: channels of the input feature (the FPN width).
        channels: width of the hidden conv3x3 and conv1x1 layers.

    Weights start as in detectron2's small heads: normal(std=0.01), zero bias.
    """

    def __init__(self, in_channels: int, channels: int = 256) -> None:
        super().__init__()
        if in_channels <= 0 or channels <= 0:
            raise ValueError(f"channels must be > 0, got {in_channels}, {channels}")
        self.conv = nn.Conv2d(in_channels, channels, kernel_size=3, padding=1)
        self.hidden = nn.Conv2d(channels, channels, kernel_size=1)
        self.logits = nn.Conv2d(channels, 2, kernel_size=1)
        for layer in (self.conv, self.hidden, self.logits):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, feature: Tensor) -> Tensor:
        """float `(N, in_channels, H, W)` -> logits float `(N, 2, H, W)` (same cells)."""
        x = F.relu(self.conv(feature))
        x = F.relu(self.hidden(x))
        return self.logits(x)


def focus_loss(logits: Tensor, labels: Tensor, weight: float = 1.0) -> Tensor:
    """Weighted softmax cross-entropy over the non-ignored cells.

    Args:
        logits: float `(N, 2, H, W)`.
        labels: int64 `(N, H, W)` in {-1 (ignore), 0, 1}.
        weight: loss multiplier.

    Returns:
        Scalar float32: `weight * mean` over cells with label >= 0 of `-log softmax[label]`;
        `0` (still connected to `logits`, so DDP sees every parameter used) when every cell
        is ignored.
    """
    if logits.shape[0] != labels.shape[0] or logits.shape[2:] != labels.shape[1:]:
        raise ValueError(
            f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} do not match"
        )
    logits = logits.float()
    if not bool((labels >= 0).any()):
        return logits.sum() * 0.0
    return weight * F.cross_entropy(logits, labels, ignore_index=-1)


def focus_probability(logits: Tensor) -> Tensor:
    """float `(N, H, W)` softmax probability of the FocusPixel class from `(N, 2, H, W)`."""
    return torch.softmax(logits.float(), dim=1)[:, 1]
