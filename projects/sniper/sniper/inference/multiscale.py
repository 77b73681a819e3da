"""SNIPER multi-scale inference (docs/design.md sections 4, 6): the whole image at every
test scale, tiled when a canvas is too large.

This engine only chooses the network inputs: at each test scale, the whole canvas of every
image (the image resized by the scale's factor ``f``, ``chipping.scale_factor`` /
``chipping.scaled_size``), or its tiles. Cutting, batching, mapping back to image px, the
valid-range filter ``[lo, hi)`` of each scale and the cross-scale soft-NMS / NMS merge are the
shared runner's (``sniper.inference.runner``).

**Tiling** (the runner's, ``sniper.inference.tiling``, the same for every engine). A canvas of
more than ``max_pixels`` pixels (default: the batch budget ``max_pixels_per_batch``) is
processed in square tiles of ``tile_size`` canvas px overlapping by ``tile_overlap`` (grid from
the top-left, plus tiles flush with the right/bottom edges). A tile detection that comes
within ``tile_margin`` canvas px of a tile edge that is not a canvas edge is dropped (its
object is cut by the tile), and the tiles' detections of one scale are de-duplicated with
per-class hard NMS at ``tile_nms_iou`` (the model's own per-input NMS threshold). Every object
of canvas size at most ``tile_overlap - 2 * tile_margin`` lies whole, away from internal
edges, in some tile, so the tiled result equals the untiled one up to (a) detections of
objects larger than that, which are cut by every tile, and (b) the model's context: features
near tile borders and the per-input proposal / detection caps differ from a whole-canvas run.

**Pixel accounting.** Every call reports, per image, the sum over scales and tiles of
``H * W`` of every tensor given to the model (before the model's padding to a multiple of 32),
in total and per scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from chipping.scales import ScaleSpec, parse_ranges, scale_factor, scale_specs, scaled_size
from sniper.config import parse_scale_list, parse_valid_ranges
from sniper.sources import ImageSource

from .network_input import NetworkInput, whole_canvas
from .runner import InferenceRunner, ScaleOutputs, runner_kwargs_from_config
from .tiling import tile_boxes

__all__ = ["MultiScaleInference", "tile_boxes"]


class MultiScaleInference(InferenceRunner):
    """Run a detector on whole images at several scales and merge (module doc gives details).

    Args:
        model: detector; in eval mode ``model(list of (3, H, W) uint8 tensors in
            input_format)`` returns per input ``{"boxes" (D, 4) input px, "scores" (D,),
            "labels" int64 (D,) in 1..C}`` and never resizes.
        scales: test scales, each a factor or a ``(short, long)`` pair (``-1`` = no cap).
        valid_ranges: one ``(lo, hi)`` per scale, box size range in image px (``-1`` = open).
        merge, sigma, nms_iou, min_score, top_k, input_format: the cross-scale merge and the
            images' channel order, as ``InferenceRunner``.
        max_pixels: canvases with more pixels are tiled; ``0`` = never tile; default: the
            batch budget ``max_pixels_per_batch`` [8,000,000].
        tile_size: tile side (canvas px); ``tile_size ** 2`` must not exceed ``max_pixels``;
            default: the largest multiple of 32 up to 2048 that fits (2048 for 8,000,000).
        tile_overlap: overlap of neighbouring tiles (canvas px), ``0 <= overlap < tile_size``;
            default ``tile_size // 4`` (512).
        tile_margin: tile detections this close (canvas px) to an internal tile edge are cut.
        tile_nms_iou: per-class NMS threshold de-duplicating the tiles of one scale.
        max_pixels_per_batch, device: as ``InferenceRunner``.
    """

    def __init__(
        self,
        model: nn.Module,
        scales: Sequence[ScaleSpec],
        valid_ranges: Sequence[Sequence[float]],
        *,
        merge: str = "soft",
        sigma: float = 0.55,
        nms_iou: float = 0.5,
        min_score: float = 0.001,
        top_k: int = 200,
        input_format: str = "RGB",
        max_pixels: int | None = None,
        tile_size: int | None = None,
        tile_overlap: int | None = None,
        tile_margin: float = 4.0,
        tile_nms_iou: float = 0.5,
        max_pixels_per_batch: int = 8_000_000,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__(
            model,
            merge=merge,
            sigma=sigma,
            nms_iou=nms_iou,
            min_score=min_score,
            top_k=top_k,
            input_format=input_format,
            max_pixels_per_batch=max_pixels_per_batch,
            device=device,
            max_pixels=max_pixels,
            tile_size=tile_size,
            tile_overlap=tile_overlap,
            tile_margin=tile_margin,
            tile_nms_iou=tile_nms_iou,
        )
        self.scales = scale_specs(list(scales))
        self.valid_ranges = parse_ranges([list(r) for r in valid_ranges], len(self.scales))

    @classmethod
    def from_config(cls, cfg: Any, model: nn.Module, **overrides: Any) -> MultiScaleInference:
        """Build from SNIPER.TEST_SCALES / TEST_VALID_RANGES / TEST_NMS / SOFT_NMS_SIGMA /
        SOFT_NMS_MIN_SCORE / NMS_IOU / DETECTIONS_PER_IMAGE, INPUT.FORMAT, MODEL.DEVICE and
        MODEL.ROI_HEADS.NMS_THRESH_TEST (tile de-duplication). Tiling and batching use the
        constructor defaults unless given in ``overrides`` (any constructor keyword)."""
        kwargs: dict[str, Any] = {
            **runner_kwargs_from_config(cfg),
            "scales": parse_scale_list(cfg.SNIPER.TEST_SCALES),
            "valid_ranges": parse_valid_ranges(cfg.SNIPER.TEST_VALID_RANGES),
        }
        kwargs.update(overrides)
        return cls(model, **kwargs)

    def scale_inputs(
        self, s: int, image_sizes: Sequence[tuple[int, int]], previous: ScaleOutputs | None = None
    ) -> list[NetworkInput]:
        """The whole canvas of every image at scale ``s`` (the runner tiles those above
        ``max_pixels``); ``previous`` is not used."""
        inputs = []
        for i, size in enumerate(image_sizes):
            factor = scale_factor(self.scales[s], size)
            inputs.append(whole_canvas(i, factor, scaled_size(size, factor)))
        return inputs

    @torch.no_grad()
    def __call__(self, images: Sequence[np.ndarray | ImageSource]) -> list[dict[str, Any]]:
        """Detect in ``images``: uint8 ``(H, W, 3)`` arrays in ``input_format`` order, or
        ``sniper.sources.ImageSource`` objects (read by windows: tiles and shrunken canvases
        come from the file's regions, never the whole image).

        Returns:
            One dict per image: ``boxes`` float32 ``(N, 4)`` XYXY image px, ``scores`` float32
            ``(N,)`` (decayed by soft-NMS), ``classes`` int64 ``(N,)`` contiguous 0..C-1 (CPU
            tensors, best first, ``N <= top_k``), ``pixels`` int (network-input pixels, all
            scales), ``pixels_per_scale`` list[int] and ``inputs_per_scale`` list[int]
            (network inputs: 1, or the number of tiles); with a mask head also
            ``mask_patches``, ``mask_boxes`` and ``masks`` (``InferenceRunner.run``).
        """
        return self.run(images, self.valid_ranges, self.scale_inputs)
