"""Image sources: what the inference engines read images through (docs/design.md section 6).

``ArraySource`` (a whole image in memory), ``WindowedSource`` subclasses that read only the
regions a window needs (``TiffSource``, ``RasterioSource``, ``SlideSource``,
``ArrayWindowSource``), and ``open_image_source`` that picks one for a file.
"""

from .base import ArraySource, Georeference, ImageSource, ImageSourceError, as_source
from .raster import RasterioSource
from .registry import BACKENDS, SOURCE_EXTENSIONS, open_image_source, read_georeference
from .slide import SlideSource
from .tiff import TiffSource, geotiff_georeference
from .windowed import ArrayWindowSource, WindowedSource

__all__ = [
    "BACKENDS",
    "SOURCE_EXTENSIONS",
    "ArraySource",
    "ArrayWindowSource",
    "Georeference",
    "ImageSource",
    "ImageSourceError",
    "RasterioSource",
    "SlideSource",
    "TiffSource",
    "WindowedSource",
    "as_source",
    "geotiff_georeference",
    "open_image_source",
    "read_georeference",
]
