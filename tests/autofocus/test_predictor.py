"""AutoFocusPredictor: a tiny random AutoFocusRCNN end to end, numpy outputs, overrides."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autofocus.config import setup_cfg
from autofocus.predictor import AutoFocusPredictor

TINY = [
    "MODEL.META_ARCHITECTURE",
    "AutoFocusRCNN",
    "MODEL.BACKBONE.NAME",
    "mobilenet_v2_fpn",
    "MODEL.FPN.OUT_CHANNELS",
    "16",
    "MODEL.ROI_BOX_HEAD.FC_DIM",
    "32",
    "MODEL.NUM_CLASSES",
    "3",
    "MODEL.RPN.POST_NMS_TOPK_TEST",  # >= TEST.MAX_DETS_PER_IMAGE
    "100",
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
    "0.0",
    "AUTOFOCUS.HEAD_CHANNELS",
    "8",
    "AUTOFOCUS.SCALES",
    "[[64, 64], 1.0]",
    "AUTOFOCUS.VALID_RANGES",
    "[[-1, -1], [-1, -1]]",
    "AUTOFOCUS.THRESHOLDS",
    "[0.0]",
    "AUTOFOCUS.DILATIONS",
    "[1]",
    "AUTOFOCUS.MIN_SIZES",
    "[1]",
]


@pytest.fixture(scope="module")
def predictor() -> AutoFocusPredictor:
    torch.manual_seed(0)
    return AutoFocusPredictor(setup_cfg("", TINY))


def test_outputs_are_numpy_in_image_pixels(predictor) -> None:
    image = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    out = predictor(image)
    boxes = out["boxes"]
    assert boxes.dtype == np.float32 and out["scores"].dtype == np.float32
    assert out["classes"].dtype == np.int64 and len(boxes) == len(out["classes"]) > 0
    assert (boxes[:, 2] <= 128).all() and (boxes[:, 3] <= 96).all()
    # threshold 0: the whole image is one FocusChip at 1.0x
    assert out["pixels_per_scale"] == [48 * 64, 96 * 128]
    assert out["chips_per_scale"][1].tolist() == [[0.0, 0.0, 128.0, 96.0]]
    assert out["pixel_fraction"] == pytest.approx(1.0)


def test_per_call_threshold_override_stops_early(predictor) -> None:
    image = np.zeros((96, 128, 3), np.uint8)
    out = predictor(image, thresholds=(1.0,))  # softmax never reaches 1: no FocusPixel
    assert out["pixels_per_scale"] == [48 * 64, 0]
    assert out["pixel_fraction"] == pytest.approx(48 * 64 / (48 * 64 + 96 * 128))


def test_bad_images_are_named(predictor) -> None:
    with pytest.raises(ValueError, match="image 0: expected dtype uint8"):
        predictor(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"image 1: expected shape \(H, W, 3\)"):
        predictor.predict_batch([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)])
    with pytest.raises(ValueError, match="input_format"):
        AutoFocusPredictor(setup_cfg("", TINY), input_format="YUV")
