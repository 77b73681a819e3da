"""autofocus.focus_stats on hand-made boxes and chips: which boxes need a finer scale, which
are responsible and covered, exact union areas, missing and empty rates, accumulation."""

from __future__ import annotations

import numpy as np
import pytest

from autofocus import focus_stats
from autofocus.focus_stats import (
    FocusStats,
    TransitionCounts,
    boxes_inside,
    needs_finer_scale,
    transition_counts,
    union_area,
)

INF = float("inf")
RANGES = [(75.0, INF), (32.0, 180.0), (0.0, 75.0)]  # the paper's cascade ranges


def _square(x: float, y: float, side: float) -> list[float]:
    return [x, y, x + side, y + side]


def test_needs_finer_scale_excludes_boxes_a_coarser_scale_keeps() -> None:
    boxes = [_square(0, 0, side) for side in (10, 31, 32, 50, 74, 75, 100, 179, 180, 300)]
    # transition 0: in [32, 180) or [0, 75) and not in [75, inf): sizes < 75
    assert needs_finer_scale(np.array(boxes), RANGES, 0).tolist() == [
        *[True] * 5,
        *[False] * 5,
    ]
    # transition 1: in [0, 75) and in neither [75, inf) nor [32, 180): sizes < 32
    assert needs_finer_scale(np.array(boxes), RANGES, 1).tolist() == [True, True] + [False] * 8
    with pytest.raises(ValueError, match="transition s = 2"):
        needs_finer_scale(np.array(boxes), RANGES, 2)


def test_boxes_inside_needs_one_window_to_hold_the_whole_box() -> None:
    windows = np.array([[0, 0, 100, 100], [100, 0, 200, 100]], float)
    boxes = np.array(
        [
            [10, 10, 100, 100],  # touches the first window's edges: inside
            [90, 10, 110, 20],  # spans both windows: in neither
            [150, 50, 201, 60],  # 1 px out of the second, right
            [-1, 20, 30, 40],  # 1 px out of the first, left
            [150, 50, 160, 101],  # 1 px out of the second, bottom
            [150, -1, 160, 10],  # 1 px out of the second, top
        ],
        float,
    )
    assert boxes_inside(boxes, windows).tolist() == [True, False, False, False, False, False]
    assert boxes_inside(boxes, windows, tolerance=1.0).tolist() == [True, False, *[True] * 4]
    # a negative tolerance demands a margin inside the window
    assert boxes_inside(boxes, windows, tolerance=-1.0).tolist() == [False] * 6
    assert boxes_inside(boxes, windows[::-1], tolerance=-1.0).tolist() == [False] * 6
    assert boxes_inside(boxes, np.zeros((0, 4))).tolist() == [False] * 6


def test_union_area_is_exact_for_overlapping_rectangles() -> None:
    assert union_area(np.array([[0, 0, 10, 10], [5, 5, 15, 15]])) == 175.0
    assert union_area(np.array([[0, 0, 10, 10], [0, 0, 10, 10], [2, 2, 3, 3]])) == 100.0
    assert union_area(np.array([[0, 0, 10, 10], [5, 5, 15, 15]]), within=[[0, 0, 6, 20]]) == 65.0
    assert union_area(np.array([[0, 0, 0, 10]])) == 0.0  # empty rectangles add nothing
    assert union_area(np.zeros((0, 4))) == 0.0


def test_union_area_matches_a_pixel_raster(monkeypatch) -> None:
    rng = np.random.default_rng(3)
    rects = rng.integers(0, 60, (40, 4)).astype(float)
    rects[:, 2:] = rects[:, :2] + rng.integers(1, 25, (40, 2))
    within = np.array([[3, 4, 40, 33], [20, 20, 70, 60]], float)
    covered, chips = np.zeros((90, 90), bool), np.zeros((90, 90), bool)
    for x1, y1, x2, y2 in rects.astype(int):
        covered[y1:y2, x1:x2] = True
    for x1, y1, x2, y2 in within.astype(int):
        chips[y1:y2, x1:x2] = True
    expected = (covered.sum(), (covered & chips).sum())
    assert (union_area(rects), union_area(rects, within=within)) == expected
    monkeypatch.setattr(focus_stats, "_BLOCK_CELLS", 5)  # several bands of rows
    assert (union_area(rects), union_area(rects, within=within)) == expected


def test_transition_counts_on_a_hand_made_image() -> None:
    boxes = np.array(
        [
            _square(10, 10, 20),  # size 20: needs a finer scale, inside chip A
            _square(300, 300, 40),  # size 40: needs one, inside no chip (missed)
            _square(90, 10, 20),  # size 20: half out of chip A (missed)
            _square(500, 500, 100),  # size 100: kept at scale 0, not responsible
            _square(900, 900, 30),  # size 30: outside the reached window (not responsible)
        ],
        float,
    )
    reached = np.array([[0, 0, 800, 800]], float)
    # A; B on box 4; C on box 5 (which needs a finer scale but lies outside the reached
    # window: not responsible, yet chip C is not empty where it is)
    chips = np.array([[0, 0, 100, 100], [480, 480, 620, 620], [880, 880, 940, 940]], float)
    c = transition_counts(boxes, RANGES, 0, reached, chips)
    assert (c.responsible, c.missed) == (3, 2)
    assert c.missing_rate == pytest.approx(2 / 3)
    area = 100 * 100 + 140 * 140 + 60 * 60
    assert c.chip_area == area
    # in chip A: box 1 (400 px) and the 10 x 20 part of box 3 inside it; box 4 does not
    # need a finer scale, so chip B is all empty; in chip C box 5 (900 px)
    assert c.empty_area == area - 400 - 200 - 900
    assert c.empty_rate == pytest.approx(1 - 1500 / area)


def test_counts_without_boxes_or_chips_are_zero_rates() -> None:
    none = transition_counts(np.zeros((0, 4)), RANGES, 0, [[0, 0, 10, 10]], np.zeros((0, 4)))
    assert (none.missing_rate, none.empty_rate, none.coverage) == (0.0, 0.0, 1.0)
    only_chip = transition_counts(np.zeros((0, 4)), RANGES, 0, [[0, 0, 10, 10]], [[0, 0, 4, 5]])
    assert only_chip.empty_rate == 1.0 and only_chip.chip_area == 20.0


def test_focus_stats_sums_images_and_transitions() -> None:
    stats = FocusStats(RANGES)
    record = {"boxes": np.array([_square(10, 10, 20), _square(300, 300, 20)], float)}
    image = np.array([[0.0, 0.0, 1000.0, 1000.0]], np.float32)
    chip1 = np.array([[0.0, 0.0, 100.0, 100.0]], np.float32)  # holds the first box only
    chip2 = np.array([[5.0, 5.0, 35.0, 35.0]], np.float32)  # holds it too
    stats.add(record, {"chips_per_scale": [image, chip1, chip2]})
    stats.add(record, {"chips_per_scale": [image, np.zeros((0, 4)), np.zeros((0, 4))]})
    t0, t1 = stats.counts
    assert (t0.responsible, t0.missed) == (4, 3)  # two images, one box covered
    assert (t1.responsible, t1.missed) == (1, 0)  # only the covered box reached scale 1
    summary = stats.summary()
    assert summary["missing_rate_t0"] == 0.75 and summary["missing_rate_t1"] == 0.0
    assert summary["empty_rate_t0"] == pytest.approx(1 - 400 / 10000)
    assert summary["empty_rate_t1"] == pytest.approx(1 - 400 / 900)
    assert "t0: missing 0.7500 (3/4 boxes)" in stats.describe()
    other = FocusStats(RANGES)
    other.merge([stats.counts, stats.counts])
    assert other.counts[0] == TransitionCounts(8, 6, 2 * 10000.0, 2 * 9600.0)
    with pytest.raises(ValueError, match="chips_per_scale has 2 scales"):
        stats.add(record, {"chips_per_scale": [image, chip1]})
