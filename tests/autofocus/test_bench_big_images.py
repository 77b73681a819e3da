"""The synthetic big images of ``benchmarks/big_tiff.py`` and the scoring of
``benchmarks/bench_big_images.py``."""

from __future__ import annotations

import numpy as np
import pytest
from bench_fakes import load_benchmark

tifffile = pytest.importorskip("tifffile")
big_tiff = load_benchmark("big_tiff")
bench = load_benchmark("bench_big_images")


def test_scene_cells_ground_truth_and_pyramid_round_trip(tmp_path):
    scene = big_tiff.BigScene(side=2048, cell=1024, scenes=1, seed=3)
    (index,) = scene.scene_cells
    ox, oy = (index % 2) * 1024, (index // 2) * 1024
    boxes, classes = scene.ground_truth()
    from sniper.data.synthetic_render import render_scene

    image, b, c = render_scene(scene.scene_cells[index], 1024)
    np.testing.assert_array_equal(boxes, b + np.array([ox, oy, ox, oy], np.float32))
    np.testing.assert_array_equal(classes, c)
    np.testing.assert_array_equal(scene.region(0, ox, oy, ox + 1024, oy + 1024), image)
    path = str(tmp_path / "big.tif")
    meta = big_tiff.write_big_tiff(path, 2048, cell=1024, scenes=1, seed=3)
    assert meta["boxes"] == boxes.tolist()
    with tifffile.TiffFile(path) as tif:
        levels = tif.series[0].levels
        assert [lv.shape for lv in levels] == [(2048, 2048, 3), (1024, 1024, 3)]
        np.testing.assert_array_equal(levels[0].asarray(), scene.region(0, 0, 0, 2048, 2048))
        np.testing.assert_array_equal(levels[1].asarray(), scene.region(1, 0, 0, 1024, 1024))
    # the cached meta is reused, not rewritten
    stamp = (tmp_path / "big.tif").stat().st_mtime_ns
    big_tiff.write_big_tiff(path, 2048, cell=1024, scenes=1, seed=3)
    assert (tmp_path / "big.tif").stat().st_mtime_ns == stamp


def test_score_is_100_on_the_ground_truth_and_0_without_detections():
    meta = {"side": 1000, "boxes": [[10, 10, 110, 60], [500, 500, 700, 900]], "classes": [3, 7]}
    boxes = np.asarray(meta["boxes"], np.float32)
    perfect = bench.score(meta, boxes, np.array([0.9, 0.8]), np.array([3, 7]))
    assert perfect["AP"] == pytest.approx(100.0) and perfect["AP50"] == pytest.approx(100.0)
    wrong = bench.score(meta, boxes, np.array([0.9, 0.8]), np.array([7, 3]))  # classes swapped
    assert wrong["AP"] == pytest.approx(0.0)
    assert bench.score(meta, np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))["AP"] == 0.0


def test_big_image_opts_scale_every_size_by_the_content_scale():
    opts = dict(zip(*[iter(bench.big_image_opts("w.pth"))] * 2, strict=True))
    assert opts["AUTOFOCUS.SCALES"] == "[0.125, 0.25, 0.5]"
    assert opts["AUTOFOCUS.VALID_RANGES"] == "[[320, -1], [80, 768], [-1, 224]]"
    assert opts["MODEL.WEIGHTS"] == "w.pth" and opts["AUTOFOCUS.BORDER_DELTA"] == "40.0"
