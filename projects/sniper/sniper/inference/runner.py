"""The one test-time runner of the project (docs/design.md section 6).

Every inference engine (SNIPER multi-scale inference and tiling, the AutoFocus cascade) is an
``InferenceRunner`` that only chooses the network inputs of each scale (``NetworkInput``:
whole canvases, tiles, FocusChips of the previous scale). Everything else happens here, once:

1. **Tile, cut and batch.** An input of more than ``max_pixels`` pixels is replaced by its
   tiles (``sniper.inference.tiling.tile_input``), so the memory of a model call is bounded
   whatever the image or chip size. The inputs of a scale (all images) are cut from the
   original images (``sniper.sources.ImageSource.canvas_window``: ``sniper.image_ops.cut_chip``,
   the one resize rule, for an image in memory; windowed reads for a file) and batched in
   order while the padded batch area ``n * H_max * W_max`` (sides rounded up to 32) stays
   within ``max_pixels_per_batch``; a larger input runs alone. Outputs come back as numpy.
2. **Inner-edge cut.** A detection whose edge is closer than the input's margin for that
   edge (``NetworkInput.edge_margins``, input px) to a window edge that is not a canvas edge
   is dropped (``cut_by_inner_edges``): its object is cut by the window.
3. **Back to the image.** Boxes are mapped to image px with ``sniper.structures.chip_to_image``.
4. **Per scale**, per image: de-duplication of overlapping tiles (per-class NMS at
   ``tile_nms_iou``, only for an image that was tiled at that scale),
   clipping to the image, and the valid-range filter ``chipping.scales.in_range`` on the box
   size ``chipping.scales.box_sizes`` (image px, half-open ``[lo, hi)``).
5. **Finish.** All scales are merged per class with soft-NMS or NMS
   (``sniper.inference.soft_nms.merge_indices``), the best ``top_k`` kept, labels 1..C
   become class ids 0..C-1, and the network-input pixels are reported per scale.

**Masks.** A model that outputs ``mask_patches`` (float32 ``(D, M, M)``, the patch over
``boxes[i]`` in input px) has each patch carried with its detection through steps 2-5 (the
same indices select both; the box is the patch's frame, mapped with it, and kept unclipped
as ``mask_boxes``), so the surviving box of the cross-scale merge keeps its own mask. The
result then adds ``mask_patches``, ``mask_boxes`` and ``masks`` (COCO RLE of the image,
``sniper.inference.mask_patches.patches_to_rle``); no ``(N, H, W)`` array is made.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from sniper.sources import ImageSource, as_source

from .detections import (
    Detections,
    cut_by_inner_edges,
    input_detections,
    merged_masks,
    model_patches,
    scale_detections,
)
from .network_input import NetworkInput, batch_by_pixels
from .scale_outputs import ImageState, ScaleOutputs
from .soft_nms import merge_indices
from .tiling import default_tile_size, tile_input

__all__ = [
    "InferenceRunner",
    "ScaleOutputs",
    "batch_by_pixels",
    "cut_by_inner_edges",
    "runner_kwargs_from_config",
]


def runner_kwargs_from_config(cfg: Any) -> dict[str, Any]:
    """The shared keywords of every runner: SNIPER.TEST_NMS / SOFT_NMS_SIGMA / NMS_IOU /
    SOFT_NMS_MIN_SCORE / DETECTIONS_PER_IMAGE, INPUT.FORMAT, MODEL.DEVICE and
    MODEL.ROI_HEADS.NMS_THRESH_TEST (tile de-duplication)."""
    return {
        "merge": cfg.SNIPER.TEST_NMS,
        "sigma": cfg.SNIPER.SOFT_NMS_SIGMA,
        "nms_iou": cfg.SNIPER.NMS_IOU,
        "min_score": cfg.SNIPER.SOFT_NMS_MIN_SCORE,
        "top_k": cfg.SNIPER.DETECTIONS_PER_IMAGE,
        "input_format": cfg.INPUT.FORMAT,
        "device": cfg.MODEL.DEVICE,
        "tile_nms_iou": cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST,
    }


InputChooser = Callable[[int, list[tuple[int, int]], ScaleOutputs | None], list[NetworkInput]]
#: ``hook(scale, num_scales, inputs_done, inputs_total)``: at the start of every scale
#: (``inputs_done`` 0) and after every batch of its network inputs
ProgressHook = Callable[[int, int, int, int], None]


class InferenceRunner:
    """Shared machinery of the inference engines (module doc); subclasses choose inputs.

    Args:
        model: detector; in eval mode ``model(list of (3, h, w) uint8 tensors in
            input_format)`` returns per input ``{"boxes" (D, 4) input px, "scores" (D,),
            "labels" int64 (D,) in 1..C}`` (plus ``output_keys``, and optionally
            ``"mask_patches"`` float (D, M, M) over each box) and never resizes.
        merge: ``"soft"`` (Gaussian soft-NMS) or ``"nms"`` across scales.
        sigma: soft-NMS sigma (IoU units).
        nms_iou: hard-NMS IoU threshold when ``merge="nms"``.
        min_score: detections decayed/scoring below this are dropped by the merge.
        top_k: detections kept per image after merging (``<= 0``: all).
        input_format: ``"RGB"`` or ``"BGR"``: channel order of the images given to the engine
            and to the model (no conversion happens here).
        max_pixels_per_batch: padded pixel budget of one model call.
        device: where inputs go (default: the device of the model's first parameter, or CPU).
        max_pixels: inputs with more pixels are tiled (``sniper.inference.tiling``); ``None``
            (default): ``max_pixels_per_batch``; ``0``: never tile (memory then grows with
            the image or chip).
        tile_size: tile side (canvas px); ``None``: the largest multiple of 32 up to 2048
            whose square fits ``max_pixels``; ``tile_size ** 2 <= max_pixels``.
        tile_overlap: overlap of neighbouring tiles (canvas px), ``0 <= overlap <
            tile_size``; ``None``: ``tile_size // 4``.
        tile_margin: tile detections this close (input px) to an edge inside the tiled
            window are cut.
        tile_nms_iou: per-class NMS threshold de-duplicating the tiles of an image at a scale.
    """

    #: extra model outputs kept as numpy, with the hint given when the model lacks one
    output_keys: dict[str, str] = {}

    def __init__(
        self,
        model: nn.Module,
        *,
        merge: str = "soft",
        sigma: float = 0.55,
        nms_iou: float = 0.5,
        min_score: float = 0.001,
        top_k: int = 200,
        input_format: str = "RGB",
        max_pixels_per_batch: int = 8_000_000,
        device: str | torch.device | None = None,
        max_pixels: int | None = None,
        tile_size: int | None = None,
        tile_overlap: int | None = None,
        tile_margin: float = 4.0,
        tile_nms_iou: float = 0.5,
    ) -> None:
        if merge not in ("soft", "nms"):
            raise ValueError(f'merge must be "soft" or "nms", got {merge!r}')
        if input_format not in ("RGB", "BGR"):
            raise ValueError(f'input_format must be "RGB" or "BGR", got {input_format!r}')
        if not int(max_pixels_per_batch) > 0:
            raise ValueError(f"max_pixels_per_batch must be > 0, got {max_pixels_per_batch}")
        self.model = model
        self.merge, self.sigma, self.nms_iou = merge, float(sigma), float(nms_iou)
        self.min_score, self.top_k, self.input_format = float(min_score), int(top_k), input_format
        self.max_pixels_per_batch = int(max_pixels_per_batch)
        self.max_pixels = self.max_pixels_per_batch if max_pixels is None else int(max_pixels)
        if self.max_pixels < 0:
            raise ValueError(f"max_pixels must be >= 0 (0 = never tile), got {max_pixels}")
        if tile_size is None:
            tile_size = default_tile_size(self.max_pixels) if self.max_pixels else 2048
        if int(tile_size) < 1:
            raise ValueError(f"tile_size must be >= 1, got {tile_size}")
        if tile_overlap is None:
            tile_overlap = int(tile_size) // 4
        if not 0 <= tile_overlap < tile_size:
            raise ValueError(f"need 0 <= tile_overlap ({tile_overlap}) < tile_size ({tile_size})")
        if self.max_pixels and tile_size * tile_size > self.max_pixels:
            raise ValueError(
                f"tile_size**2 = {tile_size**2} exceeds max_pixels = {self.max_pixels}"
            )
        self.tile_size, self.tile_overlap = int(tile_size), int(tile_overlap)
        self.tile_margin, self.tile_nms_iou = float(tile_margin), float(tile_nms_iou)
        #: called during ``run`` (``ProgressHook``): per-scale progress of long images
        self.progress_hooks: list[ProgressHook] = []
        self._progress: list[int] | None = None
        if device is None:
            param = next(iter(model.parameters()), None)
            device = param.device if param is not None else "cpu"
        self.device = torch.device(device)

    def tile_inputs(self, inputs: Sequence[NetworkInput]) -> list[NetworkInput]:
        """``inputs`` with every input above ``max_pixels`` replaced by its tiles."""
        return [
            tile
            for inp in inputs
            for tile in tile_input(
                inp, self.max_pixels, self.tile_size, self.tile_overlap, self.tile_margin
            )
        ]

    def forward_inputs(
        self, sources: Sequence[ImageSource], inputs: Sequence[NetworkInput]
    ) -> list[dict[str, np.ndarray]]:
        """Cut (``ImageSource.canvas_window``, in ``input_format``), batch and run
        ``inputs``; the model's outputs as numpy, in input order."""
        results: list[dict[str, np.ndarray]] = []
        for batch in batch_by_pixels(inputs, self.max_pixels_per_batch):
            tensors = []
            for inp in batch:
                window = sources[inp.image_index].canvas_window(
                    inp.canvas_box, inp.factor, self.input_format
                )
                # contiguous CHW: a permuted HWC view is channels-last strided, which the
                # convolutions propagate, and that is several times slower on CPU
                tensors.append(
                    torch.from_numpy(window).permute(2, 0, 1).contiguous().to(self.device)
                )
            for out in self.model(tensors):
                results.append(self._to_numpy(out))
            self._report(len(batch))
        return results

    def _report(self, done: int) -> None:
        """``done`` more inputs of the running scale are done: tell the progress hooks."""
        if self._progress is None:
            return
        self._progress[2] += done
        for hook in self.progress_hooks:
            hook(*self._progress)

    def _to_numpy(self, out: dict[str, Tensor]) -> dict[str, np.ndarray]:
        res = {
            "boxes": out["boxes"].detach().float().cpu().numpy().reshape(-1, 4),
            "scores": out["scores"].detach().float().cpu().numpy().reshape(-1),
            "labels": out["labels"].detach().cpu().numpy().reshape(-1).astype(np.int64),
        }
        if "mask_patches" in out:
            res["mask_patches"] = model_patches(out["mask_patches"], len(res["boxes"]))
        for key, hint in self.output_keys.items():
            if key not in out:
                raise KeyError(f"the model's outputs lack {key!r}: {hint}")
            res[key] = out[key].detach().float().cpu().numpy()
        return res

    #: one input's detections, inner-edge cut, in image px (``detections.input_detections``)
    input_detections = staticmethod(input_detections)
    #: what an image keeps from one scale (``detections.scale_detections``)
    scale_detections = staticmethod(scale_detections)

    def sources(self, images: Sequence[np.ndarray | ImageSource]) -> list[ImageSource]:
        """``images`` as sources: arrays (checked, ``input_format`` order) as
        ``sniper.sources.ArraySource`` (fresh, so shrunken canvases are shared only within
        one call), sources as they are."""
        return [as_source(im, i, self.input_format) for i, im in enumerate(images)]

    @torch.no_grad()
    def run(
        self,
        images: Sequence[np.ndarray | ImageSource],
        valid_ranges: Sequence[Sequence[float]],
        choose_inputs: InputChooser,
        on_scale: Callable[[int, ScaleOutputs], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Run every scale and merge (module doc).

        Args:
            images: uint8 ``(H, W, 3)`` arrays in ``input_format`` order, or
                ``sniper.sources.ImageSource`` objects (read by windows, converted to
                ``input_format``: a file of any size is never loaded whole).
            valid_ranges: S half-open ``[lo, hi)`` ranges (image px), one per scale.
            choose_inputs: ``(scale index, image sizes, previous ScaleOutputs or None)`` ->
                the inputs of that scale (may be empty); inputs above ``max_pixels`` are
                tiled before they run, and ``ScaleOutputs`` holds the tiles.
            on_scale: called with ``(s, ScaleOutputs)`` after each scale (engine records).

        Returns:
            One dict per image: ``boxes`` float32 ``(N, 4)`` XYXY image px, ``scores`` float32
            ``(N,)``, ``classes`` int64 ``(N,)`` 0..C-1 (CPU tensors, best first,
            ``N <= top_k``), ``pixels`` int (network-input pixels, all scales),
            ``pixels_per_scale`` and ``inputs_per_scale`` list[int]. When the model outputs
            ``mask_patches``: ``mask_patches`` float32 numpy ``(N, M, M)`` (row i over
            ``mask_boxes[i]``), ``mask_boxes`` float32 numpy ``(N, 4)`` image px (the box
            before clipping) and ``masks``, a list of N COCO RLE dicts
            ``{"size": [H, W], "counts": str}`` (threshold 0.5).
        """
        sources = self.sources(images)
        sizes = [src.size for src in sources]
        states = [ImageState() for _ in sources]
        previous: ScaleOutputs | None = None
        was_training = self.model.training
        self.model.eval()
        try:
            for s, valid_range in enumerate(valid_ranges):
                inputs = self.tile_inputs(choose_inputs(s, sizes, previous))
                self._progress = [s, len(valid_ranges), 0, len(inputs)]
                self._report(0)
                previous = ScaleOutputs(inputs, self.forward_inputs(sources, inputs))
                self._progress = None
                self._record(states, sizes, previous, valid_range)
                if on_scale is not None:
                    on_scale(s, previous)
        finally:
            self._progress = None
            self.model.train(was_training)
        mask_size = next((st.mask_size for st in states if st.mask_size), None)
        return [self._finish(st, size, mask_size) for st, size in zip(states, sizes, strict=True)]

    def _record(
        self,
        states: list[ImageState],
        sizes: list[tuple[int, int]],
        scale: ScaleOutputs,
        valid_range: Sequence[float],
    ) -> None:
        """Append one scale's pixels, input counts and kept detections to every image."""
        parts: list[list[Detections]] = [[] for _ in states]
        tiled = [False] * len(states)
        for st in states:
            st.pixels.append(0)
            st.inputs.append(0)
        for inp, out in zip(scale.inputs, scale.outputs, strict=True):
            st = states[inp.image_index]
            st.pixels[-1] += inp.area
            st.inputs[-1] += 1
            parts[inp.image_index].append(self.input_detections(inp, out))
            if "mask_patches" in out:
                st.mask_size = int(out["mask_patches"].shape[-1])
            tiled[inp.image_index] |= inp.is_tile
        for i, st in enumerate(states):
            if parts[i]:
                dedup = self.tile_nms_iou if tiled[i] else None
                st.kept.append(self.scale_detections(parts[i], sizes[i], valid_range, dedup))

    def _finish(
        self, st: ImageState, size: tuple[int, int], mask_size: int | None = None
    ) -> dict[str, Any]:
        """Cross-scale merge, class ids, masks and pixel accounting of one image of
        ``size`` ``(H, W)``; ``mask_size``: M when the model gave mask patches."""
        if st.kept:
            cat = [torch.cat([k[j] for k in st.kept]) for j in range(len(st.kept[0]))]
        else:
            cat = [torch.zeros((0, 4)), torch.zeros((0,)), torch.zeros((0,), dtype=torch.int64)]
        boxes, scores, labels = cat[0].reshape(-1, 4), cat[1], cat[2]
        keep, new_scores = merge_indices(
            boxes,
            scores,
            labels,
            method=self.merge,
            sigma=self.sigma,
            iou=self.nms_iou,
            min_score=self.min_score,
            top_k=self.top_k,
        )
        result: dict[str, Any] = {
            "boxes": boxes[keep],
            "scores": new_scores,
            "classes": labels[keep] - 1,
            "pixels": int(sum(st.pixels)),
            "pixels_per_scale": st.pixels,
            "inputs_per_scale": st.inputs,
        }
        if mask_size is not None:
            result.update(merged_masks(cat[3:], keep, mask_size, size))
        return result
