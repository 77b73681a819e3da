"""Tiling of large network inputs: the one rule that bounds the memory of every inference
engine (docs/design.md section 6).

A network input (a whole canvas of SNIPER's multi-scale inference, a FocusChip of the
AutoFocus cascade) of more than ``max_pixels`` pixels is replaced by square tiles of its
window: ``tile_size`` canvas px, overlapping by ``tile_overlap``, a grid from the window's
top-left plus a row / column flush with its right / bottom edge. Each tile is a
``NetworkInput`` of the same image, factor and canvas whose ``parent_box`` is the window it was
cut from: a tile edge inside that window cuts detections at ``tile_margin`` input px, an edge
shared with the window keeps the window's own rule (``cut_margin`` at inner canvas edges, none
at canvas edges). So the model never sees more than ``max(max_pixels, tile_size ** 2)`` pixels
in one input, whatever the image or chip size.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .network_input import NetworkInput

__all__ = ["default_tile_size", "tile_boxes", "tile_input"]


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
    height, width = (int(v) for v in canvas_size)
    if not 0 <= tile_overlap < tile_size:
        raise ValueError(f"need 0 <= tile_overlap ({tile_overlap}) < tile_size ({tile_size})")
    stride = tile_size - tile_overlap
    ys = _starts(height, tile_size, stride)
    xs = _starts(width, tile_size, stride)
    return np.array(
        [(x, y, min(x + tile_size, width), min(y + tile_size, height)) for y in ys for x in xs],
        dtype=np.int64,
    )


def default_tile_size(max_pixels: int, cap: int = 2048) -> int:
    """The largest multiple of 32 (at least 32, at most ``cap``) whose square fits
    ``max_pixels``."""
    side = math.isqrt(max(int(max_pixels), 1)) // 32 * 32
    return int(min(cap, max(32, side)))


def tile_input(
    inp: NetworkInput, max_pixels: int, tile_size: int, tile_overlap: int, tile_margin: float
) -> list[NetworkInput]:
    """``[inp]`` when its window has at most ``max_pixels`` pixels (or ``max_pixels <= 0``),
    else the tiles of its window (module doc), row-major."""
    if max_pixels <= 0 or inp.area <= max_pixels:
        return [inp]
    x1, y1, x2, y2 = inp.canvas_box
    tiles = tile_boxes((y2 - y1, x2 - x1), tile_size, tile_overlap)
    return [
        dataclasses.replace(
            inp,
            canvas_box=(x1 + int(a), y1 + int(b), x1 + int(c), y1 + int(d)),
            tile_margin=float(tile_margin),
            parent_box=inp.canvas_box,
        )
        for a, b, c, d in tiles
    ]
