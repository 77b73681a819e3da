"""What an inference engine reads an image through: ``ImageSource``.

An engine never needs a whole image, only *canvas windows*: the window ``canvas_box`` (int
XYXY, canvas px) of the image resized by a factor ``f`` (the canvas, of
``chipping.scales.scaled_size``, docs/design.md section 3). ``ImageSource.canvas_window``
returns exactly that, as uint8 ``(h, w, 3)``, so a source may keep the whole image in memory
(``ArraySource``, what ``sniper.image_ops.cut_chip`` does) or read only the part a window
needs from a file (``sniper.sources.windowed``).

Frames: *image* px of the full-resolution image (level 0 of a pyramid); pixel ``(i, j)``
covers ``[i, i + 1) x [j, j + 1)``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from chipping.scales import scaled_length
from sniper.image_ops import ImageReadError, check_image, cut_chip

__all__ = ["ArraySource", "Georeference", "ImageSource", "ImageSourceError", "as_source"]

CHANNEL_ORDERS = ("RGB", "BGR")


class ImageSourceError(ImageReadError):
    """An image source cannot be opened or read (names the file and the reason)."""


@dataclass(frozen=True)
class Georeference:
    """Where an image lies on a map.

    Attributes:
        transform: affine geotransform ``(a, b, c, d, e, f)`` in rasterio / GDAL order, from
            image px (corner convention) to map coordinates: ``x = a*col + b*row + c``,
            ``y = d*col + e*row + f`` (``sniper.geojson``).
        crs: the coordinate reference system, ``"EPSG:<code>"`` or WKT; ``None`` if unknown.
    """

    transform: tuple[float, float, float, float, float, float]
    crs: str | None = None


def check_channel_order(order: str) -> str:
    """``order`` if it is "RGB" or "BGR", else ``ValueError``."""
    if order not in CHANNEL_ORDERS:
        raise ValueError(f"channel order must be 'RGB' or 'BGR', got {order!r}")
    return order


def check_canvas_box(
    canvas_box: Sequence[int], factor: float, size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """``canvas_box`` as ints, checked to be a non-empty window of the canvas of an image of
    ``size`` ``(H, W)`` at ``factor`` (> 0, finite).

    Raises:
        ValueError: naming the factor or the window and the canvas size.
    """
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"factor must be a finite number > 0, got {factor}")
    x1, y1, x2, y2 = (int(v) for v in canvas_box)
    cw, ch = scaled_length(size[1], factor), scaled_length(size[0], factor)
    if not (0 <= x1 < x2 <= cw and 0 <= y1 < y2 <= ch):
        raise ValueError(
            f"canvas window {(x1, y1, x2, y2)} is not a non-empty window of the "
            f"{cw}x{ch} canvas (factor {factor})"
        )
    return x1, y1, x2, y2


class ImageSource(ABC):
    """An image an engine reads by canvas windows (module doc).

    Attributes:
        name: how errors name the image (a file path, or "image <i>").
        channel_order: "RGB" or "BGR", the order of the source's pixels.
        georeference: a ``Georeference`` or ``None``.
    """

    name: str = "image"
    channel_order: str = "RGB"
    georeference: Georeference | None = None

    @property
    @abstractmethod
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the full-resolution image (image px)."""

    @abstractmethod
    def read_canvas(self, canvas_box: tuple[int, int, int, int], factor: float) -> np.ndarray:
        """The window in the source's own channel order (arguments already checked by
        ``canvas_window``)."""

    def canvas_window(
        self,
        canvas_box: Sequence[int],
        factor: float,
        channel_order: str | None = None,
    ) -> np.ndarray:
        """The canvas window ``canvas_box`` (int XYXY canvas px) at ``factor``.

        Args:
            channel_order: "RGB" or "BGR" of the result; default: the source's.

        Returns:
            C-contiguous uint8 ``(y2 - y1, x2 - x1, 3)``.

        Raises:
            ValueError: the window is not inside the canvas, or a bad factor / order.
            ImageSourceError: the file cannot be read (names it).
        """
        box = check_canvas_box(canvas_box, float(factor), self.size)
        window = self.read_canvas(box, float(factor))
        order = check_channel_order(channel_order or self.channel_order)
        if order != self.channel_order:
            window = window[:, :, ::-1]
        return np.ascontiguousarray(window)

    def close(self) -> None:  # noqa: B027 (a no-op by default: sources without a file)
        """Release the file (no-op for sources without one)."""

    def __enter__(self) -> ImageSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        h, w = self.size
        return f"{type(self).__name__}({self.name!r}, {w}x{h}, {self.channel_order})"


class ArraySource(ImageSource):
    """A whole image in memory; windows are ``sniper.image_ops.cut_chip``'s.

    Args:
        image: uint8 ``(H, W, 3)`` (checked by ``sniper.image_ops.check_image``).
        channel_order: the order of ``image``'s channels.
        name: how errors name the image.
        cache_canvases: keep the shrunken canvases (factor < 1) that windows of the same
            factor share (what the engines do within one call); whole-canvas reads never fill
            the cache.
    """

    def __init__(
        self,
        image: np.ndarray,
        channel_order: str = "RGB",
        name: str = "image 0",
        cache_canvases: bool = True,
        index: int = 0,
    ) -> None:
        self.image = check_image(image, index)
        self.channel_order = check_channel_order(channel_order)
        self.name = name
        self._cache: dict | None = {} if cache_canvases else None

    @property
    def size(self) -> tuple[int, int]:
        return int(self.image.shape[0]), int(self.image.shape[1])

    def read_canvas(self, canvas_box: tuple[int, int, int, int], factor: float) -> np.ndarray:
        h, w = self.size
        whole = canvas_box == (0, 0, scaled_length(w, factor), scaled_length(h, factor))
        return cut_chip(self.image, canvas_box, factor, None if whole else self._cache)


def as_source(image: np.ndarray | ImageSource, index: int, channel_order: str) -> ImageSource:
    """An engine's ``images[index]`` as a source: a source as it is, a numpy array as an
    ``ArraySource`` in ``channel_order`` (checked by ``check_image``, naming ``index``)."""
    if isinstance(image, ImageSource):
        return image
    return ArraySource(image, channel_order, name=f"image {index}", index=index)
