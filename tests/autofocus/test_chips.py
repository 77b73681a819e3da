"""FocusChip geometry: outward rounding onto a canvas, merging overlaps (the inner-edge cut
is the runner's: tests/sniper/test_runner.py)."""

from __future__ import annotations

import numpy as np

from autofocus.chips import canvas_window, merge_overlapping


def test_canvas_window_rounds_outward_and_clips() -> None:
    assert canvas_window([352, 224, 480, 352], 1.0, (1024, 1024)) == (352, 224, 480, 352)
    assert canvas_window([10.2, 20.7, 30.1, 40.0], 2.0, (100, 100)) == (20, 41, 61, 80)
    assert canvas_window([0, 0, 1024, 1024], 0.5, (512, 512)) == (0, 0, 512, 512)
    assert canvas_window([900, 900, 1100, 1000], 1.0, (950, 1000)) == (900, 900, 1000, 950)
    # products a hair above an integer are not rounded up a whole pixel
    assert canvas_window([0.1 * 3, 0, 0.7 * 3, 1], 10.0, (50, 50))[0] == 3
    assert canvas_window([5, 5, 5, 5], 1.0, (10, 10)) == (5, 5, 6, 6)  # at least 1 px


def test_merge_overlapping_until_nothing_overlaps() -> None:
    rects = np.array(
        [[0, 0, 10, 10], [20, 0, 30, 10], [8, 8, 22, 12], [40, 40, 50, 50], [10, 20, 20, 30]],
        np.float32,
    )
    # the third joins the first two; the union [0, 0, 30, 12] does not reach y 20
    assert merge_overlapping(rects).tolist() == [[0, 0, 30, 12], [10, 20, 20, 30], [40, 40, 50, 50]]
    chain = np.array([[0, 0, 10, 10], [15, 0, 25, 10], [5, 5, 20, 8]], np.float32)
    assert merge_overlapping(chain).tolist() == [[0, 0, 25, 10]]
    touching = np.array([[0, 0, 10, 10], [10, 0, 20, 10]], np.float32)
    assert merge_overlapping(touching).tolist() == touching.tolist()
    assert merge_overlapping(np.zeros((0, 4))).shape == (0, 4)
