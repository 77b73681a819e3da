"""Open an image file as the right ``ImageSource``: ``open_image_source``.

Backends (``BACKENDS``, name -> opener):

* ``"tifffile"``: ``.tif`` / ``.tiff`` / ``.btf`` / ``.tf8`` / ``.tf2`` (``TiffSource``), tile
  by tile, reduced-resolution pages as levels, GeoTIFF tags read;
* ``"rasterio"``: any raster GDAL reads (``RasterioSource``, extra ``[geo]``);
* ``"openslide"``: whole-slide images (``SlideSource``, extra ``[slide]``);
* ``"memory"``: any other image file, decoded whole (``sniper.image_ops.read_image``,
  ``ArraySource``).

``backend="auto"`` picks by extension: slide formats (``.svs .ndpi .mrxs .scn .vms .vmu
.bif``) -> openslide; ``.jp2 .vrt .img .ecw .sid .ntf`` -> rasterio; TIFF -> rasterio when it
is installed and the file is a GeoTIFF (so the CRS comes as rasterio names it), else
tifffile; everything else -> memory.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable

from sniper.image_ops import ImageReadError, read_image

from .base import ArraySource, Georeference, ImageSource, ImageSourceError
from .raster import RasterioSource
from .slide import SlideSource
from .tiff import TiffSource

__all__ = [
    "BACKENDS",
    "SOURCE_EXTENSIONS",
    "TIFF_EXTENSIONS",
    "open_image_source",
    "read_georeference",
]

TIFF_EXTENSIONS = (".tif", ".tiff", ".btf", ".tf8", ".tf2")
SLIDE_EXTENSIONS = (".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif")
GDAL_EXTENSIONS = (".jp2", ".vrt", ".img", ".ecw", ".sid", ".ntf")
#: every extension a source opens by windows, plus the common image files
SOURCE_EXTENSIONS = (
    (".jpg", ".jpeg", ".png", ".bmp", ".webp")
    + TIFF_EXTENSIONS
    + SLIDE_EXTENSIONS
    + GDAL_EXTENSIONS
)


def _memory(path: str) -> ImageSource:
    try:
        image = read_image(path, "RGB")
    except ImageSourceError:
        raise
    except ImageReadError as err:
        raise ImageSourceError(str(err)) from err
    return ArraySource(image, "RGB", name=path)


BACKENDS: dict[str, Callable[[str], ImageSource]] = {
    "tifffile": TiffSource,
    "rasterio": RasterioSource,
    "openslide": SlideSource,
    "memory": _memory,
}


def _is_geotiff(path: str) -> bool:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            tags = tif.pages[0].tags if tif.pages else {}
            return 33922 in tags or 34264 in tags
    except (OSError, ValueError, tifffile.TiffFileError):
        return False


def auto_backend(path: str) -> str:
    """The backend ``backend="auto"`` uses for ``path`` (module doc)."""
    ext = os.path.splitext(path)[1].lower()
    if ext in SLIDE_EXTENSIONS:
        return "openslide"
    if ext in GDAL_EXTENSIONS:
        return "rasterio"
    if ext in TIFF_EXTENSIONS:
        if importlib.util.find_spec("rasterio") is not None and _is_geotiff(path):
            return "rasterio"
        return "tifffile"
    return "memory"


def open_image_source(path: str, backend: str = "auto") -> ImageSource:
    """``path`` as an ``ImageSource`` (RGB; engines ask for their channel order).

    Args:
        backend: ``"auto"`` or a name of ``BACKENDS``.

    Raises:
        ImageSourceError: naming ``path``: missing, not a regular file, unreadable, or a
            backend that is not installed.
        ValueError: an unknown ``backend``.
    """
    if backend != "auto" and backend not in BACKENDS:
        raise ValueError(f"unknown image backend {backend!r}; expected auto or {sorted(BACKENDS)}")
    if not os.path.isfile(path):
        raise ImageSourceError(f"cannot read image {path!r}: missing or not a regular file")
    name = auto_backend(path) if backend == "auto" else backend
    return BACKENDS[name](path)


def read_georeference(path: str) -> Georeference | None:
    """The georeference of a TIFF or GDAL raster at ``path`` (``None`` for other files, files
    without one, or files that cannot be read: nothing is decoded but the header)."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in TIFF_EXTENSIONS + GDAL_EXTENSIONS or not os.path.isfile(path):
        return None
    try:
        with open_image_source(path) as src:
            return src.georeference
    except (ImageSourceError, OSError):
        return None
