"""FocusChips merge and dilation: near-linear versions against brute-force oracles written here.

The merge of overlapping rectangles into their union has a unique fixed point, so the fast
merge (C++ and the numpy twin) must return exactly the set a quadratic all-pairs merge gives.
"""

from __future__ import annotations

import numpy as np
import pytest

from chipping import _reference, planner

BACKENDS = ["compiled", "reference"]


def brute_merge(rects: list[list[int]]) -> list[list[int]]:
    """All-pairs merge until no pair overlaps (positive-area intersection)."""
    rects = [list(r) for r in rects]
    changed = True
    while changed:
        changed = False
        for i in range(len(rects)):
            for j in range(i + 1, len(rects)):
                a, b = rects[i], rects[j]
                if min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1]):
                    rects[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                    del rects[j]
                    changed = True
                    break
            if changed:
                break
    return sorted(rects, key=lambda r: (r[1], r[0], r[3], r[2]))


def brute_dilate(on: np.ndarray, dilation: int) -> np.ndarray:
    """Each on cell paints its (d-1)//2 up/left, d//2 down/right square."""
    if dilation <= 1:
        return on
    before, after = (dilation - 1) // 2, dilation // 2
    h, w = on.shape
    out = np.zeros_like(on)
    for y, x in np.argwhere(on):
        out[max(0, y - before) : y + after + 1, max(0, x - before) : x + after + 1] = True
    return out


def brute_focus_chips(prob: np.ndarray, threshold: float, dilation: int, min_size: int):
    on = brute_dilate(prob.astype(np.float64) >= threshold, dilation)
    h, w = on.shape
    rects = []
    for x1, y1, x2, y2 in _reference._component_boxes(on):
        x1, x2 = _reference._grow(x1, x2, min_size, w)
        y1, y2 = _reference._grow(y1, y2, min_size, h)
        rects.append([x1, y1, x2, y2])
    return brute_merge(rects)


def random_rects(rng: np.random.Generator, h: int, w: int, n: int, max_side: int) -> list:
    x1, y1 = rng.integers(0, w, n), rng.integers(0, h, n)
    x2 = np.minimum(x1 + rng.integers(1, max_side + 1, n), w)
    y2 = np.minimum(y1 + rng.integers(1, max_side + 1, n), h)
    return np.stack([x1, y1, x2, y2], axis=1).tolist()


def staircase(n: int) -> list[list[int]]:
    """A diagonal chain: each square overlaps the next; given last to first."""
    return [[k, k, k + 2, k + 2] for k in range(n)][::-1]


def hull_chain() -> list[list[int]]:
    """Each rectangle overlaps only the union of the ones before it (not any of them)."""
    return [[0, 0, 2, 2], [1, 1, 3, 3], [2, 0, 4, 1], [3, 2, 5, 4], [4, 0, 6, 1], [0, 5, 1, 7]]


def test_merge_agrees_with_brute_force_on_random_sets():
    rng = np.random.default_rng(0)
    for trial in range(300):
        h, w = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        rects = random_rects(rng, h, w, int(rng.integers(0, 40)), int(rng.integers(1, 12)))
        got = sorted(_reference._merge(rects, h, w), key=lambda r: (r[1], r[0], r[3], r[2]))
        assert got == brute_merge(rects), (trial, rects)


def test_merge_of_a_staircase_chains_into_one_rectangle():
    rects = staircase(30)
    assert brute_merge(rects) == [[0, 0, 31, 31]]
    assert _reference._merge(rects, 31, 31) == [[0, 0, 31, 31]]
    # [2, 0, 4, 1] meets only [0, 0, 3, 3]; [3, 2, 5, 4] only [0, 0, 4, 3]; [4, 0, 6, 1] only
    # [0, 0, 5, 4]; [0, 5, 1, 7] nothing.
    assert brute_merge(hull_chain()) == [[0, 0, 6, 4], [0, 5, 1, 7]]
    for order in (hull_chain(), hull_chain()[::-1]):
        assert sorted(_reference._merge(order, 7, 6)) == [[0, 0, 6, 4], [0, 5, 1, 7]]


def test_dilation_agrees_with_brute_force():
    rng = np.random.default_rng(1)
    for _ in range(100):
        on = rng.random((int(rng.integers(1, 30)), int(rng.integers(1, 30)))) < rng.random()
        d = int(rng.integers(0, 40))
        np.testing.assert_array_equal(_reference._dilate(on, d), brute_dilate(on, d))


@pytest.mark.parametrize("backend", BACKENDS)
def test_focus_chips_agree_with_brute_force_on_random_and_adversarial_maps(backend):
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[:24, :24]
    adversarial = [
        ((yy % 2 == 0) & (xx % 2 == 0)),  # every other cell
        ((yy + xx) % 2 == 0),  # checkerboard
        (xx % 2 == 0),  # stripes
        ((yy + xx) % 3 == 0),  # separate anti-diagonals, nested boxes
        np.ones((24, 24), bool),
    ]
    maps = [m.astype(np.float32) for m in adversarial]
    for density in (0.02, 0.1, 0.3, 0.6):
        maps += [(rng.random((int(rng.integers(1, 30)), 29)) < density).astype(np.float32)]
    for prob in maps:
        for dilation in (0, 1, 2, 7, 40):
            for min_size in (1, 2, 3, 12, 30):
                got = planner.focus_chips(prob, 0.5, dilation, min_size, backend=backend)
                want = brute_focus_chips(prob, 0.5, dilation, min_size)
                assert got.tolist() == want, (prob.shape, dilation, min_size)


@pytest.mark.parametrize("backend", BACKENDS)
def test_focus_chips_chain_merge_by_hand(backend):
    prob = np.zeros((20, 20), np.float32)
    # min_size 4 grows cell c to [c - 1, c + 3). A (2, 2) -> [1, 5)^2 and B (5, 5) -> [4, 8)^2
    # overlap: [1, 1, 8, 8]. C (8, 1) -> [7, 11) x [0, 4) overlaps only that union: [1, 0, 11,
    # 8]. D (11, 8) -> [10, 14) x [7, 11) overlaps only the new union: [1, 0, 14, 11].
    # E (17, 17) -> [16, 20)^2 stays apart.
    for x, y in ((2, 2), (5, 5), (8, 1), (11, 8), (17, 17)):
        prob[y, x] = 1.0
    assert planner.focus_chips(prob, 0.5, 1, 4, backend=backend).tolist() == [
        [1, 0, 14, 11],
        [16, 16, 20, 20],
    ]
    # min_size 3 -> [c - 1, c + 2): no pair overlaps, five rectangles sorted by (y1, x1).
    assert planner.focus_chips(prob, 0.5, 1, 3, backend=backend).tolist() == [
        [7, 0, 10, 3],
        [1, 1, 4, 4],
        [4, 4, 7, 7],
        [10, 7, 13, 10],
        [16, 16, 19, 19],
    ]


def every_other_cell(n: int) -> np.ndarray:
    prob = np.zeros((n, n), np.float32)
    prob[::2, ::2] = 1.0
    return prob


def test_every_other_cell_600_gives_90000_touching_squares():
    # Cell c grown to 2 is [c, c + 2): squares that touch but never overlap.
    got = planner.focus_chips(every_other_cell(600), 0.5, 1, 2)
    ys, xs = np.mgrid[0:600:2, 0:600:2]
    want = np.stack([xs.ravel(), ys.ravel(), xs.ravel() + 2, ys.ravel() + 2], axis=1)
    np.testing.assert_array_equal(got, want)


def test_every_other_cell_reference_is_not_quadratic():
    # 10,000 rectangles: the all-pairs merge would make 5e7 Python overlap tests.
    got = planner.focus_chips(every_other_cell(200), 0.5, 1, 2, backend="reference")
    assert len(got) == 10_000 and got[-1].tolist() == [198, 198, 200, 200]


def test_every_other_cell_2048_chain_merges_into_the_whole_map():
    # Cell c grown to 3 is [c - 1, c + 2): each overlaps the next, 1,048,576 rectangles
    # merge into one; min_size 1 keeps them all.
    prob = every_other_cell(2048)
    assert planner.focus_chips(prob, 0.5, 1, 3).tolist() == [[0, 0, 2048, 2048]]
    ones = planner.focus_chips(prob, 0.5, 1, 1)
    assert ones.shape == (1024 * 1024, 4)
    assert ones[0].tolist() == [0, 0, 1, 1] and ones[-1].tolist() == [2046, 2046, 2047, 2047]
    assert (ones[:, 2:] - ones[:, :2] == 1).all() and (ones[:, :2] % 2 == 0).all()
    # A dilation of 4096 covers the map from any cell as cheaply as 3.
    assert planner.focus_chips(prob, 0.5, 4096, 1).tolist() == [[0, 0, 2048, 2048]]
