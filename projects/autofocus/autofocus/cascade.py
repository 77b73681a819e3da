"""The AutoFocus inference cascade (docs/design.md sections 5, 6), coarse to fine.

The cascade is a ``sniper.inference.runner.InferenceRunner`` that only chooses the network
inputs of each scale from the FocusPixel maps of the previous one; cutting, batching, mapping
to image px, the inner-edge cut, range filters and the cross-scale merge are the runner's.

For scales `0..S-1` (coarse to fine, `CascadeParams`):

1. Scale 0: every image whole, resized by its factor `f_0` (`chipping.scale_factor`).
2. Each network input (whole canvas or chip) gives detections and a FocusPixel map
   (`focus_prob`, one cell per `stride` input px). At a transition `s -> s+1` every map is
   turned into FocusChips with `chipping.focus_chips_batch` (threshold t, dilation d, minimum
   side k of that transition), mapped to image px with `chipping.focus_chips_to_image`
   (the crop's factor and its top-left image px as offset). The chips of one image (from all
   its crops) that overlap are merged into their union until none overlap, so no image
   region is processed twice at a scale (up to the outward rounding of chip edges below).
3. Scale s+1 processes only those chips: each is rounded outward onto the canvas of factor
   `f_{s+1}` (`autofocus.chips.canvas_window`) and cut from the ORIGINAL image with
   `sniper.image_ops.cut_chip` (the project's one resize rule; an image given as a
   `sniper.sources.ImageSource` is read by windows instead: only the chips' regions, the
   coarse scale from a reduced-resolution level or by bands). The chips of a scale
   (all images) are batched together. An image without FocusChips stops: it is not processed
   at any finer scale. A chip (or the coarse canvas) of more than ``max_pixels`` pixels (by
   default the batch budget, ``AUTOFOCUS.MAX_PIXELS_PER_BATCH``) runs as overlapping tiles,
   de-duplicated per class (the runner's tiling, ``sniper.inference.tiling``, the same rule
   as multi-scale inference), so memory stays bounded whatever the chip size; the next
   scale's FocusChips are built from the tiles' maps.

Merging: detections within `border_delta` image px (`border_delta * f` input px, the input's
`cut_margin`) of a chip edge that is not an image edge are dropped (their object is cut by the
chip); boxes are mapped to image px and clipped to the image; each scale keeps the detections
whose size lies in its valid range; all scales are merged per class with soft-NMS or NMS and
the best `top_k` kept.

Pixel accounting: per image and scale, the sum of `h * w` of the network inputs (before the
model pads them to a multiple of 32); the *full pyramid* is the whole image at every scale,
`sum_s H_s * W_s`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from chipping.scales import ScaleSpec, scale_factor, scaled_size
from sniper.inference.network_input import NetworkInput
from sniper.inference.runner import InferenceRunner, ScaleOutputs, runner_kwargs_from_config
from sniper.sources import ImageSource

from .chips import canvas_window, focus_chips_from_maps
from .params import CascadeParams, cascade_params_from_cfg, full_pyramid_pixels
from .structures import FocusMap

__all__ = ["AutoFocusCascade", "FocusMap"]


class AutoFocusCascade(InferenceRunner):
    """Coarse-to-fine AutoFocus inference (module doc).

    Args:
        model: detector in eval mode returning per input `{"boxes" (D, 4) input px, "scores",
            "labels" int64 1..C, "focus_prob" (ceil(h/stride), ceil(w/stride))}` for a list
            of `(3, h, w)` uint8 tensors in `input_format` (e.g. `AutoFocusRCNN`).
        params: scales, ranges, (t, d, k) per transition, border delta.
        stride: input px per FocusPixel cell; default `model.focus_stride` (16 if absent).
        merge, sigma, nms_iou, min_score, top_k, input_format, max_pixels_per_batch, device,
            max_pixels, tile_size, tile_overlap, tile_margin, tile_nms_iou: as
            `InferenceRunner` (tiling of chips above `max_pixels`).
        num_threads: threads of `chipping.focus_chips_batch` (0 = all cores).
    """

    output_keys = {
        "focus_prob": "AutoFocus needs a model with a FocusPixel head "
        "(MODEL.META_ARCHITECTURE AutoFocusRCNN)"
    }

    def __init__(
        self,
        model: nn.Module,
        params: CascadeParams,
        *,
        stride: int | None = None,
        num_threads: int = 0,
        **runner_kwargs: Any,
    ) -> None:
        super().__init__(model, **runner_kwargs)
        self.params = params
        self.stride = int(stride if stride is not None else getattr(model, "focus_stride", 16))
        self.num_threads = int(num_threads)

    @classmethod
    def from_config(cls, cfg: Any, model: nn.Module, **overrides: Any) -> AutoFocusCascade:
        """Params from AUTOFOCUS.*, merging from SNIPER.TEST_NMS / SOFT_NMS_SIGMA /
        SOFT_NMS_MIN_SCORE / NMS_IOU / DETECTIONS_PER_IMAGE, INPUT.FORMAT, MODEL.DEVICE,
        AUTOFOCUS.MAX_PIXELS_PER_BATCH; `overrides`: any constructor keyword."""
        kwargs: dict[str, Any] = {
            **runner_kwargs_from_config(cfg),
            "params": cascade_params_from_cfg(cfg),
            "max_pixels_per_batch": cfg.AUTOFOCUS.MAX_PIXELS_PER_BATCH,
        }
        kwargs.update(overrides)
        return cls(model, **kwargs)

    def focus_chips(
        self,
        previous: ScaleOutputs,
        sizes: Sequence[tuple[int, int]],
        s: int,
        params: CascadeParams,
    ) -> list[np.ndarray]:
        """Per image float32 `(K, 4)` FocusChips (image px) for scale s + 1, built from the
        FocusPixel maps of scale s and merged until none overlap."""
        maps = [
            FocusMap(out["focus_prob"], inp.factor, inp.offset, float(self.stride))
            for inp, out in zip(previous.inputs, previous.outputs, strict=True)
        ]
        return focus_chips_from_maps(
            maps,
            [inp.image_index for inp in previous.inputs],
            sizes,
            params.thresholds[s],
            params.dilations[s],
            params.min_sizes[s],
            num_threads=self.num_threads,
        )

    @staticmethod
    def chip_inputs(
        chips: Sequence[np.ndarray],
        sizes: Sequence[tuple[int, int]],
        scale: ScaleSpec,
        border_delta: float,
    ) -> list[NetworkInput]:
        """Network inputs of one scale: every image's chips (image px) as canvas windows,
        cut by `border_delta` image px from their inner edges."""
        inputs = []
        for i, (size, image_chips) in enumerate(zip(sizes, chips, strict=True)):
            factor = scale_factor(scale, size)
            canvas = scaled_size(size, factor)
            inputs += [
                NetworkInput(
                    i, factor, canvas_window(c, factor, canvas), canvas, border_delta * factor
                )
                for c in image_chips
            ]
        return inputs

    @torch.no_grad()
    def __call__(
        self,
        images: Sequence[np.ndarray | ImageSource],
        params: CascadeParams | None = None,
        **overrides: Any,
    ) -> list[dict[str, Any]]:
        """Detect in `images`: uint8 `(H, W, 3)` arrays in `input_format` order, or
        `sniper.sources.ImageSource` objects (a file read by windows, never whole).

        Args:
            params: replaces the constructor's parameters for this call.
            **overrides: fields of `CascadeParams` replaced for this call (e.g.
                `thresholds=(0.1, 0.3)`, `border_delta=0`).

        Returns:
            One dict per image: `boxes` float32 `(N, 4)` XYXY image px, `scores` float32
            `(N,)`, `classes` int64 `(N,)` 0..C-1 (CPU tensors, best first, N <= top_k);
            `pixels` int, `pixels_per_scale` and `inputs_per_scale` list[int] (network-input
            pixels and inputs); `full_pixels_per_scale` list[int] (whole image at each
            scale); `pixel_fraction` float (`pixels / sum(full_pixels_per_scale)`);
            `chips_per_scale` list of float32 `(K_s, 4)` numpy windows actually processed
            (image px; scale 0: the image); `focus_maps` list (per scale) of `FocusMap`.
            With a mask head also `mask_patches`, `mask_boxes` and `masks`
            (`InferenceRunner.run`): each surviving box keeps its own patch.
        """
        p = dataclasses.replace(params or self.params, **overrides)
        sources = self.sources(images)
        history: list[ScaleOutputs] = []

        def choose(
            s: int, sizes: list[tuple[int, int]], previous: ScaleOutputs | None
        ) -> list[NetworkInput]:
            if previous is None:
                chips = [np.array([[0.0, 0.0, w, h]], np.float32) for h, w in sizes]
            else:
                chips = self.focus_chips(previous, sizes, s - 1, p)
            return self.chip_inputs(chips, sizes, p.scales[s], p.border_delta)

        results = self.run(
            sources, p.valid_ranges, choose, on_scale=lambda s, outs: history.append(outs)
        )
        for i, (src, res) in enumerate(zip(sources, results, strict=True)):
            res.update(self._records(i, src.size, history, p))
        return results

    def _records(
        self, i: int, size: tuple[int, int], history: list[ScaleOutputs], p: CascadeParams
    ) -> dict[str, Any]:
        """Image `i`'s chips, FocusPixel maps and pixel fraction, from every scale."""
        chips, maps = [], []
        for scale in history:
            pairs = scale.of_image(i)
            chips.append(
                np.asarray([inp.window_img for inp, _ in pairs], np.float32).reshape(-1, 4)
            )
            maps.append(
                [
                    FocusMap(out["focus_prob"], inp.factor, inp.offset, float(self.stride))
                    for inp, out in pairs
                ]
            )
        full = full_pyramid_pixels((int(size[0]), int(size[1])), p.scales)
        pixels = sum(inp.area for scale in history for inp, _ in scale.of_image(i))
        return {
            "full_pixels_per_scale": full,
            "pixel_fraction": pixels / float(sum(full)),
            "chips_per_scale": chips,
            "focus_maps": maps,
        }
