"""Mask patches through the AutoFocus cascade and both predictors: each surviving detection
keeps its own patch (FocusChips, border cut, chip tiling, cross-scale merge); predictors
return numpy patches, frames and RLE masks only for a model with a mask head."""

from __future__ import annotations

import numpy as np
import pycocotools.mask as mask_util
import pytest

from autofocus.cascade import AutoFocusCascade
from autofocus.config import setup_cfg as autofocus_cfg
from autofocus.params import CascadeParams
from autofocus.predictor import AutoFocusPredictor
from sniper.config import setup_cfg
from sniper.inference.mask_patches import patches_to_rle
from sniper.inference.predictor import SniperPredictor
from tests.helpers.mask_fakes import MaskFakeDetector, assert_own_patches, spy_on_detections


def _scene() -> np.ndarray:
    """512 x 512: a hot (red) area with green objects inside, on and off its edges."""
    image = np.zeros((512, 512, 3), np.uint8)
    image[128:352, 96:320, 0] = 255
    for x1, y1, x2, y2 in [
        (130, 140, 150, 156),
        (200, 200, 260, 250),
        (100, 300, 140, 360),
        (300, 130, 312, 142),
        (400, 400, 460, 470),
        (10, 10, 90, 60),
    ]:
        image[y1:y2, x1:x2, 1] = 255
    yy, xx = np.mgrid[:512, :512]
    image[((xx - 170) ** 2 + (yy - 300) ** 2) < 18**2, 1] = 255
    return image


def _params() -> CascadeParams:
    return CascadeParams(
        scales=([256, 256], 1.0, 2.0),
        valid_ranges=([-1, -1], [-1, -1], [-1, -1]),
        thresholds=(0.5, 0.5),
        dilations=(1, 1),
        min_sizes=(2, 2),
        border_delta=10.0,
    )


@pytest.mark.parametrize("merge,tiled", [("soft", False), ("nms", False), ("nms", True)])
def test_cascade_survivors_keep_their_own_patches(merge, tiled) -> None:
    model = MaskFakeDetector(focus=True)
    tiling = {"max_pixels": 128 * 128, "tile_size": 128, "tile_overlap": 64} if tiled else {}
    cascade = AutoFocusCascade(model, _params(), merge=merge, top_k=0, **tiling)
    table = spy_on_detections(cascade)
    (out,) = cascade([_scene()])
    assert out["pixels_per_scale"][1] > 0 and out["pixels_per_scale"][2] > 0
    assert 0 < len(out["boxes"]) < model.detections
    assert set(out["classes"].tolist()) == {0, 1}
    assert_own_patches(out, table, (512, 512), decayed=merge == "soft")


def test_sniper_predictor_returns_numpy_masks() -> None:
    class FakePredictor(SniperPredictor):
        def build_model(self, cfg):
            return MaskFakeDetector()

    cfg = setup_cfg(
        "",
        [
            "SNIPER.TEST_SCALES",
            "[1.0, 2.0]",
            "SNIPER.TEST_VALID_RANGES",
            "[[-1, -1], [-1, -1]]",
            "MODEL.DEVICE",
            "cpu",
        ],
    )
    image = _scene()
    out = FakePredictor(cfg, input_format="RGB")(image)
    n = len(out["boxes"])
    assert n > 0 and isinstance(out["boxes"], np.ndarray)
    assert out["mask_patches"].shape == (n, 28, 28) and out["mask_patches"].dtype == np.float32
    assert isinstance(out["mask_boxes"], np.ndarray) and out["mask_boxes"].shape == (n, 4)
    assert [m["size"] for m in out["masks"]] == [[512, 512]] * n
    assert all(isinstance(m["counts"], str) for m in out["masks"])
    # each RLE's bounding box is within its detection's box (pycocotools reads it)
    for box, rle in zip(out["boxes"], out["masks"], strict=True):
        x, y, w, h = mask_util.toBbox(rle)
        assert box[0] - 1 <= x and x + w <= box[2] + 1 and box[1] - 1 <= y and y + h <= box[3] + 1
    batch = FakePredictor(cfg, input_format="RGB").predict_batch([image, image[:200]])
    assert [len(b["masks"]) for b in batch] == [len(b["boxes"]) for b in batch]
    for b, size in zip(batch, [(512, 512), (200, 512)], strict=True):
        assert b["masks"] == patches_to_rle(b["mask_patches"], b["mask_boxes"], size)


def test_autofocus_predictor_returns_masks() -> None:
    class FakePredictor(AutoFocusPredictor):
        def build_model(self, cfg):
            return MaskFakeDetector(focus=True)

    cfg = autofocus_cfg(
        "",
        [
            "AUTOFOCUS.SCALES",
            "[[256, 256], 1.0]",
            "AUTOFOCUS.VALID_RANGES",
            "[[-1, -1], [-1, -1]]",
            "AUTOFOCUS.THRESHOLDS",
            "[0.5]",
            "AUTOFOCUS.DILATIONS",
            "[1]",
            "AUTOFOCUS.MIN_SIZES",
            "[2]",
            "MODEL.DEVICE",
            "cpu",
        ],
    )
    out = FakePredictor(cfg, input_format="RGB")(_scene())
    n = len(out["boxes"])
    assert n > 0 and out["mask_patches"].shape == (n, 28, 28) and len(out["masks"]) == n
    assert out["chips_per_scale"][1].shape[0] >= 1
    decoded = mask_util.decode(out["masks"])
    assert decoded.shape == (512, 512, n) and (decoded.reshape(-1, n).sum(0) > 0).all()
