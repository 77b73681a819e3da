"""File backends of ``sniper.sources``: TIFF by tiles (tifffile), GeoTIFF tags, rasterio,
OpenSlide, and ``open_image_source``'s choice and errors."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from sniper.sources import (
    ArraySource,
    ImageSourceError,
    TiffSource,
    open_image_source,
)
from sniper.sources.registry import auto_backend

tifffile = pytest.importorskip("tifffile")


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _regions(h: int, w: int, n: int = 8, seed: int = 1):
    rng = np.random.default_rng(seed)
    yield 0, 0, w, h
    for _ in range(n):
        x0, x1 = sorted(rng.choice(w + 1, 2, replace=False))
        y0, y1 = sorted(rng.choice(h + 1, 2, replace=False))
        yield int(x0), int(y0), int(x1), int(y1)


LAYOUTS = {
    "tiled": dict(tile=(64, 64), compression="zlib"),
    "strips": dict(rowsperstrip=37),
    "tiled-separate": dict(tile=(64, 48), planarconfig="separate"),
    "strips-separate": dict(rowsperstrip=50, planarconfig="separate"),
    "one-strip": dict(),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_tiff_regions_equal_the_array_for_every_layout(tmp_path, layout):
    im = _image(300, 410)
    kw = dict(LAYOUTS[layout])
    data = np.moveaxis(im, 2, 0) if kw.get("planarconfig") == "separate" else im
    path = str(tmp_path / "im.tif")
    tifffile.imwrite(path, data, photometric="rgb", **kw)
    with TiffSource(path) as src:
        assert src.size == (300, 410) and src.levels == [(300, 410)]
        for x0, y0, x1, y1 in _regions(300, 410):
            np.testing.assert_array_equal(src.read_region(0, x0, y0, x1, y1), im[y0:y1, x0:x1])


def test_tiff_grey_and_rgba_become_rgb(tmp_path):
    grey = _image(70, 90)[..., 0]
    tifffile.imwrite(tmp_path / "g.tif", grey, tile=(32, 32), photometric="minisblack")
    with TiffSource(str(tmp_path / "g.tif")) as src:
        np.testing.assert_array_equal(src.read_region(0, 0, 0, 90, 70), np.dstack([grey] * 3))
    rgba = np.dstack([_image(70, 90), np.full((70, 90), 255, np.uint8)])
    tifffile.imwrite(tmp_path / "a.tif", rgba, photometric="rgb", extrasamples=[2])
    with TiffSource(str(tmp_path / "a.tif")) as src:
        np.testing.assert_array_equal(src.read_region(0, 5, 6, 80, 60), rgba[6:60, 5:80, :3])


def _pyramid(path: str, im: np.ndarray, levels: int = 3) -> list[np.ndarray]:
    arrays = [im]
    for _ in range(levels - 1):
        h, w = arrays[-1].shape[:2]
        arrays.append(cv2.resize(arrays[-1], (w // 2, h // 2), interpolation=cv2.INTER_AREA))
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(im, tile=(64, 64), photometric="rgb", subifds=levels - 1)
        for a in arrays[1:]:
            tif.write(a, tile=(64, 64), photometric="rgb", subfiletype=1)
    return arrays


def test_pyramidal_bigtiff_levels_serve_the_coarse_scales(tmp_path):
    im = _image(512, 768, seed=3)
    path = str(tmp_path / "pyr.tif")
    arrays = _pyramid(path, im)
    with TiffSource(path) as src:
        assert src.levels == [(512, 768), (256, 384), (128, 192)]
        for level, a in enumerate(arrays):
            np.testing.assert_array_equal(src.read_region(level, 10, 20, 100, 90), a[20:90, 10:100])
        # canvas of factor 0.25 (192 x 128) is level 2 itself
        np.testing.assert_array_equal(src.canvas_window((0, 0, 192, 128), 0.25), arrays[2])
        memory = ArraySource(im).canvas_window((0, 0, 192, 128), 0.25).astype(int)
        assert np.abs(memory - arrays[2]).max() <= 1  # area of area = area at factor 2


def test_the_tile_cache_is_bounded_and_still_correct(tmp_path):
    im = _image(256, 256, seed=4)
    path = str(tmp_path / "t.tif")
    tifffile.imwrite(path, im, tile=(32, 32), photometric="rgb")
    with TiffSource(path, cache_bytes=4 * 32 * 32 * 3) as src:
        for x0, y0, x1, y1 in _regions(256, 256, 20):
            np.testing.assert_array_equal(src.read_region(0, x0, y0, x1, y1), im[y0:y1, x0:x1])
            assert src._cached <= 4 * 32 * 32 * 3 or len(src._cache) == 1


def test_tiff_errors_name_the_file(tmp_path):
    bad = tmp_path / "sixteen.tif"
    tifffile.imwrite(bad, np.zeros((10, 10, 3), np.uint16), photometric="rgb")
    with pytest.raises(ImageSourceError, match=r"sixteen\.tif.*uint16"):
        TiffSource(str(bad))
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.zeros((4, 10, 10), np.uint8), photometric="minisblack")
    with pytest.raises(ImageSourceError, match=r"stack\.tif: 4 images per level"):
        TiffSource(str(stack))
    palette = tmp_path / "palette.tif"
    cmap = np.zeros((3, 256), np.uint16)
    tifffile.imwrite(palette, np.zeros((10, 10), np.uint8), photometric="palette", colormap=cmap)
    with pytest.raises(ImageSourceError, match=r"palette\.tif: photometric"):
        TiffSource(str(palette))
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00garbage")
    with pytest.raises(ImageSourceError, match=r"corrupt\.tif"):
        open_image_source(str(corrupt))
    with pytest.raises(ImageSourceError, match=r"missing\.tif.*missing"):
        open_image_source(str(tmp_path / "missing.tif"))
    with pytest.raises(ValueError, match="unknown image backend 'gdal'"):
        open_image_source(str(corrupt), backend="gdal")


def _geokeys(epsg: int, raster_type: int = 1) -> list[int]:
    return [1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, raster_type, 3072, 0, 1, epsg]


def test_geotiff_tags_give_the_gdal_transform_and_crs(tmp_path):
    im = _image(40, 60)
    path = str(tmp_path / "geo.tif")
    extratags = [
        (33550, "d", 3, (0.5, 0.25, 0.0), True),
        (33922, "d", 6, (2.0, 4.0, 0.0, 1000.0, 5000.0, 0.0), True),
        (34735, "H", 16, _geokeys(32633), True),
    ]
    tifffile.imwrite(path, im, photometric="rgb", extratags=extratags)
    with TiffSource(path) as src:
        g = src.georeference
    # tie point: px (2, 4) at (1000, 5000); x = 0.5 col + 999, y = -0.25 row + 5001
    assert g.transform == (0.5, 0.0, 999.0, 0.0, -0.25, 5001.0) and g.crs == "EPSG:32633"
    point = str(tmp_path / "point.tif")
    extratags[2] = (34735, "H", 16, _geokeys(4326, raster_type=2), True)
    tifffile.imwrite(point, im, photometric="rgb", extratags=extratags)
    with TiffSource(point) as src:  # PixelIsPoint: the tie point is a px centre
        assert src.georeference.transform == (0.5, 0.0, 998.75, 0.0, -0.25, 5001.125)
        assert src.georeference.crs == "EPSG:4326"
    matrix = str(tmp_path / "matrix.tif")
    m = (2.0, 0.5, 0.0, 10.0, 0.25, -3.0, 0.0, 20.0, 0, 0, 1, 0, 0, 0, 0, 1)
    tifffile.imwrite(matrix, im, photometric="rgb", extratags=[(34264, "d", 16, m, True)])
    with TiffSource(matrix) as src:
        assert src.georeference.transform == (2.0, 0.5, 10.0, 0.25, -3.0, 20.0)
        assert src.georeference.crs is None
    plain = str(tmp_path / "plain.tif")
    tifffile.imwrite(plain, im, photometric="rgb")
    with TiffSource(plain) as src:
        assert src.georeference is None


def test_rasterio_reads_windows_overviews_and_the_georeference(tmp_path):
    rasterio = pytest.importorskip("rasterio", reason="rasterio (extra [geo]) not installed")
    from rasterio.enums import Resampling
    from rasterio.transform import Affine

    im = _image(300, 500, seed=6)
    path = str(tmp_path / "geo.tif")
    transform = Affine(0.5, 0.0, 600000.0, 0.0, -0.5, 5000000.0)
    with rasterio.open(
        path, "w", driver="GTiff", width=500, height=300, count=3, dtype="uint8",
        crs="EPSG:32633", transform=transform, tiled=True, blockxsize=64, blockysize=64,
    ) as ds:  # fmt: skip
        ds.write(np.moveaxis(im, 2, 0))
        ds.build_overviews([2, 4], Resampling.average)
    assert auto_backend(path) == "rasterio"
    with open_image_source(path) as src:
        assert type(src).__name__ == "RasterioSource"
        assert src.levels == [(300, 500), (150, 250), (75, 125)]
        for x0, y0, x1, y1 in _regions(300, 500):
            np.testing.assert_array_equal(src.read_region(0, x0, y0, x1, y1), im[y0:y1, x0:x1])
        assert src.georeference.transform == (0.5, 0.0, 600000.0, 0.0, -0.5, 5000000.0)
        assert src.georeference.crs == "EPSG:32633"
        coarse = src.read_region(2, 0, 0, 125, 75)
    with TiffSource(path) as tiff:  # an independent reader of the same file and tags
        assert tiff.georeference == src.georeference
        assert tiff.levels == src.levels
        np.testing.assert_array_equal(tiff.read_region(2, 0, 0, 125, 75), coarse)


def test_openslide_reads_a_pyramidal_tiff_by_levels(tmp_path):
    pytest.importorskip("openslide", reason="openslide-python (extra [slide]) not installed")
    from sniper.sources import SlideSource

    im = _image(512, 768, seed=7)
    path = str(tmp_path / "slide.tif")
    arrays = _pyramid(path, im)
    with SlideSource(path) as src:
        assert src.levels[0] == (512, 768)
        np.testing.assert_array_equal(src.read_region(0, 30, 40, 300, 200), im[40:200, 30:300])
        if len(src.levels) > 1:
            level = src.levels.index((256, 384))
            np.testing.assert_array_equal(
                src.read_region(level, 8, 8, 100, 64), arrays[1][8:64, 8:100]
            )
    with pytest.raises(ImageSourceError, match="cannot read slide"):
        SlideSource(str(tmp_path / "nothing.svs"))


def test_auto_backend_by_extension_and_memory_fallback(tmp_path):
    im = _image(20, 30)
    png = str(tmp_path / "a.png")
    cv2.imwrite(png, im[..., ::-1])
    with open_image_source(png) as src:
        assert isinstance(src, ArraySource) and src.name == png
        np.testing.assert_array_equal(src.canvas_window((0, 0, 30, 20), 1.0), im)
        np.testing.assert_array_equal(src.canvas_window((0, 0, 30, 20), 1.0, "BGR"), im[..., ::-1])
    tif = str(tmp_path / "a.tif")
    tifffile.imwrite(tif, im, photometric="rgb")
    assert auto_backend(tif) == "tifffile"
    assert auto_backend("x.svs") == "openslide" and auto_backend("x.jp2") == "rasterio"
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(ImageSourceError, match=r"broken\.png"):
        open_image_source(str(broken))
    os.mkfifo(tmp_path / "fifo.png")
    with pytest.raises(ImageSourceError, match="not a regular file"):
        open_image_source(str(tmp_path / "fifo.png"))
