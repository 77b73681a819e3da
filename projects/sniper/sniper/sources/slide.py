"""Whole-slide pathology images through OpenSlide: ``SlideSource``.

Extra ``[slide]`` (``pip install openslide-python openslide-bin``). The slide's levels
(``level_dimensions``) are the source's; a region of level ``l`` is
``OpenSlide.read_region`` at that level (its location in level-0 px). Transparent pixels
(outside the scanned area, alpha 0) become white, the slide's background.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import ImageSourceError
from .windowed import BAND_PIXELS, WindowedSource

__all__ = ["SlideSource"]


class SlideSource(WindowedSource):
    """A whole-slide image read by regions with OpenSlide (module doc).

    Args:
        path: the slide (.svs, .ndpi, .mrxs, .scn, tiled TIFF, ...).
        band_pixels: as ``WindowedSource``.

    Raises:
        ImageSourceError: naming ``path``: OpenSlide missing, or the file not a slide.
    """

    def __init__(self, path: str, band_pixels: int = BAND_PIXELS) -> None:
        try:
            import openslide
        except ImportError as err:
            raise ImageSourceError(
                f"{path}: reading it with OpenSlide needs `pip install openslide-python "
                "openslide-bin` (extra [slide])"
            ) from err
        try:
            self._slide: Any = openslide.OpenSlide(path)
        except (OSError, openslide.OpenSlideError) as err:
            raise ImageSourceError(f"cannot read slide {path!r}: {err}") from err
        self._error = openslide.OpenSlideError
        self.downsamples = [float(d) for d in self._slide.level_downsamples]
        levels = [(int(h), int(w)) for w, h in self._slide.level_dimensions]
        super().__init__(levels, path, "RGB", None, band_pixels)

    def read_region(self, level: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        d = self.downsamples[level]
        try:
            rgba = self._slide.read_region(
                (int(round(x0 * d)), int(round(y0 * d))), level, (x1 - x0, y1 - y0)
            )
        except self._error as err:
            raise ImageSourceError(
                f"{self.name}: cannot read level {level} region {(x0, y0, x1, y1)}: {err}"
            ) from err
        a = np.asarray(rgba, np.uint8)
        rgb = a[:, :, :3].copy()
        rgb[a[:, :, 3] == 0] = 255
        return rgb

    def close(self) -> None:
        self._slide.close()
