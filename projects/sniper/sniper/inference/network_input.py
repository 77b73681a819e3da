"""The record of one network input of an inference engine.

Frames (docs/design.md section 3): *image* px of the original image; *canvas* px of the
image resized by a scale's factor ``f`` (``canvas = image * f``, size
``chipping.scaled_size``); *input* px of the window given to the network, whose top-left corner
is canvas px ``(x1, y1)`` of ``canvas_box``. Hence ``input = image * f - (x1, y1)`` and
``image = (input + (x1, y1)) / f`` (``sniper.structures.chip_to_image``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["NetworkInput", "batch_by_pixels", "whole_canvas"]


@dataclass(frozen=True)
class NetworkInput:
    """One window of one image at one scale, as given to the network.

    Attributes:
        image_index: which image of the call.
        factor: the scale's resize factor for that image.
        canvas_box: int XYXY window on the canvas (canvas px), cut by
            ``sniper.image_ops.cut_chip``.
        canvas_size: ``(height, width)`` of the whole canvas (canvas px).
        cut_margin: a detection whose edge comes closer than this (input px) to an edge of the
            window that is not a canvas edge is dropped: its object is cut by the window.
        tile_margin: for a tile, the margin (input px) of its edges that lie inside
            ``parent_box`` (``sniper.inference.tiling``).
        parent_box: for a tile, the canvas window (canvas px) it was cut from; ``None`` for an
            input that is not a tile.
    """

    image_index: int
    factor: float
    canvas_box: tuple[int, int, int, int]
    canvas_size: tuple[int, int]
    cut_margin: float = 0.0
    tile_margin: float = 0.0
    parent_box: tuple[int, int, int, int] | None = None

    @property
    def area(self) -> int:
        """Pixels of the input, ``h * w`` (before the model pads it)."""
        x1, y1, x2, y2 = self.canvas_box
        return (x2 - x1) * (y2 - y1)

    @property
    def is_whole(self) -> bool:
        """True when the window is the whole canvas."""
        return self.canvas_box == (0, 0, self.canvas_size[1], self.canvas_size[0])

    @property
    def inner_edges(self) -> tuple[bool, bool, bool, bool]:
        """Which edges (left, top, right, bottom) of the window are not canvas edges."""
        x1, y1, x2, y2 = self.canvas_box
        height, width = self.canvas_size
        return x1 > 0, y1 > 0, x2 < width, y2 < height

    @property
    def is_tile(self) -> bool:
        """True when the input is a tile of a larger window (``parent_box``)."""
        return self.parent_box is not None

    @property
    def edge_margins(self) -> tuple[float, float, float, float]:
        """Cut margin (input px) of each edge (left, top, right, bottom): 0 at a canvas edge,
        ``tile_margin`` at an edge inside ``parent_box``, ``cut_margin`` otherwise."""
        parent = self.parent_box or self.canvas_box
        inside = (
            self.canvas_box[0] > parent[0],
            self.canvas_box[1] > parent[1],
            self.canvas_box[2] < parent[2],
            self.canvas_box[3] < parent[3],
        )
        return tuple(  # type: ignore[return-value]
            (self.tile_margin if tile_edge else self.cut_margin) if inner else 0.0
            for inner, tile_edge in zip(self.inner_edges, inside, strict=True)
        )

    @property
    def window_img(self) -> np.ndarray:
        """float64 ``(4,)`` the window in image px."""
        return np.asarray(self.canvas_box, np.float64) / self.factor

    @property
    def offset(self) -> tuple[float, float]:
        """``(x0, y0)`` image px of the window's top-left corner."""
        return self.canvas_box[0] / self.factor, self.canvas_box[1] / self.factor


def whole_canvas(image_index: int, factor: float, canvas_size: tuple[int, int]) -> NetworkInput:
    """The input that is the whole canvas of ``(height, width)`` canvas px."""
    height, width = (int(v) for v in canvas_size)
    return NetworkInput(image_index, float(factor), (0, 0, width, height), (height, width))


def batch_by_pixels(inputs: Sequence[NetworkInput], max_pixels: int) -> Iterator[list[Any]]:
    """Consecutive groups of ``inputs`` whose batch, padded to the largest member rounded up
    to /32, holds at most ``max_pixels`` pixels (a single larger input forms its own batch)."""
    batch: list[NetworkInput] = []
    max_h = max_w = 0
    for inp in inputs:
        x1, y1, x2, y2 = inp.canvas_box
        in_h, in_w = math.ceil((y2 - y1) / 32) * 32, math.ceil((x2 - x1) / 32) * 32
        h, w = max(max_h, in_h), max(max_w, in_w)
        if batch and (len(batch) + 1) * h * w > max_pixels:
            yield batch
            batch, h, w = [], in_h, in_w
        batch.append(inp)
        max_h, max_w = h, w
    if batch:
        yield batch
