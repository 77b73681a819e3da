"""Records of the AutoFocus cascade: the FocusPixel map of a network input
(the inputs themselves are `sniper.inference.network_input.NetworkInput`).

Frames as in `autofocus.chips`: *image* px of the original image; *canvas* px of the image
resized by a scale's factor `f` (`canvas = image * f`); a window is an integer XYXY canvas box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FocusMap"]


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
