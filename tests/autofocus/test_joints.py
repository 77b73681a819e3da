"""Joints of AutoFocus, each pinned by exact chips or labels (issue 9, item 5).

* FocusChips of one image that come from different crops and overlap are merged;
* FocusPixel labels use the unclipped object sizes (`focus_sizes`), not the clipped boxes.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from autofocus.cascade import AutoFocusCascade
from autofocus.data import FocusChipMapper
from autofocus.params import CascadeParams
from autofocus.targets import focus_pixel_labels_batch
from chipping import focus_chips, focus_chips_to_image
from sniper.structures import ChipSpec

# ---------------------------------------------------------------------------------------------
# 3. Overlapping FocusChips from two crops of one image are merged into their union.
#
# Image 1024 x 1024, scales: long side 512 (factor 0.5, cells of 32 image px), 0.8 (cells of
# 20 image px), 2.0. Red (FocusPixel) blocks at x [0, 64) and [160, 224), y [0, 64):
# * scale 0: two components, cells x [0, 2) and [5, 7), grown to 4 x 4 cells: [0, 4) and
#   [4, 8), which touch without overlapping -> two chips [0, 128] and [128, 256] (image px);
# * scale 1: their canvas windows (rounded outward at 0.8) are [0, 103] and [102, 205], each
#   a 7 x 7 cell map; min size 7 grows each crop's FocusChip to its whole map, which reaches
#   past the crop: [0, 140] and [127.5, 267.5] (image px) overlap by 12.5 px;
# * scale 2 must process their union [0, 267.5] x [0, 140] once.


def _merge_params() -> CascadeParams:
    return CascadeParams(
        scales=([512, 512], 0.8, 2.0),
        valid_ranges=([75, -1], [32, 180], [-1, 75]),
        thresholds=(0.5, 0.5),
        dilations=(1, 1),
        min_sizes=(4, 7),
        border_delta=10.0,
    )


def test_overlapping_focus_chips_of_two_crops_are_merged(fake_model) -> None:
    image = np.zeros((1024, 1024, 3), np.uint8)
    image[0:64, 0:64, 0] = 255
    image[0:64, 160:224, 0] = 255
    model = fake_model()
    out = AutoFocusCascade(model, _merge_params(), merge="soft", top_k=100)([image])[0]
    chips = out["chips_per_scale"]
    assert chips[0].tolist() == [[0.0, 0.0, 1024.0, 1024.0]]
    assert chips[1].tolist() == [[0.0, 0.0, 128.75, 128.75], [127.5, 0.0, 256.25, 128.75]]
    # What each scale-1 crop asks for on its own (its FocusMap through the public planner).
    own = []
    for focus_map in out["focus_maps"][1]:
        rects = focus_chips(focus_map.prob, 0.5, 1, 7)
        own.append(
            focus_chips_to_image(
                rects, focus_map.stride, focus_map.factor, (1024, 1024), focus_map.offset
            ).tolist()
        )
    assert own == [[[0.0, 0.0, 140.0, 140.0]], [[127.5, 0.0, 267.5, 140.0]]]
    assert chips[2].tolist() == [[0.0, 0.0, 267.5, 140.0]]
    assert model.calls == [[(512, 512)], [(103, 103), (103, 103)], [(280, 535)]]
    assert out["pixels_per_scale"] == [512 * 512, 2 * 103 * 103, 280 * 535]


# ---------------------------------------------------------------------------------------------
# 4. FocusPixel labels follow the objects' unclipped sizes.
#
# A 64 px chip at factor 1 over the top-left of a 128 x 128 image; cells of 16 px; bands
# a = 8, b = 24, c = 48 (positive in (8, 24), ignore <= 8 or in [24, 48)).
CUT = [48.0, 8.0, 80.0, 40.0]  # size 32 (ignore); clipped to 16 x 32, size 22.6 (positive)
SMALL = [4.0, 50.0, 20.0, 62.0]  # size 13.9 (positive), inside the chip
EDGE = [60.0, 44.0, 76.0, 60.0]  # size 16 (positive); clipped to 4 x 16, size 8 (ignore)
AWAY = [100.0, 100.0, 120.0, 120.0]  # outside the chip


def _focus_target(tmp_path, flip: bool) -> dict:
    path = tmp_path / "image.png"
    cv2.imwrite(str(path), np.full((128, 128, 3), 90, np.uint8))
    boxes = np.array([CUT, SMALL, EDGE, AWAY], np.float32)
    record = dict(
        file_name=str(path), height=128, width=128, boxes=boxes, classes=np.zeros(4, np.int64)
    )
    spec = ChipSpec(
        image_index=0,
        file_name=str(path),
        image_size=(128, 128),
        scale_index=0,
        factor=1.0,
        canvas_box=(0, 0, 64, 64),
        chip_size=64,
        boxes=np.array([SMALL], np.float32),
        classes=np.zeros(1, np.int64),
        ignore_boxes=np.array([[48, 8, 64, 40], [60, 44, 64, 60]], np.float32),
        valid_range=(0.0, 30.0),
        flip=flip,
    )
    ((_, target),) = FocusChipMapper.from_records([record])([spec])
    return target


EXPECTED = [
    [0, 0, 0, -1],
    [0, 0, 0, -1],
    [0, 0, 0, 1],  # CUT's ignore loses to EDGE's positive
    [1, 1, 0, 1],
]


def test_focus_labels_use_the_unclipped_sizes(tmp_path) -> None:
    target = _focus_target(tmp_path, flip=False)
    assert target["focus_boxes"].tolist() == [
        [48.0, 8.0, 64.0, 40.0],
        SMALL,
        [60.0, 44.0, 64.0, 60.0],
    ]
    assert torch.allclose(
        target["focus_sizes"], torch.tensor([32.0, float(np.sqrt(16 * 12)), 16.0])
    )
    labels = focus_pixel_labels_batch([target], (4, 4), 16, 8.0, 24.0, 48.0)
    assert labels.tolist() == [EXPECTED]


def test_focus_labels_of_a_flipped_chip_are_mirrored(tmp_path) -> None:
    target = _focus_target(tmp_path, flip=True)
    assert target["focus_boxes"].tolist() == [
        [0.0, 8.0, 16.0, 40.0],
        [44.0, 50.0, 60.0, 62.0],
        [0.0, 44.0, 4.0, 60.0],
    ]
    labels = focus_pixel_labels_batch([target], (4, 4), 16, 8.0, 24.0, 48.0)
    assert labels.tolist() == [[row[::-1] for row in EXPECTED]]
