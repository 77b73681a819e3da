"""Chips and boxes are drawn where they are, in their scale's colour."""

from __future__ import annotations

import numpy as np

from sniper.visualization import NOT_VALID_COLOR, draw_chips, scale_color, valid_scale_of_boxes


def test_valid_scale_of_boxes():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 50, 50], [0, 0, 200, 200]], np.float32)
    assert valid_scale_of_boxes(boxes, [[-1, 40], [30, 100]]).tolist() == [0, 1, -1]
    assert valid_scale_of_boxes(boxes, [[60, -1], [-1, 20]]).tolist() == [1, -1, 0]


def test_draw_chips_colours_and_positions():
    image = np.zeros((200, 300, 3), np.uint8)
    chips = np.array([[10, 20, 110, 120], [150, 50, 290, 190]], np.float32)
    boxes = np.array([[30, 40, 50, 60], [160, 60, 280, 180]], np.float32)
    out = draw_chips(image, chips, np.array([0, 1]), boxes, [[-1, 40], [30, 50]])
    assert (image == 0).all()  # input untouched
    assert tuple(out[20, 60]) == scale_color(0)  # top edge of chip 0
    assert tuple(out[120 - 1, 60]) == scale_color(0)  # bottom edge (exclusive end - 1)
    assert tuple(out[100, 150]) == scale_color(1)  # left edge of chip 1
    assert tuple(out[50, 30]) == scale_color(0)  # GT box 0: size 20, valid at scale 0
    assert tuple(out[120, 160]) == NOT_VALID_COLOR  # GT box 1: size 120, valid nowhere
    assert tuple(out[100, 60]) == (0, 0, 0)  # inside a chip: untouched
