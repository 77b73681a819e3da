"""Chip records and the chip <-> image box mapping of the torch side of the project.

Frames (docs/design.md section 3): *image* = original image pixels; *canvas* = the image
resized by the chip's scale factor ``f``; *chip* = pixels of one chip (or any network input
window), whose top-left corner is at integer canvas pixel ``(cx1, cy1)``. Hence
``chip = image * f - (cx1, cy1)`` and ``image = (chip + (cx1, cy1)) / f``. Boxes are float32
XYXY with exclusive right/bottom edge.

``image_to_chip`` / ``chip_to_image`` are what the data, inference and AutoFocus code use for
boxes. The same rule is also computed, by design, inside ``chipping`` (which never imports
this module): the planner maps the boxes it assigns into chip pixels
(``chipping.assign_boxes``) and ``chipping.focus_chips_to_image`` maps FocusPixel cells to
image pixels; ``autofocus.chips.canvas_window`` rounds an image-px chip outward onto a canvas.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ChipSpec:
    """Everything needed to cut one training chip and its targets; small and picklable.

    Attributes:
        image_index: index of the image in the dataset's record list.
        file_name: path of the image file.
        image_size: (height, width) of the image in its record.
        scale_index: index into the training scales.
        factor: resize factor of this scale for this image.
        canvas_box: int ``(4,)`` XYXY chip corners on the canvas (chip px).
        chip_size: side of the padded square sample (chip px).
        boxes: float32 ``(V, 4)`` valid GT boxes in chip px (clipped to the chip).
        classes: int64 ``(V,)`` contiguous class ids 0..C-1 of ``boxes``.
        ignore_boxes: float32 ``(G, 4)`` ignore regions in chip px.
        valid_range: float64 ``(2,)`` ``[lo, hi)`` box size range in image px.
        negative: True for negative chips (mined from proposals).
        flip: whether the mapper flips this chip horizontally (drawn by the seeded sampler).
        chip_id: id of the chip within its epoch (position in the epoch's plan).
        segmentations: the masks of ``boxes``, row by row, in image px and compact form
            (polygons, RLE dict or None each; `sniper.data.chip_masks`), or None when the
            record has no ``segmentations``.
        pad_size: ``(height, width)`` of the padded sample (chip px), or None for the square
            ``(chip_size, chip_size)``; whole-image samples are not squared
            (`sniper.data.whole_image_sampler`).
    """

    image_index: int
    file_name: str
    image_size: tuple[int, int]
    scale_index: int
    factor: float
    canvas_box: tuple[int, int, int, int]
    chip_size: int
    boxes: np.ndarray = field(repr=False)
    classes: np.ndarray = field(repr=False)
    ignore_boxes: np.ndarray = field(repr=False)
    valid_range: tuple[float, float] = (0.0, float("inf"))
    negative: bool = False
    flip: bool = False
    chip_id: int = 0
    segmentations: tuple | None = field(default=None, repr=False)
    pad_size: tuple[int, int] | None = None

    @property
    def padded_shape(self) -> tuple[int, int]:
        """``(height, width)`` of the sample the mapper makes (chip px)."""
        if self.pad_size is None:
            return (int(self.chip_size), int(self.chip_size))
        return (int(self.pad_size[0]), int(self.pad_size[1]))

    @property
    def width(self) -> int:
        """Chip width in chip px before padding."""
        return int(self.canvas_box[2] - self.canvas_box[0])

    @property
    def height(self) -> int:
        """Chip height in chip px before padding."""
        return int(self.canvas_box[3] - self.canvas_box[1])

    @property
    def image_box(self) -> np.ndarray:
        """float64 ``(4,)`` the chip's extent in image px."""
        return np.asarray(self.canvas_box, dtype=np.float64) / self.factor

    @property
    def valid_range_chip(self) -> np.ndarray:
        """float32 ``(2,)`` the valid size range in chip px (``hi`` may be inf)."""
        return (np.asarray(self.valid_range, dtype=np.float64) * self.factor).astype(np.float32)

    def image_to_chip(self, boxes_img: np.ndarray) -> np.ndarray:
        """Maps float ``(N, 4)`` image-px boxes into this chip's pixels (not clipped)."""
        return image_to_chip(boxes_img, self.canvas_box, self.factor)

    def chip_to_image(self, boxes_chip: np.ndarray) -> np.ndarray:
        """Maps float ``(N, 4)`` chip-px boxes back to image px."""
        return chip_to_image(boxes_chip, self.canvas_box, self.factor)


def image_to_chip(boxes_img: np.ndarray, canvas_box, factor: float) -> np.ndarray:
    """``boxes_img * factor - (cx1, cy1, cx1, cy1)`` as float32 ``(N, 4)``."""
    b = np.asarray(boxes_img, dtype=np.float64).reshape(-1, 4)
    origin = np.array([canvas_box[0], canvas_box[1], canvas_box[0], canvas_box[1]], np.float64)
    return (b * factor - origin).astype(np.float32)


def chip_to_image(boxes_chip: np.ndarray, canvas_box, factor: float) -> np.ndarray:
    """``(boxes_chip + (cx1, cy1, cx1, cy1)) / factor`` as float32 ``(N, 4)``."""
    b = np.asarray(boxes_chip, dtype=np.float64).reshape(-1, 4)
    origin = np.array([canvas_box[0], canvas_box[1], canvas_box[0], canvas_box[1]], np.float64)
    return ((b + origin) / factor).astype(np.float32)


def flip_boxes(boxes: np.ndarray, width: float) -> np.ndarray:
    """Horizontal flip of float ``(N, 4)`` XYXY boxes in a frame ``width`` px wide."""
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    return np.stack([width - b[:, 2], b[:, 1], width - b[:, 0], b[:, 3]], axis=1)
