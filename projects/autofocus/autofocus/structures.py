"""Records of the AutoFocus cascade: its network inputs and their FocusPixel maps.

Frames as in `autofocus.chips`: *image* px of the original image; *canvas* px of the image
resized by a scale's factor `f` (`canvas = image * f`); a window is an integer XYXY canvas box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CascadeInput", "FocusMap"]


@dataclass(frozen=True)
class FocusMap:
    """A FocusPixel map of one network input.

    Attributes:
        prob: float32 `(h, w)` probabilities; cell `(y, x)` spans image px
            `offset + (x, y) * stride / factor` to `offset + (x + 1, y + 1) * stride / factor`.
        factor: the scale factor of the input.
        offset: `(x0, y0)` image px of the input's top-left corner.
        stride: input px per cell.
    """

    prob: np.ndarray
    factor: float
    offset: tuple[float, float]
    stride: float


@dataclass(frozen=True)
class CascadeInput:
    """One network input of the cascade.

    Attributes:
        image_index: which image of the call.
        factor: the scale's resize factor for that image.
        canvas_box: int XYXY window on the canvas (canvas px), cut by `cut_chip`.
        canvas_size: `(height, width)` of the whole canvas (canvas px).
    """

    image_index: int
    factor: float
    canvas_box: tuple[int, int, int, int]
    canvas_size: tuple[int, int]

    @property
    def area(self) -> int:
        """Pixels of the input, `h * w` (before the model pads it)."""
        x1, y1, x2, y2 = self.canvas_box
        return (x2 - x1) * (y2 - y1)

    @property
    def window_img(self) -> np.ndarray:
        """float64 `(4,)` the window in image px."""
        return np.asarray(self.canvas_box, np.float64) / self.factor

    @property
    def offset(self) -> tuple[float, float]:
        """`(x0, y0)` image px of the window's top-left corner."""
        return self.canvas_box[0] / self.factor, self.canvas_box[1] / self.factor
