"""TIFF, BigTIFF and pyramidal TIFF read by tiles with tifffile: ``TiffSource``.

Only the tiles (or strips) a region covers are read from the file and decoded
(``tifffile.TiffPage.decode``; compressions other than zlib / packbits / lzma need the
``imagecodecs`` package, extra ``[tiff]``). A pyramidal file's reduced-resolution pages
(``series[0].levels``: SubIFDs or reduced pages) are the source's levels, so the coarse scales
read a small page. Decoded tiles are kept in an LRU cache of ``cache_bytes``.

A GeoTIFF's georeference is read from its tags (``geotiff_georeference``): the affine
transform from ModelTransformationTag, or ModelTiepointTag + ModelPixelScaleTag (with the
half-pixel shift of a ``PixelIsPoint`` raster, as GDAL applies), and the EPSG code of
ProjectedCSTypeGeoKey or GeographicTypeGeoKey.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from .base import Georeference, ImageSourceError
from .windowed import BAND_PIXELS, WindowedSource, to_rgb8

__all__ = ["TiffSource", "geotiff_georeference"]

# TIFF photometric interpretations read as grey or colour (others, e.g. palette, refused)
_PHOTOMETRIC = {1: "grey", 2: "RGB", 6: "YCbCr"}


def _tag(page: Any, code: int) -> Any:
    tag = page.tags.get(code)
    return None if tag is None else tag.value


def geotiff_georeference(page: Any) -> Georeference | None:
    """The ``Georeference`` of a tifffile page's GeoTIFF tags, ``None`` without them."""
    matrix = _tag(page, 34264)  # ModelTransformationTag, 4x4 row-major
    tie = _tag(page, 33922)  # ModelTiepointTag (i, j, k, x, y, z)
    scale = _tag(page, 33550)  # ModelPixelScaleTag (sx, sy, sz)
    if matrix is not None and len(matrix) >= 8:
        m = [float(v) for v in matrix]
        transform = [m[0], m[1], m[3], m[4], m[5], m[7]]
    elif tie is not None and scale is not None and len(tie) >= 6 and len(scale) >= 2:
        i, j, x, y = float(tie[0]), float(tie[1]), float(tie[3]), float(tie[4])
        sx, sy = float(scale[0]), float(scale[1])
        transform = [sx, 0.0, x - i * sx, 0.0, -sy, y + j * sy]
    else:
        return None
    keys = _geokeys(page)
    if keys.get(1025) == 2:  # GTRasterTypeGeoKey = RasterPixelIsPoint: tie point = px centre
        a, b, c, d, e, f = transform
        transform = [a, b, c - 0.5 * (a + b), d, e, f - 0.5 * (d + e)]
    if not all(math.isfinite(v) for v in transform) or transform[0] * transform[4] == (
        transform[1] * transform[3]
    ):
        return None
    code = keys.get(3072) or keys.get(2048)  # ProjectedCSType, GeographicType
    crs = f"EPSG:{code}" if isinstance(code, int) and 0 < code < 32767 else None
    return Georeference(tuple(transform), crs)  # type: ignore[arg-type]


def _geokeys(page: Any) -> dict[int, Any]:
    """Inline SHORT values of the GeoKeyDirectoryTag (key id -> value)."""
    directory = _tag(page, 34735)
    if directory is None or len(directory) < 4:
        return {}
    keys: dict[int, Any] = {}
    for n in range(int(directory[3])):
        entry = directory[4 + 4 * n : 8 + 4 * n]
        if len(entry) == 4 and int(entry[1]) == 0:
            keys[int(entry[0])] = int(entry[3])
    return keys


class TiffSource(WindowedSource):
    """A (Big)TIFF read by tiles or strips (module doc).

    Args:
        path: the file (its pixels are RGB; ``canvas_window`` converts on request).
        cache_bytes: bound of the decoded-tile cache.
        band_pixels: as ``WindowedSource``.

    Raises:
        ImageSourceError: naming ``path``: missing, not a TIFF, several images per level
            (stacks, channels as pages), not 8-bit, palette / CMYK colours.
    """

    def __init__(
        self,
        path: str,
        cache_bytes: int = 64 << 20,
        band_pixels: int = BAND_PIXELS,
    ) -> None:
        import tifffile

        try:
            self._tif = tifffile.TiffFile(path)
        except (OSError, ValueError, tifffile.TiffFileError) as err:
            raise ImageSourceError(f"cannot read TIFF {path!r}: {err}") from err
        try:
            self.pages = self._level_pages(path)
            georef = geotiff_georeference(self.pages[0])
        except BaseException:
            self._tif.close()
            raise
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._cache_bytes, self._cached = int(cache_bytes), 0
        self._lock = threading.Lock()
        levels = [(int(p.imagelength), int(p.imagewidth)) for p in self.pages]
        super().__init__(levels, path, "RGB", georef, band_pixels)

    def _level_pages(self, path: str) -> list[Any]:
        if not self._tif.series:
            raise ImageSourceError(f"{path}: no image in the TIFF")
        pages = []
        for level in self._tif.series[0].levels:
            if len(level.pages) != 1:
                raise ImageSourceError(
                    f"{path}: {len(level.pages)} images per level (a stack or channels as "
                    "pages); only single-image (optionally pyramidal) TIFFs are supported"
                )
            page = level.pages[0]
            page = page.keyframe if hasattr(page, "keyframe") else page
            photometric = int(page.photometric)
            if photometric not in _PHOTOMETRIC:
                raise ImageSourceError(
                    f"{path}: photometric interpretation {page.photometric!r} is not "
                    "supported (grey, RGB or YCbCr)"
                )
            if page.dtype != np.uint8:
                raise ImageSourceError(
                    f"{path}: pixels are {page.dtype}; only 8-bit (uint8) images are "
                    "supported (rescale them to 0-255 first)"
                )
            if int(getattr(page, "imagedepth", 1)) != 1:
                raise ImageSourceError(f"{path}: volumetric TIFF (image depth > 1)")
            pages.append(page)
        return pages

    def close(self) -> None:
        self._tif.close()
        self._cache.clear()

    def _segment_grid(self, page: Any) -> tuple[int, int, int, int, int]:
        """``(segment height, width, rows, columns, planes)`` of a page's tiles / strips."""
        separate = int(page.planarconfig) == 2
        seg_h, seg_w = page.chunks[:2]  # (h, w[, samples]); image depth 1 is checked
        planes = int(page.samplesperpixel) if separate else 1
        rows = -(-int(page.imagelength) // int(seg_h))
        cols = -(-int(page.imagewidth) // int(seg_w))
        return int(seg_h), int(seg_w), rows, cols, planes

    def _segment(self, level: int, index: int) -> np.ndarray:
        """Decoded segment ``index`` of ``level``, ``(seg_h, seg_w, samples)``."""
        key = (level, index)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
            page = self.pages[level]
            offset, count = int(page.dataoffsets[index]), int(page.databytecounts[index])
            data = None
            if count:
                fh = self._tif.filehandle
                fh.seek(offset)
                data = fh.read(count)
            try:
                seg = page.decode(data, index, jpegtables=page.jpegtables)[0]
            except Exception as err:  # codec errors of tifffile / imagecodecs
                raise ImageSourceError(
                    f"{self.name}: cannot decode tile {index} of level {level}: {err}"
                ) from err
            seg = np.asarray(seg)[0]  # (seg_h, seg_w, samples) of depth 0
            self._cache[key] = seg
            self._cached += seg.nbytes
            while self._cached > self._cache_bytes and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._cached -= old.nbytes
            return seg

    def read_region(self, level: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        page = self.pages[level]
        seg_h, seg_w, rows, cols, planes = self._segment_grid(page)
        samples = int(page.samplesperpixel)
        out = np.zeros((y1 - y0, x1 - x0, samples), np.uint8)
        for ty in range(y0 // seg_h, min(rows, -(-y1 // seg_h))):
            for tx in range(x0 // seg_w, min(cols, -(-x1 // seg_w))):
                sy, sx = ty * seg_h, tx * seg_w
                ya, yb = max(y0, sy), min(y1, sy + seg_h)
                xa, xb = max(x0, sx), min(x1, sx + seg_w)
                for plane in range(planes):
                    seg = self._segment(level, plane * rows * cols + ty * cols + tx)
                    part = seg[ya - sy : yb - sy, xa - sx : xb - sx]
                    if planes == 1:
                        out[ya - y0 : yb - y0, xa - x0 : xb - x0] = part[:, :, :samples]
                    else:
                        out[ya - y0 : yb - y0, xa - x0 : xb - x0, plane] = part[:, :, 0]
        return to_rgb8(out, self.name)
