"""Result containers of the planner: plain numpy arrays, no torch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ChipPlan:
    """Chips of one or many images.

    Attributes:
        image_index: int32 ``(N,)`` image of each chip (0 for single-image plans).
        scale_index: int32 ``(N,)`` index into the scales the plan was made with.
        chips_scaled: int32 ``(N, 4)`` XYXY chip corners on the scaled canvas (exact integers;
            the canvas is the image resized by ``factors``).
        factors: float64 ``(N,)`` resize factor of each chip's scale for its image.
        counts: int32 ``(N,)`` boxes (or proposals) the chip newly covered when it was picked.
        valid_ranges: float64 ``(S, 2)`` ``[lo, hi)`` box-size ranges in image px per scale.
    """

    image_index: np.ndarray
    scale_index: np.ndarray
    chips_scaled: np.ndarray
    factors: np.ndarray
    counts: np.ndarray
    valid_ranges: np.ndarray

    @staticmethod
    def from_raw(raw: dict, valid_ranges: np.ndarray) -> ChipPlan:
        return ChipPlan(
            image_index=np.asarray(raw["image_index"], dtype=np.int32),
            scale_index=np.asarray(raw["scale_index"], dtype=np.int32),
            chips_scaled=np.asarray(raw["chips_scaled"], dtype=np.int32).reshape(-1, 4),
            factors=np.asarray(raw["factors"], dtype=np.float64),
            counts=np.asarray(raw["counts"], dtype=np.int32),
            valid_ranges=np.asarray(valid_ranges, dtype=np.float64).reshape(-1, 2),
        )

    def __len__(self) -> int:
        return int(self.chips_scaled.shape[0])

    @property
    def chips(self) -> np.ndarray:
        """float32 ``(N, 4)`` XYXY chips in original-image pixels."""
        return (self.chips_scaled / self.factors[:, None]).astype(np.float32)

    @property
    def chip_ranges(self) -> np.ndarray:
        """float64 ``(N, 2)`` valid range ``[lo, hi)`` (image px) of each chip's scale."""
        return self.valid_ranges[self.scale_index]

    def select(self, index: np.ndarray | slice) -> ChipPlan:
        """The chips at ``index`` (a boolean mask, integer indices or a slice)."""
        return ChipPlan(
            self.image_index[index],
            self.scale_index[index],
            self.chips_scaled[index],
            self.factors[index],
            self.counts[index],
            self.valid_ranges,
        )

    def for_image(self, image: int) -> ChipPlan:
        """The chips of image ``image``."""
        return self.select(self.image_index == image)


@dataclass(frozen=True)
class ChipAssignment:
    """Boxes of each chip, in CSR form: chip ``k`` owns rows ``splits[k]:splits[k + 1]``.

    Attributes:
        valid_splits: int64 ``(N + 1,)``.
        valid_index: int64 ``(V,)`` index of each valid box in its image's box array.
        valid_boxes: float32 ``(V, 4)`` XYXY in chip pixels, clipped to the chip.
        ignore_splits, ignore_index, ignore_boxes: the same for ignore boxes.
    """

    valid_splits: np.ndarray
    valid_index: np.ndarray
    valid_boxes: np.ndarray
    ignore_splits: np.ndarray
    ignore_index: np.ndarray
    ignore_boxes: np.ndarray

    @staticmethod
    def from_raw(raw: dict) -> ChipAssignment:
        return ChipAssignment(
            valid_splits=np.asarray(raw["valid_splits"], dtype=np.int64),
            valid_index=np.asarray(raw["valid_index"], dtype=np.int64),
            valid_boxes=np.asarray(raw["valid_boxes"], dtype=np.float32).reshape(-1, 4),
            ignore_splits=np.asarray(raw["ignore_splits"], dtype=np.int64),
            ignore_index=np.asarray(raw["ignore_index"], dtype=np.int64),
            ignore_boxes=np.asarray(raw["ignore_boxes"], dtype=np.float32).reshape(-1, 4),
        )

    def __len__(self) -> int:
        return int(self.valid_splits.shape[0] - 1)

    def valid(self, chip: int) -> tuple[np.ndarray, np.ndarray]:
        """(box indices int64 (V,), chip-pixel boxes float32 (V, 4)) of chip ``chip``."""
        a, b = self.valid_splits[chip], self.valid_splits[chip + 1]
        return self.valid_index[a:b], self.valid_boxes[a:b]

    def ignore(self, chip: int) -> tuple[np.ndarray, np.ndarray]:
        """(box indices int64 (G,), chip-pixel boxes float32 (G, 4)) of chip ``chip``."""
        a, b = self.ignore_splits[chip], self.ignore_splits[chip + 1]
        return self.ignore_index[a:b], self.ignore_boxes[a:b]
