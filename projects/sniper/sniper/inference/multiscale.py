"""SNIPER multi-scale inference (DESIGN.md section 4): the whole image at every test scale.

For each test scale the image is resized by the scale's factor ``f`` (``chipping.scale_factor``;
canvas size ``chipping.scaled_size``) with the project's one interpolation rule
(``sniper.data.chip_mapper.cut_chip``: ``INTER_AREA`` shrinking, bilinear enlarging with the
exact factor), run through the model, and the detections are mapped back to original-image
pixels with the chip convention ``image = (canvas) / f`` (``sniper.structures.chip_to_image``)
and clipped to the image. Only detections whose size ``sqrt(w * h)`` in image px lies in that
scale's valid range ``[lo, hi)`` are kept. All scales are then merged per class with
Gaussian soft-NMS or hard NMS (``sniper.inference.soft_nms``) and the best ``top_k`` kept.

**Tiling.** A canvas of more than ``max_pixels`` pixels is processed in square tiles of
``tile_size`` canvas px overlapping by ``tile_overlap`` (grid from the top-left, plus tiles
flush with the right/bottom edges). A tile detection that comes within ``tile_margin`` canvas
px of a tile edge that is not a canvas edge is dropped (its object is cut by the tile), and
the tiles' detections of one scale are de-duplicated with per-class hard NMS at
``tile_nms_iou`` (the model's own per-input NMS threshold). Every object of canvas size at most
``tile_overlap - 2 * tile_margin`` lies whole, away from internal edges, in some tile, so the
tiled result equals the untiled one up to (a) detections of objects larger than that, which
are cut by every tile, and (b) the model's context: features near tile borders and the
per-input proposal / detection caps differ from a whole-canvas run.

**Pixel accounting.** Every call reports, per image, the sum over scales and tiles of
``H * W`` of every tensor given to the model (before the model's padding to a multiple of 32),
in total and per scale.

**Batching.** Network inputs of the same scale (whole canvases or tiles, of one or several
images) are batched while the padded batch area ``n * H_max * W_max`` stays within
``max_pixels_per_batch`` (a larger input runs alone).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.ops import batched_nms

from chipping.scales import parse_ranges, parse_scales, scale_factor, scaled_size
from sniper.data.chip_mapper import cut_chip
from sniper.structures import chip_to_image

from .soft_nms import merge_detections

__all__ = ["MultiScaleInference", "tile_boxes"]

ScaleSpec = float | tuple[float, float]


def _starts(length: int, tile: int, stride: int) -> list[int]:
    """Tile start positions along a side of ``length`` px (last tile flush with the end)."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def tile_boxes(canvas_size: tuple[int, int], tile_size: int, tile_overlap: int) -> np.ndarray:
    """int64 ``(T, 4)`` XYXY tiles (canvas px) covering a canvas of ``(height, width)`` px.

    Tiles are ``tile_size`` square (clipped to the canvas when it is smaller), start every
    ``tile_size - tile_overlap`` px from the top-left, plus a row/column flush with the
    bottom/right edge. Row-major order.
    """
    height, width = canvas_size
    stride = tile_size - tile_overlap
    ys = _starts(height, tile_size, stride)
    xs = _starts(width, tile_size, stride)
    return np.array(
        [(x, y, min(x + tile_size, width), min(y + tile_size, height)) for y in ys for x in xs],
        dtype=np.int64,
    )


@dataclass(frozen=True)
class _Job:
    """One network input: a window ``canvas_box`` of image ``image_index`` at ``factor``."""

    image_index: int
    factor: float
    canvas_box: tuple[int, int, int, int]
    canvas_size: tuple[int, int]


def _cut_flags(boxes_tile: np.ndarray, job: _Job, margin: float) -> np.ndarray:
    """bool ``(N,)``: detections within ``margin`` of a tile edge that is not a canvas edge."""
    x1, y1, x2, y2 = job.canvas_box
    height, width = job.canvas_size
    tw, th = x2 - x1, y2 - y1
    b = boxes_tile
    cut = np.zeros(len(b), dtype=bool)
    if x1 > 0:
        cut |= b[:, 0] < margin
    if y1 > 0:
        cut |= b[:, 1] < margin
    if x2 < width:
        cut |= b[:, 2] > tw - margin
    if y2 < height:
        cut |= b[:, 3] > th - margin
    return cut


def batch_by_pixels(jobs: Sequence[Any], max_pixels: int) -> Iterator[list[Any]]:
    """Consecutive groups of ``jobs`` (anything with a ``canvas_box`` XYXY) whose batch,
    padded to the largest member rounded up to /32, holds at most ``max_pixels`` pixels
    (a single job larger than that forms its own batch)."""
    batch: list[Any] = []
    max_h = max_w = 0
    for job in jobs:
        x1, y1, x2, y2 = job.canvas_box
        job_h, job_w = math.ceil((y2 - y1) / 32) * 32, math.ceil((x2 - x1) / 32) * 32
        h, w = max(max_h, job_h), max(max_w, job_w)
        if batch and (len(batch) + 1) * h * w > max_pixels:
            yield batch
            batch, h, w = [], job_h, job_w
        batch.append(job)
        max_h, max_w = h, w
    if batch:
        yield batch


class MultiScaleInference:
    """Run a detector on whole images at several scales and merge (module doc gives details).

    Args:
        model: detector; in eval mode ``model(list of (3, H, W) uint8/float 0-255 tensors in
            input_format)`` returns per input ``{"boxes" (D, 4) input px, "scores" (D,),
            "labels" int64 (D,) in 1..C}`` and never resizes.
        scales: test scales, each a factor or a ``(short, long)`` pair (``-1`` = no cap).
        valid_ranges: one ``(lo, hi)`` per scale, box size range in image px (``-1`` = open).
        merge: ``"soft"`` (Gaussian soft-NMS) or ``"nms"`` across scales.
        sigma: soft-NMS sigma (IoU units).
        nms_iou: hard-NMS IoU threshold when ``merge="nms"``.
        min_score: detections decayed/scoring below this are dropped by the merge.
        top_k: detections kept per image after merging (``<= 0``: all).
        input_format: ``"RGB"`` or ``"BGR"``: channel order of the images given to ``__call__``
            and to the model (no conversion happens here).
        max_pixels: canvases with more pixels are tiled; ``None`` or ``0`` = never tile.
        tile_size: tile side (canvas px); ``tile_size ** 2`` must not exceed ``max_pixels``.
        tile_overlap: overlap of neighbouring tiles (canvas px), ``0 <= overlap < tile_size``.
        tile_margin: tile detections this close (canvas px) to an internal tile edge are cut.
        tile_nms_iou: per-class NMS threshold de-duplicating the tiles of one scale.
        max_pixels_per_batch: padded pixel budget of one model call.
        device: where inputs go (default: the device of the model's first parameter, or CPU).
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
        max_pixels: int | None = 16_000_000,
        tile_size: int = 2048,
        tile_overlap: int = 512,
        tile_margin: float = 4.0,
        tile_nms_iou: float = 0.5,
        max_pixels_per_batch: int = 8_000_000,
        device: str | torch.device | None = None,
    ) -> None:
        parse_scales(list(scales))  # validates, naming the offending entry
        self.scales = list(scales)
        self.valid_ranges = parse_ranges([list(r) for r in valid_ranges], len(self.scales))
        if merge not in ("soft", "nms"):
            raise ValueError(f'merge must be "soft" or "nms", got {merge!r}')
        if input_format not in ("RGB", "BGR"):
            raise ValueError(f'input_format must be "RGB" or "BGR", got {input_format!r}')
        if not 0 <= tile_overlap < tile_size:
            raise ValueError(f"need 0 <= tile_overlap ({tile_overlap}) < tile_size ({tile_size})")
        if max_pixels and tile_size * tile_size > max_pixels:
            raise ValueError(f"tile_size**2 = {tile_size**2} exceeds max_pixels = {max_pixels}")
        self.model = model
        self.merge, self.sigma, self.nms_iou = merge, float(sigma), float(nms_iou)
        self.min_score, self.top_k, self.input_format = float(min_score), int(top_k), input_format
        self.max_pixels = int(max_pixels) if max_pixels else 0
        self.tile_size, self.tile_overlap = int(tile_size), int(tile_overlap)
        self.tile_margin, self.tile_nms_iou = float(tile_margin), float(tile_nms_iou)
        self.max_pixels_per_batch = int(max_pixels_per_batch)
        if device is None:
            param = next(iter(model.parameters()), None)
            device = param.device if param is not None else "cpu"
        self.device = torch.device(device)

    @classmethod
    def from_config(cls, cfg: Any, model: nn.Module, **overrides: Any) -> MultiScaleInference:
        """Build from SNIPER.TEST_SCALES / TEST_VALID_RANGES / TEST_NMS / SOFT_NMS_SIGMA /
        SOFT_NMS_MIN_SCORE / NMS_IOU / DETECTIONS_PER_IMAGE, INPUT.FORMAT, MODEL.DEVICE and
        MODEL.ROI_HEADS.NMS_THRESH_TEST (tile de-duplication). Tiling and batching use the
        constructor defaults unless given in ``overrides`` (any constructor keyword)."""
        from sniper.config import parse_scale_list, parse_valid_ranges

        kwargs: dict[str, Any] = {
            "scales": parse_scale_list(cfg.SNIPER.TEST_SCALES),
            "valid_ranges": parse_valid_ranges(cfg.SNIPER.TEST_VALID_RANGES),
            "merge": cfg.SNIPER.TEST_NMS,
            "sigma": cfg.SNIPER.SOFT_NMS_SIGMA,
            "nms_iou": cfg.SNIPER.NMS_IOU,
            "min_score": cfg.SNIPER.SOFT_NMS_MIN_SCORE,
            "top_k": cfg.SNIPER.DETECTIONS_PER_IMAGE,
            "input_format": cfg.INPUT.FORMAT,
            "tile_nms_iou": cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST,
            "device": cfg.MODEL.DEVICE,
        }
        kwargs.update(overrides)
        return cls(model, **kwargs)

    def _jobs_for_scale(
        self, image_sizes: Sequence[tuple[int, int]], scale: ScaleSpec
    ) -> list[_Job]:
        """The network inputs (whole canvas or tiles) of every image at one scale."""
        jobs = []
        for i, size in enumerate(image_sizes):
            factor = scale_factor(scale, size)
            canvas = scaled_size(size, factor)
            if self.max_pixels and canvas[0] * canvas[1] > self.max_pixels:
                tiles = tile_boxes(canvas, self.tile_size, self.tile_overlap)
            else:
                tiles = np.array([[0, 0, canvas[1], canvas[0]]], dtype=np.int64)
            jobs += [_Job(i, factor, tuple(int(v) for v in t), canvas) for t in tiles]
        return jobs

    def _batches(self, jobs: list[_Job]) -> Iterator[list[_Job]]:
        """Consecutive groups whose padded area stays within ``max_pixels_per_batch``."""
        return batch_by_pixels(jobs, self.max_pixels_per_batch)

    @staticmethod
    def _check_image(i: int, image: np.ndarray) -> np.ndarray:
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
            shape = getattr(image, "shape", None)
            raise ValueError(f"image {i}: expected an (H, W, 3) numpy array, got shape {shape}")
        if image.dtype not in (np.uint8, np.float32) or min(image.shape[:2]) < 1:
            raise ValueError(f"image {i}: expected uint8 or float32 (H>0, W>0, 3), got "
                             f"{image.dtype} {image.shape}")
        return np.ascontiguousarray(image)

    @staticmethod
    def _cut(image: np.ndarray, job: _Job, cache: dict) -> Tensor:
        """The job's window of the canvas as a contiguous ``(3, h, w)`` tensor (image dtype).

        Contiguous CHW matters: a permuted HWC view is channels-last strided, which the
        convolutions propagate, and that is several times slower on CPU."""
        tiled = job.canvas_box != (0, 0, job.canvas_size[1], job.canvas_size[0])
        window = cut_chip(image, job.canvas_box, job.factor, cache if tiled else None)
        return torch.from_numpy(window).permute(2, 0, 1).contiguous()

    def _run_scale(
        self, images: list[np.ndarray], s: int
    ) -> tuple[list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]], list[int], list[int]]:
        """Detections per image and job (image px, not yet filtered), pixels and inputs."""
        sizes = [im.shape[:2] for im in images]
        jobs = self._jobs_for_scale(sizes, self.scales[s])
        found: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in images]
        pixels, inputs = [0] * len(images), [0] * len(images)
        caches: list[dict] = [{} for _ in images]  # shrunken canvases, cut into tiles
        for batch in self._batches(jobs):
            tensors = [self._cut(images[j.image_index], j, caches[j.image_index]) for j in batch]
            outputs = self.model([t.to(self.device) for t in tensors])
            for job, tensor, out in zip(batch, tensors, outputs, strict=True):
                pixels[job.image_index] += int(tensor.shape[1] * tensor.shape[2])
                inputs[job.image_index] += 1
                boxes = out["boxes"].detach().float().cpu().numpy().reshape(-1, 4)
                scores = out["scores"].detach().float().cpu().numpy().reshape(-1)
                labels = out["labels"].detach().cpu().numpy().reshape(-1).astype(np.int64)
                keep = ~_cut_flags(boxes, job, self.tile_margin)
                boxes_img = chip_to_image(boxes[keep], job.canvas_box, job.factor)
                found[job.image_index].append((boxes_img, scores[keep], labels[keep]))
        return found, pixels, inputs

    def _filter_scale(
        self, parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], s: int,
        image_size: tuple[int, int],
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Tile de-duplication, clipping to the image and the valid-range filter of scale s."""
        boxes = torch.from_numpy(np.concatenate([p[0] for p in parts]).reshape(-1, 4))
        scores = torch.from_numpy(np.concatenate([p[1] for p in parts]).astype(np.float32))
        labels = torch.from_numpy(np.concatenate([p[2] for p in parts]))
        if len(parts) > 1:
            keep = batched_nms(boxes, scores, labels, self.tile_nms_iou)
            keep = torch.sort(keep).values
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        height, width = image_size
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        size = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
        lo, hi = self.valid_ranges[s]
        ok = (size >= lo) & (size < hi)
        return boxes[ok], scores[ok], labels[ok]

    @torch.no_grad()
    def __call__(self, images: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        """Detect in ``images`` (uint8 or float32 ``(H, W, 3)``, 0-255, ``input_format``).

        Returns:
            One dict per image: ``boxes`` float32 ``(N, 4)`` XYXY image px, ``scores`` float32
            ``(N,)`` (decayed by soft-NMS), ``classes`` int64 ``(N,)`` contiguous 0..C-1 (CPU
            tensors, best first, ``N <= top_k``), ``pixels`` int (network-input pixels, all
            scales), ``pixels_per_scale`` list[int] and ``inputs_per_scale`` list[int]
            (network inputs: 1, or the number of tiles).
        """
        images = [self._check_image(i, im) for i, im in enumerate(images)]
        num_scales = len(self.scales)
        kept: list[list[tuple[Tensor, Tensor, Tensor]]] = [[] for _ in images]
        pixels = [[0] * num_scales for _ in images]
        inputs = [[0] * num_scales for _ in images]
        was_training = self.model.training
        self.model.eval()
        try:
            for s in range(num_scales):
                found, px, n_in = self._run_scale(images, s)
                for i, image in enumerate(images):
                    pixels[i][s], inputs[i][s] = px[i], n_in[i]
                    kept[i].append(self._filter_scale(found[i], s, image.shape[:2]))
        finally:
            self.model.train(was_training)
        results = []
        for i in range(len(images)):
            boxes, scores, labels = (torch.cat([k[j] for k in kept[i]]) for j in range(3))
            boxes, scores, labels = merge_detections(
                boxes, scores, labels, method=self.merge, sigma=self.sigma, iou=self.nms_iou,
                min_score=self.min_score, top_k=self.top_k,
            )
            results.append({
                "boxes": boxes, "scores": scores, "classes": labels - 1,
                "pixels": int(sum(pixels[i])), "pixels_per_scale": pixels[i],
                "inputs_per_scale": inputs[i],
            })
        return results
