"""GeoTIFF and every other raster GDAL reads, through rasterio: ``RasterioSource``.

Extra ``[geo]`` (``pip install rasterio``). Regions are windowed reads
(``DatasetReader.read(window=...)``); the overviews (``dataset.overviews(1)``, opened with
GDAL's ``OVERVIEW_LEVEL``) are the source's reduced levels. The georeference is the dataset's
``transform`` (rasterio order ``a, b, c, d, e, f``) and CRS (``"EPSG:<code>"`` when it has
one, else its WKT). Bands: 1 is grey (replicated); with 3 or more, bands 1-3 are red, green
and blue (a 4th, alpha, is dropped); 8-bit only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Georeference, ImageSourceError
from .windowed import BAND_PIXELS, WindowedSource, to_rgb8

__all__ = ["RasterioSource"]


def _georeference(dataset: Any) -> Georeference | None:
    crs = dataset.crs
    transform = tuple(float(v) for v in tuple(dataset.transform)[:6])
    if crs is None and transform == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0):
        return None  # GDAL's identity transform of an image without a georeference
    name = None
    if crs is not None:
        epsg = crs.to_epsg()
        name = f"EPSG:{epsg}" if epsg else crs.to_wkt()
    return Georeference(transform, name)  # type: ignore[arg-type]


class RasterioSource(WindowedSource):
    """A raster read by windows with rasterio (module doc).

    Args:
        path: the file (or any GDAL dataset name rasterio opens).
        band_pixels: as ``WindowedSource``.

    Raises:
        ImageSourceError: naming ``path``: rasterio missing, the file unreadable, not 8-bit,
            or 2 bands.
    """

    def __init__(self, path: str, band_pixels: int = BAND_PIXELS) -> None:
        try:
            import rasterio
        except ImportError as err:
            raise ImageSourceError(
                f"{path}: reading it with rasterio needs `pip install rasterio` (extra [geo])"
            ) from err
        self._rasterio = rasterio
        try:
            ds = rasterio.open(path)
        except (OSError, rasterio.errors.RasterioError) as err:
            raise ImageSourceError(f"cannot read raster {path!r}: {err}") from err
        self._datasets: dict[int, Any] = {0: ds}
        if ds.count == 2 or ds.count < 1:
            ds.close()
            raise ImageSourceError(f"{path}: {ds.count} bands; expected 1 (grey) or >= 3 (RGB)")
        if ds.dtypes[0] != "uint8":
            ds.close()
            raise ImageSourceError(
                f"{path}: pixels are {ds.dtypes[0]}; only 8-bit (uint8) rasters are supported "
                "(rescale them to 0-255 first, e.g. with gdal_translate -ot Byte -scale)"
            )
        self.bands = [1] if ds.count == 1 else [1, 2, 3]
        levels = [(ds.height, ds.width)]
        for i in range(len(ds.overviews(1))):
            ov = self._open_level(path, i + 1)
            levels.append((ov.height, ov.width))
        super().__init__(levels, path, "RGB", _georeference(ds), band_pixels)

    def _open_level(self, path: str, level: int) -> Any:
        ds = self._datasets.get(level)
        if ds is None:
            try:
                ds = self._rasterio.open(path, overview_level=level - 1)
            except (OSError, self._rasterio.errors.RasterioError) as err:
                raise ImageSourceError(
                    f"cannot read overview {level - 1} of {path!r}: {err}"
                ) from err
            self._datasets[level] = ds
        return ds

    def read_region(self, level: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        from rasterio.windows import Window

        ds = self._open_level(self.name, level)
        try:
            data = ds.read(self.bands, window=Window(x0, y0, x1 - x0, y1 - y0))
        except (OSError, self._rasterio.errors.RasterioError) as err:
            raise ImageSourceError(
                f"{self.name}: cannot read level {level} window {(x0, y0, x1, y1)}: {err}"
            ) from err
        return to_rgb8(np.moveaxis(data, 0, -1), self.name)

    def close(self) -> None:
        for ds in self._datasets.values():
            ds.close()
        self._datasets.clear()
