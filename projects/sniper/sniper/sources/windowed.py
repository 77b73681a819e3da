"""Sources that read only the part of an image a window needs: ``WindowedSource``.

A windowed source is a pyramid of *levels*: level 0 is the full-resolution image, level
``l`` the same image at ``levels[l]`` ``(H_l, W_l)`` px (a TIFF's reduced-resolution pages, a
GeoTIFF's overviews, a slide's levels; just level 0 without a pyramid). Subclasses implement
``read_region(level, x0, y0, x1, y1)``; this class turns canvas windows into region reads:

* factor ``f >= 1``: the level-0 region the window samples (``resample.warp_span``), warped
  bilinearly: exactly ``sniper.image_ops.cut_chip`` on the whole image.
* factor ``f < 1``: the coarsest level at least as large as the canvas on both sides (level 0
  when the source has no pyramid, or when the canvas is larger than every reduced level), area
  averaged onto the canvas window (``resample.area_resize_axis``: ``cut_chip``'s ``INTER_AREA``
  up to uint8 rounding when the level is level 0; from a reduced level the result also carries
  that level's own resampling). The rows are read and shrunk in bands of at most
  ``band_pixels`` level px, so the memory of a read is bounded by the window and the band,
  never by the image: a 100,000 px image's coarse canvas is computed without loading it.

``ArrayWindowSource`` is the windowed source of any array-like that slices lazily
(``numpy.memmap``, ``numpy.load(..., mmap_mode="r")``, zarr or h5py arrays).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from chipping.scales import scaled_length

from .base import Georeference, ImageSource, ImageSourceError, check_channel_order
from .resample import area_resize_axis, area_span, warp_region, warp_span

__all__ = ["ArrayWindowSource", "WindowedSource", "to_rgb8"]

#: default bound of one band read (level px) when shrinking
BAND_PIXELS = 4_000_000


def to_rgb8(pixels: np.ndarray, name: str) -> np.ndarray:
    """``pixels`` ``(h, w)``, ``(h, w, 1)``, ``(h, w, 3)`` or ``(h, w, 4)`` uint8 as uint8
    ``(h, w, 3)`` (grey replicated, alpha dropped).

    Raises:
        ImageSourceError: another dtype or channel count, naming ``name``.
    """
    a = np.asarray(pixels)
    if a.dtype != np.uint8:
        raise ImageSourceError(
            f"{name}: pixels are {a.dtype}; only 8-bit (uint8) images are supported "
            "(rescale them to 0-255 first, e.g. with gdal_translate -ot Byte -scale)"
        )
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ImageSourceError(
            f"{name}: expected 1, 3 or 4 channels (grey, RGB, RGBA), got shape {a.shape}"
        )
    if a.shape[2] == 1:
        return np.repeat(a, 3, axis=2)
    return a[:, :, :3]


class WindowedSource(ImageSource):
    """An image read by regions of its levels (module doc).

    Args:
        levels: ``(H_l, W_l)`` of every level, level 0 first (full resolution), each
            smaller than or equal to the previous on both sides.
        name: how errors name the image (its path).
        channel_order: order of the pixels ``read_region`` returns.
        georeference: where the image lies on a map, if known.
        band_pixels: bound (level px) of one band read when shrinking.
    """

    def __init__(
        self,
        levels: Sequence[tuple[int, int]],
        name: str,
        channel_order: str = "RGB",
        georeference: Georeference | None = None,
        band_pixels: int = BAND_PIXELS,
    ) -> None:
        lv = [(int(h), int(w)) for h, w in levels]
        if not lv or min(min(s) for s in lv) < 1:
            raise ImageSourceError(f"{name}: no image (levels {list(levels)})")
        for (h0, w0), (h1, w1) in zip(lv[:-1], lv[1:], strict=True):
            if h1 > h0 or w1 > w0:
                raise ImageSourceError(f"{name}: pyramid levels grow ({lv})")
        if int(band_pixels) < 1:
            raise ValueError(f"band_pixels must be >= 1, got {band_pixels}")
        self.levels = lv
        self.name = name
        self.channel_order = check_channel_order(channel_order)
        self.georeference = georeference
        self.band_pixels = int(band_pixels)

    @property
    def size(self) -> tuple[int, int]:
        return self.levels[0]

    @abstractmethod
    def read_region(self, level: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """uint8 ``(y1 - y0, x1 - x0, 3)``: level px ``[x0, x1) x [y0, y1)`` of ``level``
        (inside the level), in ``channel_order``."""

    def level_for(self, canvas_size: tuple[int, int]) -> int:
        """The coarsest level at least ``canvas_size`` ``(h, w)`` on both sides."""
        best = 0
        for i, (h, w) in enumerate(self.levels):
            if h >= canvas_size[0] and w >= canvas_size[1]:
                best = i
        return best

    def read_canvas(self, canvas_box: tuple[int, int, int, int], factor: float) -> np.ndarray:
        height, width = self.size
        x1, y1, x2, y2 = canvas_box
        if factor >= 1.0:
            xl, xh = warp_span(x1, x2, factor, width)
            yl, yh = warp_span(y1, y2, factor, height)
            region = self._read(0, xl, yl, xh, yh)
            return warp_region(region, (xl, yl), canvas_box, factor)
        cw, ch = scaled_length(width, factor), scaled_length(height, factor)
        level = self.level_for((ch, cw))
        lh, lw = self.levels[level]
        xl, xh = area_span(x1, x2, lw, cw)
        rows_per_out = lh / ch
        # a band of n output rows reads at most n * rows_per_out + 2 level rows
        out_rows = max(1, int((self.band_pixels / (xh - xl) - 2) // rows_per_out))
        out = np.empty((y2 - y1, x2 - x1, 3), np.uint8)
        for r0 in range(y1, y2, out_rows):
            r1 = min(y2, r0 + out_rows)
            yl, yh = area_span(r0, r1, lh, ch)
            band = self._read(level, xl, yl, xh, yh)
            cols = area_resize_axis(band, 1, xl, x1, x2, lw, cw)
            rows = area_resize_axis(cols, 0, yl, r0, r1, lh, ch)
            out[r0 - y1 : r1 - y1] = np.clip(np.rint(rows), 0, 255).astype(np.uint8)
        return out

    def _read(self, level: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        region = self.read_region(level, x0, y0, x1, y1)
        if region.shape != (y1 - y0, x1 - x0, 3) or region.dtype != np.uint8:
            raise ImageSourceError(
                f"{self.name}: level {level} region {(x0, y0, x1, y1)} read as "
                f"{region.dtype} {region.shape}, expected uint8 {(y1 - y0, x1 - x0, 3)}"
            )
        return region


class ArrayWindowSource(WindowedSource):
    """A windowed source over array-likes that slice lazily (module doc).

    Args:
        levels: the level arrays, level 0 first, each ``(H_l, W_l)``, ``(H_l, W_l, 1)``,
            ``(H_l, W_l, 3)`` or ``(H_l, W_l, 4)`` uint8 (grey replicated, alpha dropped).
        name, channel_order, georeference, band_pixels: as ``WindowedSource``.
    """

    def __init__(
        self,
        levels: Any,
        name: str = "array",
        channel_order: str = "RGB",
        georeference: Georeference | None = None,
        band_pixels: int = BAND_PIXELS,
    ) -> None:
        arrays = list(levels) if isinstance(levels, (list, tuple)) else [levels]
        for a in arrays:
            if len(a.shape) not in (2, 3):
                raise ImageSourceError(f"{name}: level of shape {a.shape} is not an image")
        self.arrays = arrays
        super().__init__(
            [tuple(a.shape[:2]) for a in arrays], name, channel_order, georeference, band_pixels
        )

    def read_region(self, level: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        return to_rgb8(np.asarray(self.arrays[level][y0:y1, x0:x1]), self.name)
