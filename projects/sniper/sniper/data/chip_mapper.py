"""Chip mapper: cuts chips out of images and turns them into model inputs.

Interpolation rule (one for the whole project): a chip is a window of the *canvas*, the image
resized by the chip's factor ``f`` to ``scaled_size``. For ``f < 1`` the canvas is made with
``cv2.resize(..., INTER_AREA)`` (anti-aliased shrinking) and the window is cropped from it;
for ``f >= 1`` only the window is computed, by bilinear ``cv2.warpAffine`` with the
pixel-centre mapping ``canvas = f * (image + 0.5) - 0.5`` (what ``cv2.resize`` does), so a
3x scale never materializes the whole 3x canvas. The chip is then flipped if asked and padded
at the right/bottom to ``chip_size`` with ``pad_value``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import cv2
import numpy as np
import torch

from chipping.scales import scaled_length
from sniper.structures import ChipSpec, flip_boxes

logger = logging.getLogger("sniper.data")


class ImageReadError(OSError):
    """An image file is missing, unreadable or not an image."""


def read_image(path: str, fmt: str = "RGB") -> np.ndarray:
    """Reads ``path`` as uint8 ``(H, W, 3)`` in ``fmt`` ("RGB" or "BGR") channel order."""
    if fmt not in ("RGB", "BGR"):
        raise ValueError(f"image format must be 'RGB' or 'BGR', got {fmt!r}")
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise ImageReadError(f"cannot read image {path!r}: missing, unreadable or corrupt")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if fmt == "RGB" else image


def cut_chip(image: np.ndarray, canvas_box: Sequence[int], factor: float,
             canvas_cache: dict | None = None) -> np.ndarray:
    """The canvas window ``canvas_box`` (XYXY, canvas px) of ``image`` at ``factor``.

    Args:
        image: uint8 ``(H, W, 3)``.
        canvas_cache: optional dict reused across chips of the same image (holds shrunken
            canvases keyed by factor).

    Returns:
        uint8 ``(y2 - y1, x2 - x1, 3)``.
    """
    x1, y1, x2, y2 = (int(v) for v in canvas_box)
    h, w = image.shape[:2]
    if factor < 1.0:
        key = float(factor)
        canvas = None if canvas_cache is None else canvas_cache.get(key)
        if canvas is None:
            size = (scaled_length(w, factor), scaled_length(h, factor))
            canvas = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            if canvas_cache is not None:
                canvas_cache[key] = canvas
        return np.ascontiguousarray(canvas[y1:y2, x1:x2])
    shift = 0.5 * (factor - 1.0)
    m = np.array([[factor, 0.0, shift - x1], [0.0, factor, shift - y1]], np.float64)
    return cv2.warpAffine(image, m, (x2 - x1, y2 - y1), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


class ChipMapper:
    """Maps a batch of ``ChipSpec`` to ``(image, target)`` pairs, decoding each file once.

    Args:
        input_format: channel order of the output images ("RGB" or "BGR").
        pad_value: per-channel value of the padding, in ``input_format`` order (the pixel
            mean, so padding is ~0 after normalization).

    Output per chip: image uint8 tensor ``(3, chip_size, chip_size)``; target dict with
    ``boxes`` float32 ``(V, 4)`` and ``ignore_boxes`` float32 ``(G, 4)`` in chip px,
    ``labels`` int64 ``(V,)`` in 1..C (0 is background), ``valid_range`` float32 ``(2,)`` in
    chip px, ``image_index``, ``scale_index``.
    """

    def __init__(self, input_format: str = "RGB",
                 pad_value: Sequence[float] = (124.0, 116.0, 104.0)) -> None:
        if input_format not in ("RGB", "BGR"):
            raise ValueError(f"input_format must be 'RGB' or 'BGR', got {input_format!r}")
        self.input_format = input_format
        self.pad_value = np.clip(np.round(np.asarray(pad_value, np.float64)), 0, 255)
        if self.pad_value.shape != (3,):
            raise ValueError(f"pad_value must have 3 entries, got {pad_value!r}")

    def map_chip(self, image: np.ndarray, spec: ChipSpec,
                 canvas_cache: dict | None = None) -> tuple[torch.Tensor, dict]:
        """One chip of an already decoded image (uint8 HxWx3 in ``input_format``)."""
        chip = cut_chip(image, spec.canvas_box, spec.factor, canvas_cache)
        boxes = np.asarray(spec.boxes, np.float32).reshape(-1, 4)
        ignore = np.asarray(spec.ignore_boxes, np.float32).reshape(-1, 4)
        if spec.flip:
            chip = np.ascontiguousarray(chip[:, ::-1])
            boxes, ignore = flip_boxes(boxes, spec.width), flip_boxes(ignore, spec.width)
        k = spec.chip_size
        out = np.empty((k, k, 3), np.uint8)
        out[:] = self.pad_value.astype(np.uint8)
        out[:chip.shape[0], :chip.shape[1]] = chip
        target = {
            "boxes": torch.from_numpy(np.ascontiguousarray(boxes)),
            "labels": torch.from_numpy(np.asarray(spec.classes, np.int64) + 1),
            "ignore_boxes": torch.from_numpy(np.ascontiguousarray(ignore)),
            "valid_range": torch.from_numpy(spec.valid_range_chip),
            "image_index": spec.image_index,
            "scale_index": spec.scale_index,
        }
        return torch.from_numpy(out).permute(2, 0, 1).contiguous(), target

    def __call__(self, specs: Sequence[ChipSpec]) -> list[tuple[torch.Tensor, dict]]:
        """Maps a batch; chips of unreadable images are skipped with a warning."""
        out: list[tuple[torch.Tensor, dict]] = []
        decoded: dict[str, tuple[np.ndarray | None, dict]] = {}
        for spec in specs:
            if spec.file_name not in decoded:
                try:
                    decoded[spec.file_name] = (read_image(spec.file_name, self.input_format), {})
                except ImageReadError as e:
                    logger.warning("skipping the chips of an unreadable image: %s", e)
                    decoded[spec.file_name] = (None, {})
            image, cache = decoded[spec.file_name]
            if image is None:
                continue
            if tuple(image.shape[:2]) != tuple(spec.image_size):
                logger.warning("skipping chip of %s: image is %s but its record says %s",
                               spec.file_name, image.shape[:2], tuple(spec.image_size))
                continue
            out.append(self.map_chip(image, spec, cache))
        return out
