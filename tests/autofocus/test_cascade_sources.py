"""The cascade and multi-scale inference read files through ``sniper.sources``: the same
detections as the in-memory path, and a 40,000 px image processed by bounded reads.

The fake model (conftest) marks FocusPixels with red and detects green components.
"""

from __future__ import annotations

import numpy as np
import pytest

from autofocus.cascade import AutoFocusCascade
from autofocus.params import CascadeParams
from sniper.inference.multiscale import MultiScaleInference
from sniper.sources import ArrayWindowSource, TiffSource

tifffile = pytest.importorskip("tifffile")

SIZE = 1024
# FocusPixels are painted in the blue channel (RGB file): a BGR engine gives it to the model
# as channel 0, which the fake model reads as its focus marker
FOCUS, GREEN = (384, 256, 448, 320), [(400, 272, 430, 304), (600, 600, 700, 700)]


def _image() -> np.ndarray:
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    x1, y1, x2, y2 = FOCUS
    image[y1:y2, x1:x2, 2] = 255
    for x1, y1, x2, y2 in GREEN:
        image[y1:y2, x1:x2, 1] = 255
    return image


def _params(**kw) -> CascadeParams:
    args = dict(
        scales=([512, 512], 1.0, 2.0),
        valid_ranges=([75, -1], [32, 180], [-1, 75]),
        thresholds=(0.5, 0.5),
        dilations=(1, 1),
        min_sizes=(4, 4),
        border_delta=10.0,
    )
    args.update(kw)
    return CascadeParams(**args)


def _same(a: dict, b: dict) -> None:
    for key in ("boxes", "scores", "classes"):
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]))
    assert a["pixels_per_scale"] == b["pixels_per_scale"]
    for ca, cb in zip(a["chips_per_scale"], b["chips_per_scale"], strict=True):
        np.testing.assert_array_equal(ca, cb)


@pytest.mark.parametrize("pyramid", [False, True])
def test_the_cascade_on_a_tiff_equals_the_cascade_on_the_array(tmp_path, fake_model, pyramid):
    image = _image()
    path = str(tmp_path / "im.tif")
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(image, tile=(128, 128), photometric="rgb", subifds=1 if pyramid else 0)
        if pyramid:  # an exact 2x area shrink (blocks on even px), what cut_chip computes
            half = image.reshape(512, 2, 512, 2, 3).mean(axis=(1, 3)).astype(np.uint8)
            tif.write(half, tile=(128, 128), photometric="rgb", subfiletype=1)
    cascade = AutoFocusCascade(fake_model(), _params(), top_k=100, input_format="BGR")
    memory = cascade([np.ascontiguousarray(image[:, :, ::-1])])[0]  # BGR, as the engine's
    with TiffSource(path) as src:
        assert len(src.levels) == (2 if pyramid else 1)
        windowed = cascade([src])[0]
    assert memory["boxes"].tolist() == [[600.0, 600.0, 700.0, 700.0], [400.0, 272.0, 430.0, 304.0]]
    assert memory["pixels_per_scale"] == [512 * 512, 128 * 128, 128 * 128]
    _same(memory, windowed)


def test_multiscale_inference_tiles_a_tiff_like_the_array(tmp_path, fake_model):
    image = _image()
    path = str(tmp_path / "im.tif")
    tifffile.imwrite(path, image, tile=(64, 64), photometric="rgb")
    engine = MultiScaleInference(
        fake_model(), scales=[0.5, 2.0], valid_ranges=[[-1, -1], [-1, -1]], max_pixels=512 * 512
    )
    memory = engine([image])[0]
    with TiffSource(path) as src:
        windowed = engine([src])[0]
    assert (
        windowed["inputs_per_scale"] == memory["inputs_per_scale"]
        and memory["inputs_per_scale"][1] > 1
    )
    for key in ("boxes", "scores", "classes"):
        np.testing.assert_array_equal(np.asarray(memory[key]), np.asarray(windowed[key]))


class LazyImage:
    """A ``(side, side, 3)`` uint8 image made on demand: zeros with painted blocks; every
    slice read is recorded. Nothing of the size of the image is ever allocated."""

    def __init__(self, side: int, blocks: list[tuple[int, tuple[int, int, int, int]]]) -> None:
        self.shape = (side, side, 3)
        self.blocks = blocks  # (channel, XYXY)
        self.reads: list[int] = []

    def __getitem__(self, key):
        ys, xs = key
        y0, y1 = ys.start, ys.stop
        x0, x1 = xs.start, xs.stop
        self.reads.append((y1 - y0) * (x1 - x0))
        out = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
        for channel, (bx1, by1, bx2, by2) in self.blocks:
            ya, yb, xa, xb = max(y0, by1), min(y1, by2), max(x0, bx1), min(x1, bx2)
            if ya < yb and xa < xb:
                out[ya - y0 : yb - y0, xa - x0 : xb - x0, channel] = 255
        return out


def test_a_40000_px_image_runs_with_bounded_reads(fake_model):
    side, down = 40_000, 64
    red, green = (19_968, 29_952, 20_480, 30_464), (20_100, 30_100, 20_200, 30_200)
    level0 = LazyImage(side, [(0, red), (1, green)])
    coarse = LazyImage(side // down, [(0, tuple(v // down for v in red))])
    src = ArrayWindowSource([level0, coarse], name="lazy")
    params = _params(
        scales=([512, 512], 1.0),
        valid_ranges=([1000, -1], [-1, -1]),
        thresholds=(0.5,),
        dilations=(1,),
        min_sizes=(4,),
    )
    model = fake_model()
    out = AutoFocusCascade(model, params, top_k=10)([src])[0]
    np.testing.assert_array_equal(out["boxes"].numpy(), np.asarray([green], np.float32))
    assert out["pixels_per_scale"][0] == 512 * 512 and out["pixel_fraction"] < 0.03
    assert sum(coarse.reads) <= (side // down) ** 2  # the coarse scale read level 1 only
    assert max(level0.reads) <= (2048 + 8) ** 2  # one tile of a chip (max_pixels 8e6) at most
    assert sum(level0.reads) < 0.03 * side * side
