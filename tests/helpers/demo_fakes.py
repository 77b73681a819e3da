"""Shared inputs of the demo / visualizer output tests: tiny random-weight model configs and
random images (tests/sniper/test_demo_outputs*.py)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

TINY = [
    "MODEL.BACKBONE.NAME",
    "mobilenet_v2_fpn",
    "MODEL.FPN.OUT_CHANNELS",
    "16",
    "MODEL.ROI_BOX_HEAD.FC_DIM",
    "32",
    "MODEL.NUM_CLASSES",
    "3",
    "MODEL.RPN.PRE_NMS_TOPK_TEST",
    "100",
    "MODEL.RPN.POST_NMS_TOPK_TEST",
    "100",
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
    "0.0",
    "SNIPER.TEST_SCALES",
    "[1.5, 1.0, [64, 96]]",
    "DATASETS.TEST",
    "()",
]
AUTOFOCUS_TINY = [
    "MODEL.META_ARCHITECTURE",
    "AutoFocusRCNN",
    *TINY[:-4],
    "AUTOFOCUS.HEAD_CHANNELS",
    "8",
    "AUTOFOCUS.SCALES",
    "[[64, 64], 1.0]",
    "AUTOFOCUS.VALID_RANGES",
    "[[40, -1], [-1, 40]]",
    "AUTOFOCUS.THRESHOLDS",
    "[0.0]",
    "AUTOFOCUS.DILATIONS",
    "[1]",
    "AUTOFOCUS.MIN_SIZES",
    "[2]",
]


def write_images(folder: Path, names: list[str]) -> None:
    folder.mkdir(exist_ok=True)
    for i, name in enumerate(names):
        image = np.random.default_rng(i).integers(0, 256, (64, 80, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / name), image)
