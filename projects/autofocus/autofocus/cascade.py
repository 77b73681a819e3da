"""The AutoFocus inference cascade (DESIGN.md section 5), coarse to fine.

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
   `sniper.data.chip_mapper.cut_chip` (the project's one resize rule). The chips of a scale
   (all images) are batched together. An image without FocusChips stops: it is not processed
   at any finer scale.

Merging: detections are mapped to image px (`sniper.structures.chip_to_image`); those within
`border_delta` image px of a chip edge that is not an image edge are dropped (their object is
cut by the chip); boxes are clipped to the image; each scale keeps the detections whose size
lies in its valid range; all scales are merged per class with soft-NMS or NMS
(`sniper.inference.merge_detections`) and the best `top_k` kept.

Pixel accounting: per image and scale, the sum of `h * w` of the network inputs (before the
model pads them to a multiple of 32); the *full pyramid* is the whole image at every scale,
`sum_s H_s * W_s`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from chipping import focus_chips_batch, focus_chips_to_image
from chipping.scales import scale_factor, scaled_size
from sniper.data.chip_mapper import cut_chip
from sniper.inference import merge_detections
from sniper.inference.multiscale import batch_by_pixels
from sniper.structures import chip_to_image

from .chips import border_cut_flags, canvas_window, merge_overlapping, window_edges_inner
from .params import CascadeParams, cascade_params_from_cfg, full_pyramid_pixels
from .structures import CascadeInput, FocusMap

__all__ = ["AutoFocusCascade", "FocusMap"]


class AutoFocusCascade:
    """Coarse-to-fine AutoFocus inference (module doc).

    Args:
        model: detector in eval mode returning per input `{"boxes" (D, 4) input px, "scores",
            "labels" int64 1..C, "focus_prob" (ceil(h/stride), ceil(w/stride))}` for a list
            of `(3, h, w)` uint8 tensors in `input_format` (e.g. `AutoFocusRCNN`).
        params: scales, ranges, (t, d, k) per transition, border delta.
        stride: input px per FocusPixel cell; default `model.focus_stride` (16 if absent).
        merge, sigma, nms_iou, min_score, top_k: cross-scale merge as `MultiScaleInference`.
        input_format: channel order of the images (no conversion happens here).
        max_pixels_per_batch: padded pixel budget of one model call (a larger input runs
            alone).
        device: where inputs go (default: the device of the model's first parameter, or CPU).
        num_threads: threads of `chipping.focus_chips_batch` (0 = all cores).
    """

    def __init__(self, model: nn.Module, params: CascadeParams, *, stride: int | None = None,
                 merge: str = "soft", sigma: float = 0.55, nms_iou: float = 0.5,
                 min_score: float = 0.001, top_k: int = 200, input_format: str = "RGB",
                 max_pixels_per_batch: int = 8_000_000,
                 device: str | torch.device | None = None, num_threads: int = 0) -> None:
        if merge not in ("soft", "nms"):
            raise ValueError(f'merge must be "soft" or "nms", got {merge!r}')
        if input_format not in ("RGB", "BGR"):
            raise ValueError(f'input_format must be "RGB" or "BGR", got {input_format!r}')
        self.model, self.params = model, params
        self.stride = int(stride if stride is not None else getattr(model, "focus_stride", 16))
        self.merge, self.sigma, self.nms_iou = merge, float(sigma), float(nms_iou)
        self.min_score, self.top_k, self.input_format = float(min_score), int(top_k), input_format
        self.max_pixels_per_batch, self.num_threads = int(max_pixels_per_batch), int(num_threads)
        if device is None:
            param = next(iter(model.parameters()), None)
            device = param.device if param is not None else "cpu"
        self.device = torch.device(device)

    @classmethod
    def from_config(cls, cfg: Any, model: nn.Module, **overrides: Any) -> AutoFocusCascade:
        """Params from AUTOFOCUS.*, merging from SNIPER.TEST_NMS / SOFT_NMS_SIGMA /
        SOFT_NMS_MIN_SCORE / NMS_IOU / DETECTIONS_PER_IMAGE, INPUT.FORMAT, MODEL.DEVICE,
        AUTOFOCUS.MAX_PIXELS_PER_BATCH; `overrides`: any constructor keyword."""
        kwargs: dict[str, Any] = {
            "params": cascade_params_from_cfg(cfg), "merge": cfg.SNIPER.TEST_NMS,
            "sigma": cfg.SNIPER.SOFT_NMS_SIGMA, "nms_iou": cfg.SNIPER.NMS_IOU,
            "min_score": cfg.SNIPER.SOFT_NMS_MIN_SCORE,
            "top_k": cfg.SNIPER.DETECTIONS_PER_IMAGE, "input_format": cfg.INPUT.FORMAT,
            "max_pixels_per_batch": cfg.AUTOFOCUS.MAX_PIXELS_PER_BATCH,
            "device": cfg.MODEL.DEVICE,
        }
        kwargs.update(overrides)
        return cls(model, **kwargs)

    def _batches(self, jobs: list[CascadeInput]) -> Iterator[list[CascadeInput]]:
        """Consecutive jobs whose padded batch area stays within the pixel budget."""
        return batch_by_pixels(jobs, self.max_pixels_per_batch)

    def _run(self, images: list[np.ndarray], jobs: list[CascadeInput],
             caches: list[dict]) -> list[dict[str, np.ndarray]]:
        """Model outputs of every job, as numpy (boxes in window px)."""
        results: list[dict[str, np.ndarray]] = []
        for batch in self._batches(jobs):
            tensors = [torch.from_numpy(cut_chip(images[j.image_index], j.canvas_box, j.factor,
                                                 caches[j.image_index])).permute(2, 0, 1)
                       .contiguous().to(self.device) for j in batch]
            for out in self.model(tensors):
                if "focus_prob" not in out:
                    raise KeyError("the model's outputs lack 'focus_prob': AutoFocus needs a "
                                   "model with a FocusPixel head (MODEL.META_ARCHITECTURE "
                                   "AutoFocusRCNN)")
                results.append({
                    "boxes": out["boxes"].detach().float().cpu().numpy().reshape(-1, 4),
                    "scores": out["scores"].detach().float().cpu().numpy().reshape(-1),
                    "labels": out["labels"].detach().cpu().numpy().reshape(-1).astype(np.int64),
                    "focus_prob": out["focus_prob"].detach().float().cpu().numpy(),
                })
        return results

    def _keep(self, job: CascadeInput, out: dict[str, np.ndarray], lo: float, hi: float,
              image_size: tuple[int, int], delta: float) -> tuple[Tensor, Tensor, Tensor]:
        """Detections of one job in image px: border-pruned, clipped, in the valid range."""
        boxes = chip_to_image(out["boxes"], job.canvas_box, job.factor).astype(np.float64)
        inner = window_edges_inner(job.canvas_box, job.canvas_size)
        keep = ~border_cut_flags(boxes, job.window_img, inner, delta)
        height, width = image_size
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
        size = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
        keep &= (size >= lo) & (size < hi)
        return (torch.from_numpy(boxes[keep].astype(np.float32)),
                torch.from_numpy(out["scores"][keep].astype(np.float32)),
                torch.from_numpy(out["labels"][keep]))

    def _next_chips(self, jobs: list[CascadeInput], outs: list[dict[str, np.ndarray]],
                    sizes: list[tuple[int, int]], s: int, params: CascadeParams
                    ) -> list[np.ndarray]:
        """Per image float32 `(K, 4)` FocusChips (image px) for scale s + 1, merged."""
        if not jobs:
            return [np.zeros((0, 4), np.float32) for _ in sizes]
        maps = [o["focus_prob"] for o in outs]
        rects, which = focus_chips_batch(maps, params.thresholds[s], params.dilations[s],
                                         params.min_sizes[s], num_threads=self.num_threads)
        per_image: list[list[np.ndarray]] = [[] for _ in sizes]
        for m, job in enumerate(jobs):
            mine = rects[which == m]
            if len(mine):
                per_image[job.image_index].append(focus_chips_to_image(
                    mine, self.stride, job.factor, sizes[job.image_index], job.offset))
        chips = []
        for parts in per_image:
            c = np.concatenate(parts) if parts else np.zeros((0, 4), np.float32)
            c = c[(c[:, 2] > c[:, 0]) & (c[:, 3] > c[:, 1])]
            chips.append(merge_overlapping(c))
        return chips

    def _jobs(self, chips: list[np.ndarray], sizes: list[tuple[int, int]],
              scale: Any) -> list[CascadeInput]:
        """Network inputs of one scale: every image's chips (image px) as canvas windows."""
        jobs = []
        for i, (size, image_chips) in enumerate(zip(sizes, chips, strict=True)):
            factor = scale_factor(scale, size)
            canvas = scaled_size(size, factor)
            jobs += [CascadeInput(i, factor, canvas_window(c, factor, canvas), canvas)
                     for c in image_chips]
        return jobs

    @torch.no_grad()
    def __call__(self, images: Sequence[np.ndarray], params: CascadeParams | None = None,
                 **overrides: Any) -> list[dict[str, Any]]:
        """Detect in `images` (uint8 `(H, W, 3)`, 0-255, `input_format`).

        Args:
            params: replaces the constructor's parameters for this call.
            **overrides: fields of `CascadeParams` replaced for this call (e.g.
                `thresholds=(0.1, 0.3)`, `border_delta=0`).

        Returns:
            One dict per image: `boxes` float32 `(N, 4)` XYXY image px, `scores` float32
            `(N,)`, `classes` int64 `(N,)` 0..C-1 (CPU tensors, best first, N <= top_k);
            `pixels` int and `pixels_per_scale` list[int] (network-input pixels);
            `full_pixels_per_scale` list[int] (whole image at each scale); `pixel_fraction`
            float (`pixels / sum(full_pixels_per_scale)`); `chips_per_scale` list of float32
            `(K_s, 4)` numpy windows actually processed (image px; scale 0: the image);
            `focus_maps` list (per scale) of `FocusMap`.
        """
        p = dataclasses.replace(params or self.params, **overrides)
        images = [self._check_image(i, im) for i, im in enumerate(images)]
        sizes = [(int(im.shape[0]), int(im.shape[1])) for im in images]
        res = [{"pixels_per_scale": [], "chips_per_scale": [], "focus_maps": [], "kept": []}
               for _ in images]
        chips = [np.array([[0.0, 0.0, w, h]], np.float32) for h, w in sizes]
        caches: list[dict] = [{} for _ in images]
        was_training = self.model.training
        self.model.eval()
        try:
            for s in range(p.num_scales):
                jobs = self._jobs(chips, sizes, p.scales[s])
                outs = self._run(images, jobs, caches)
                self._record(res, jobs, outs, sizes, p.valid_ranges[s], p.border_delta)
                if s + 1 < p.num_scales:
                    chips = self._next_chips(jobs, outs, sizes, s, p)
        finally:
            self.model.train(was_training)
        return [self._finish(r, size, p) for r, size in zip(res, sizes, strict=True)]

    @staticmethod
    def _check_image(i: int, image: np.ndarray) -> np.ndarray:
        """Contiguous uint8 `(H, W, 3)` or ValueError naming image `i`."""
        im = np.ascontiguousarray(image)
        if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8 or min(im.shape[:2]) < 1:
            raise ValueError(f"image {i}: expected uint8 (H, W, 3), got {im.dtype} {im.shape}")
        return im

    def _record(self, res: list[dict[str, Any]], jobs: list[CascadeInput],
                outs: list[dict[str, np.ndarray]], sizes: list[tuple[int, int]],
                valid_range: tuple[float, float], delta: float) -> None:
        """Append one scale's pixels, chips, maps and kept detections to each image's result."""
        for r in res:
            r["pixels_per_scale"].append(0)
            r["chips_per_scale"].append([])
            r["focus_maps"].append([])
        lo, hi = valid_range
        for job, out in zip(jobs, outs, strict=True):
            r = res[job.image_index]
            r["pixels_per_scale"][-1] += job.area
            r["chips_per_scale"][-1].append(job.window_img.astype(np.float32))
            r["focus_maps"][-1].append(
                FocusMap(out["focus_prob"], job.factor, job.offset, float(self.stride)))
            r["kept"].append(self._keep(job, out, lo, hi, sizes[job.image_index], delta))

    def _finish(self, r: dict[str, Any], size: tuple[int, int],
                p: CascadeParams) -> dict[str, Any]:
        """Merge the kept detections of all scales and assemble the result dict."""
        boxes, scores, labels = (torch.cat([k[j] for k in r["kept"]]) for j in range(3))
        boxes, scores, labels = merge_detections(
            boxes.reshape(-1, 4), scores, labels, method=self.merge, sigma=self.sigma,
            iou=self.nms_iou, min_score=self.min_score, top_k=self.top_k)
        full = full_pyramid_pixels(size, p.scales)
        pixels = int(sum(r["pixels_per_scale"]))
        return {
            "boxes": boxes, "scores": scores, "classes": labels - 1, "pixels": pixels,
            "pixels_per_scale": r["pixels_per_scale"], "full_pixels_per_scale": full,
            "pixel_fraction": pixels / float(sum(full)),
            "chips_per_scale": [np.asarray(c, np.float32).reshape(-1, 4)
                                for c in r["chips_per_scale"]],
            "focus_maps": r["focus_maps"],
        }
