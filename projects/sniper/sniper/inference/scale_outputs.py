"""What the inference runner holds between scales (`sniper.inference.runner`): one scale's
inputs with the model's numpy outputs, and the per-image accumulators."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch import Tensor

from .network_input import NetworkInput

__all__ = ["ImageState", "ScaleOutputs"]


@dataclass
class ScaleOutputs:
    """What one scale gave: its inputs (all images) and the model's numpy output of each
    (``boxes`` float32 ``(D, 4)`` input px, ``scores`` float32 ``(D,)``, ``labels`` int64
    ``(D,)`` in 1..C, plus the runner's ``output_keys`` as float32 arrays)."""

    inputs: list[NetworkInput]
    outputs: list[dict[str, np.ndarray]]

    def of_image(self, index: int) -> list[tuple[NetworkInput, dict[str, np.ndarray]]]:
        """The ``(input, output)`` pairs of image ``index``."""
        return [
            (i, o) for i, o in zip(self.inputs, self.outputs, strict=True) if i.image_index == index
        ]


@dataclass
class ImageState:
    """What the runner keeps of one image across scales: network-input pixels and input
    counts per scale, the mask patch size once seen, and each scale's kept detections."""

    pixels: list[int] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)
    mask_size: int | None = None  # M of the model's mask patches, once seen
    kept: list[tuple[Tensor, ...]] = field(default_factory=list)
