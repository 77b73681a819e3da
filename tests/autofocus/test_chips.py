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


def _brute_merge(rects: np.ndarray) -> list[list[float]]:
    """The rule itself: union any overlapping pair until none overlaps (quadratic)."""
    boxes = [list(map(float, r)) for r in rects]
    changed = True
    while changed:
        changed = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1]):
                    boxes[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                    del boxes[j]
                    changed = True
                    break
            if changed:
                break
    return sorted(boxes, key=lambda r: (r[1], r[0], r[3], r[2]))


def test_merge_overlapping_equals_the_pairwise_rule_on_random_sets() -> None:
    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(1, 40))
        xy = rng.uniform(-50, 400, (n, 2))
        wh = rng.uniform(0, 120 if trial % 2 else 30, (n, 2))
        rects = np.concatenate([xy, xy + wh], 1).astype(np.float32)
        assert merge_overlapping(rects).tolist() == _brute_merge(rects)


def test_merge_overlapping_scales_to_many_rectangles() -> None:
    # 40,000 disjoint 2 x 2 squares (every other cell of a 400 x 400 grid): all kept
    ys, xs = np.mgrid[0:400:2, 0:400:2].reshape(2, -1).astype(np.float32)
    squares = np.stack([xs, ys, xs + 1, ys + 1], 1)
    out = merge_overlapping(squares)
    assert len(out) == 40_000 and out[0].tolist() == [0, 0, 1, 1]
    assert out[-1].tolist() == [398, 398, 399, 399]
    # grown to 3 x 3 they overlap their neighbours: one union of everything
    grown = squares + np.array([0, 0, 2, 2], np.float32)
    assert merge_overlapping(grown).tolist() == [[0, 0, 401, 401]]
    # a staircase where each union reaches the next rectangle only (the cost grows with the
    # area the union covers in buckets, here 500 x 500 px of 2 px buckets)
    k = np.arange(500, dtype=np.float32)
    stairs = np.stack([k, k, k + 2, k + 2], 1)[::-1]
    assert merge_overlapping(stairs).tolist() == [[0, 0, 501, 501]]
