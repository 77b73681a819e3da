"""Image sources: windowed reads equal the in-memory path (``cut_chip``), levels, banding."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from chipping.scales import scaled_length
from sniper.image_ops import cut_chip
from sniper.sources import ArraySource, ArrayWindowSource, ImageSourceError, as_source
from sniper.sources.resample import area_resize_axis, area_span, warp_region, warp_span


def _image(h: int = 301, w: int = 457, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _canvas(size: tuple[int, int], f: float) -> tuple[int, int]:
    return scaled_length(size[1], f), scaled_length(size[0], f)


@pytest.mark.parametrize("factor", [0.2, 0.37, 0.5, 0.731, 0.999])
def test_area_resize_matches_cv2_inter_area_on_any_window(factor):
    im = _image()
    cw, ch = _canvas(im.shape, factor)
    ref = cv2.resize(im, (cw, ch), interpolation=cv2.INTER_AREA).astype(int)
    rng = np.random.default_rng(1)
    for _ in range(10):
        x1, x2 = sorted(rng.choice(cw + 1, 2, replace=False))
        y1, y2 = sorted(rng.choice(ch + 1, 2, replace=False))
        xl, xh = area_span(x1, x2, im.shape[1], cw)
        yl, yh = area_span(y1, y2, im.shape[0], ch)
        cols = area_resize_axis(im[yl:yh, xl:xh], 1, xl, x1, x2, im.shape[1], cw)
        out = np.rint(area_resize_axis(cols, 0, yl, y1, y2, im.shape[0], ch))
        assert out.shape == (y2 - y1, x2 - x1, 3)
        assert np.abs(out - ref[y1:y2, x1:x2]).max() <= 1  # uint8 rounding only


def test_area_resize_is_the_exact_mean_on_hand_values():
    row = np.array([[0.0, 3.0, 6.0, 9.0, 12.0]])  # 5 px -> 2 px: footprints of 2.5 px
    out = area_resize_axis(row, 1, 0, 0, 2, 5, 2)
    np.testing.assert_allclose(out, [[(0 + 3 + 0.5 * 6) / 2.5, (0.5 * 6 + 9 + 12) / 2.5]])
    with pytest.raises(ValueError, match="do not cover"):
        area_resize_axis(row[:, 1:], 1, 1, 0, 2, 5, 2)


@pytest.mark.parametrize("factor", [1.0, 1.5, 2.37, 3.0])
def test_warp_from_the_sampled_region_equals_cut_chip_exactly(factor):
    im = _image()
    cw, ch = _canvas(im.shape, factor)
    for box in [(0, 0, cw, ch), (5, 7, 200, 150), (cw - 90, ch - 33, cw, ch), (1, 0, 2, 1)]:
        xl, xh = warp_span(box[0], box[2], factor, im.shape[1])
        yl, yh = warp_span(box[1], box[3], factor, im.shape[0])
        out = warp_region(im[yl:yh, xl:xh], (xl, yl), box, factor)
        np.testing.assert_array_equal(out, cut_chip(im, box, factor))


def test_array_source_is_cut_chip_and_converts_channel_order():
    im = _image()
    src = ArraySource(im, "RGB")
    assert src.size == (301, 457)
    for f, box in [(0.5, (3, 4, 100, 90)), (2.0, (10, 10, 300, 200))]:
        np.testing.assert_array_equal(src.canvas_window(box, f), cut_chip(im, box, f))
        np.testing.assert_array_equal(
            src.canvas_window(box, f, "BGR"), cut_chip(im, box, f)[..., ::-1]
        )
    with pytest.raises(ValueError, match="not a non-empty window"):
        src.canvas_window((0, 0, 300, 10), 0.5)  # the canvas is 228 px wide
    with pytest.raises(ValueError, match="factor"):
        src.canvas_window((0, 0, 1, 1), float("nan"))
    with pytest.raises(ValueError, match="channel order"):
        src.canvas_window((0, 0, 1, 1), 1.0, "RGBA")
    with pytest.raises(ValueError, match="image 3"):
        as_source(im.astype(np.float32), 3, "RGB")
    assert as_source(src, 0, "BGR") is src


class _Spy(ArrayWindowSource):
    """Records every region read as ``(level, x0, y0, x1, y1)``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reads = []

    def read_region(self, level, x0, y0, x1, y1):
        self.reads.append((level, x0, y0, x1, y1))
        return super().read_region(level, x0, y0, x1, y1)


@pytest.mark.parametrize("factor", [0.25, 0.37, 0.5, 0.8, 1.0, 1.7, 3.0])
def test_windowed_source_equals_the_in_memory_path(factor):
    im = _image(523, 611, seed=2)
    memory, windowed = ArraySource(im), _Spy(im, band_pixels=5000)
    cw, ch = _canvas(im.shape, factor)
    rng = np.random.default_rng(3)
    boxes = [(0, 0, cw, ch)]
    for _ in range(6):
        x1, x2 = sorted(rng.choice(cw + 1, 2, replace=False))
        y1, y2 = sorted(rng.choice(ch + 1, 2, replace=False))
        boxes.append((int(x1), int(y1), int(x2), int(y2)))
    for box in boxes:
        a = memory.canvas_window(box, factor).astype(int)
        b = windowed.canvas_window(box, factor).astype(int)
        assert np.abs(a - b).max() <= (0 if factor >= 1 else 1), box
    # banding bounds every read (a band is at least one output row: its footprint)
    if factor < 1:
        worst = max((x1 - x0) * (y1 - y0) for _, x0, y0, x1, y1 in windowed.reads)
        assert worst <= max(5000, 611 * (int(np.ceil(1 / factor)) + 2))


def test_banding_does_not_change_the_result():
    im = _image(400, 700, seed=4)
    box = (3, 5, 250, 140)
    one = ArrayWindowSource(im, band_pixels=10**9).canvas_window(box, 0.37).astype(int)
    many = ArrayWindowSource(im, band_pixels=700).canvas_window(box, 0.37).astype(int)
    assert np.abs(one - many).max() <= 1  # float sums in another order: a .5 may round away
    assert (one != many).mean() < 1e-3


def test_a_shrunken_canvas_reads_the_coarsest_level_that_is_large_enough():
    im = _image(800, 1000, seed=5)
    half = np.full((400, 500, 3), 7, np.uint8)  # marks level 1
    quarter = np.full((200, 250, 3), 9, np.uint8)  # marks level 2
    src = _Spy([im, half, quarter])
    assert src.level_for((400, 500)) == 1 and src.level_for((401, 500)) == 0
    assert src.level_for((100, 100)) == 2
    assert (src.canvas_window((0, 0, 500, 400), 0.5) == 7).all()  # canvas 500x400: level 1
    assert (src.canvas_window((0, 0, 100, 80), 0.1) == 9).all()
    window = src.canvas_window((10, 10, 50, 50), 0.6)  # canvas 600x480: level 0 only
    np.testing.assert_allclose(window, cut_chip(im, (10, 10, 50, 50), 0.6), atol=1)
    assert {r[0] for r in src.reads} == {0, 1, 2}
    assert (src.canvas_window((0, 0, 20, 20), 2.0) == cut_chip(im, (0, 0, 20, 20), 2.0)).all()
    assert src.reads[-1][0] == 0  # enlarging always samples level 0


def test_channels_and_dtypes_of_array_levels():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    src = ArrayWindowSource(grey)
    np.testing.assert_array_equal(
        src.canvas_window((0, 0, 4, 3), 1.0), np.repeat(grey[..., None], 3, 2)
    )
    rgba = np.dstack([_image(3, 4), np.zeros((3, 4), np.uint8)])
    np.testing.assert_array_equal(
        ArrayWindowSource(rgba).canvas_window((0, 0, 4, 3), 1.0), rgba[..., :3]
    )
    with pytest.raises(ImageSourceError, match="uint16"):
        ArrayWindowSource(grey.astype(np.uint16), name="big.npy").canvas_window((0, 0, 4, 3), 1.0)
    with pytest.raises(ImageSourceError, match="levels grow"):
        ArrayWindowSource([grey, np.zeros((4, 4), np.uint8)])


def test_a_source_must_implement_its_reads():
    from sniper.sources import ImageSource, WindowedSource

    with pytest.raises(TypeError, match="abstract"):
        ImageSource()
    with pytest.raises(TypeError, match="read_region"):
        WindowedSource([(4, 4)], "x")
