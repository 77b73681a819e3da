"""Chip mapper: cuts chips out of images and turns them into model inputs.

A chip is cut with the project's one resize rule (``sniper.image_ops.cut_chip``), then flipped
if its spec says so (image, valid boxes and ignore boxes together) and padded at the
right/bottom to ``chip_size`` (``ChipSpec.padded_shape``) with ``pad_value``. With
``with_masks`` the masks of the chip's valid boxes are made by the one mask rule
(`sniper.data.chip_masks.chip_masks`: the box map, then the same flip) and padded with zeros.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from sniper.image_ops import ImageReadError, cut_chip, read_image
from sniper.structures import ChipSpec, flip_boxes

from .chip_masks import chip_masks

logger = logging.getLogger("sniper.data")


class ChipMapper:
    """Maps a batch of ``ChipSpec`` to ``(image, target)`` pairs, decoding each file once.

    Args:
        input_format: channel order of the output images ("RGB" or "BGR").
        pad_value: per-channel value of the padding, in ``input_format`` order (the pixel
            mean, so padding is ~0 after normalization).
        with_masks: also make ``masks`` for every chip (its specs must carry
            ``segmentations``, i.e. the records must have them); off by default, so that
            box-only training pays nothing.

    Output per chip (``(H, W) = spec.padded_shape``, ``(chip_size, chip_size)`` for SNIPER
    chips): image uint8 tensor ``(3, H, W)``; target dict with
    ``boxes`` float32 ``(V, 4)`` and ``ignore_boxes`` float32 ``(G, 4)`` in chip px,
    ``labels`` int64 ``(V,)`` in 1..C (0 is background), ``valid_range`` float32 ``(2,)`` in
    chip px, ``image_index``, ``scale_index``; with ``with_masks`` also ``masks`` uint8
    ``(V, H, W)`` in chip px, row ``i`` the mask of ``boxes[i]`` (ignore
    boxes get none; a box without a mask gets zeros).
    """

    def __init__(
        self,
        input_format: str = "RGB",
        pad_value: Sequence[float] = (124.0, 116.0, 104.0),
        with_masks: bool = False,
    ) -> None:
        if input_format not in ("RGB", "BGR"):
            raise ValueError(f"input_format must be 'RGB' or 'BGR', got {input_format!r}")
        self.input_format = input_format
        self.pad_value = np.clip(np.round(np.asarray(pad_value, np.float64)), 0, 255)
        if self.pad_value.shape != (3,):
            raise ValueError(f"pad_value must have 3 entries, got {pad_value!r}")
        if type(with_masks) is not bool:
            raise ValueError(f"with_masks must be True or False, got {with_masks!r}")
        self.with_masks = with_masks

    def map_chip(
        self, image: np.ndarray, spec: ChipSpec, canvas_cache: dict | None = None
    ) -> tuple[torch.Tensor, dict]:
        """One chip of an already decoded image (uint8 HxWx3 in ``input_format``)."""
        chip = cut_chip(image, spec.canvas_box, spec.factor, canvas_cache)
        boxes = np.asarray(spec.boxes, np.float32).reshape(-1, 4)
        ignore = np.asarray(spec.ignore_boxes, np.float32).reshape(-1, 4)
        if spec.flip:
            chip = np.ascontiguousarray(chip[:, ::-1])
            boxes, ignore = flip_boxes(boxes, spec.width), flip_boxes(ignore, spec.width)
        h, w = spec.padded_shape
        out = np.empty((h, w, 3), np.uint8)
        out[:] = self.pad_value.astype(np.uint8)
        out[: chip.shape[0], : chip.shape[1]] = chip
        target = {
            "boxes": torch.from_numpy(np.ascontiguousarray(boxes)),
            "labels": torch.from_numpy(np.asarray(spec.classes, np.int64) + 1),
            "ignore_boxes": torch.from_numpy(np.ascontiguousarray(ignore)),
            "valid_range": torch.from_numpy(spec.valid_range_chip),
            "image_index": spec.image_index,
            "scale_index": spec.scale_index,
        }
        if self.with_masks:
            target["masks"] = torch.from_numpy(self._masks(spec))
        return torch.from_numpy(out).permute(2, 0, 1).contiguous(), target

    @staticmethod
    def _masks(spec: ChipSpec) -> np.ndarray:
        """uint8 ``(V, H, W)`` masks of the spec's valid boxes, zero-padded to
        ``spec.padded_shape``."""
        if spec.segmentations is None:
            raise ValueError(
                f"{spec.file_name}: masks were asked for (with_masks=True) but the record has "
                "no 'segmentations' (a dataset without masks)"
            )
        if len(spec.segmentations) != len(spec.boxes):
            raise ValueError(
                f"{spec.file_name}: chip {spec.chip_id} has {len(spec.segmentations)} "
                f"segmentations for {len(spec.boxes)} boxes"
            )
        masks = chip_masks(
            spec.segmentations, spec.canvas_box, spec.factor, spec.image_size, spec.flip
        )
        h, w = spec.padded_shape
        out = np.zeros((len(masks), h, w), np.uint8)
        out[:, : masks.shape[1], : masks.shape[2]] = masks
        return out

    def map_batch(
        self, specs: Sequence[ChipSpec]
    ) -> tuple[list[tuple[torch.Tensor, dict]], list[tuple[str, str]]]:
        """Maps a batch, skipping the chips of images that cannot be used.

        Returns:
            (the mapped chips of the usable images, in spec order; one ``(file_name,
            reason)`` per skipped file: unreadable, or a size other than its record's).
        """
        out: list[tuple[torch.Tensor, dict]] = []
        failures: list[tuple[str, str]] = []
        decoded: dict[str, tuple[np.ndarray | None, dict]] = {}
        for spec in specs:
            if spec.file_name not in decoded:
                try:
                    image = read_image(spec.file_name, self.input_format)
                except ImageReadError as e:
                    failures.append((spec.file_name, f"unreadable: {e}"))
                    image = None
                if image is not None and tuple(image.shape[:2]) != tuple(spec.image_size):
                    h, w = spec.image_size
                    failures.append(
                        (
                            spec.file_name,
                            f"image is {image.shape[0]}x{image.shape[1]} (HxW) but its "
                            f"record says {h}x{w}",
                        )
                    )
                    image = None
                decoded[spec.file_name] = (image, {})
            image, cache = decoded[spec.file_name]
            if image is not None:
                out.append(self.map_chip(image, spec, cache))
        return out, failures

    def __call__(self, specs: Sequence[ChipSpec]) -> list[tuple[torch.Tensor, dict]]:
        """Maps a batch; the chips of unusable images are skipped with one warning per file
        (`map_batch`; the training loader counts them instead, `TrainChipLoader`)."""
        out, failures = self.map_batch(specs)
        for file_name, reason in failures:
            logger.warning("skipping the chips of %s: %s", file_name, reason)
        return out
