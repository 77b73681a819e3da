"""Hand-made planner cases with answers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from chipping import planner

BACKENDS = ["compiled", "reference"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_far_boxes_need_two_chips(backend):
    # Canvas 640x480 at factor 1: x positions 0, 32, 64, 96, 128; one row (480 < 512).
    boxes = np.array([[10, 10, 30, 30], [600, 400, 630, 470]], np.float32)
    plan = planner.plan_positive_chips(
        boxes, (480, 640), [1.0], [(-1, -1)], 512, 32, backend=backend
    )
    assert plan.chips_scaled.tolist() == [[0, 0, 512, 480], [128, 0, 640, 480]]
    assert plan.counts.tolist() == [1, 1]
    np.testing.assert_allclose(plan.chips, [[0, 0, 512, 480], [128, 0, 640, 480]])


@pytest.mark.parametrize("backend", BACKENDS)
def test_cluster_is_one_chip_and_ties_go_to_lowest_index(backend):
    boxes = np.array([[200, 100, 220, 120], [300, 150, 320, 170], [250, 300, 260, 310]], np.float32)
    plan = planner.plan_positive_chips(
        boxes, (1000, 1000), [1.0], [(-1, -1)], 512, 32, backend=backend
    )
    # All three fit in chips with x in [0, 200], y in [0, 100]; the lowest index is (0, 0).
    assert plan.chips_scaled.tolist() == [[0, 0, 512, 512]]
    assert plan.counts.tolist() == [3]


@pytest.mark.parametrize("backend", BACKENDS)
def test_scales_ranges_and_small_canvas(backend):
    boxes = np.array(
        [
            [10, 10, 30, 30],  # size 20: valid at scale 0 only
            [100, 100, 300, 250],
        ],  # size ~173: valid at scale 1 only
        np.float32,
    )
    plan = planner.plan_positive_chips(
        boxes, (480, 640), [2.0, (512, 512)], [(-1, 80), (120, -1)], 512, 32, backend=backend
    )
    assert plan.scale_index.tolist() == [0, 1]
    # Long side 512 -> factor 0.8 -> canvas 512x384: the chip is the whole canvas.
    assert plan.factors.tolist() == [2.0, 0.8]
    assert plan.chips_scaled.tolist() == [[0, 0, 512, 512], [0, 0, 512, 384]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_boxes_too_big_or_out_of_range_get_no_chip(backend):
    boxes = np.array([[0, 0, 600, 100]], np.float32)  # 600 px wide > 512 chip at factor 1
    assert (
        len(planner.plan_positive_chips(boxes, (480, 640), [1.0], [(-1, -1)], backend=backend)) == 0
    )
    small = np.array([[0, 0, 10, 10]], np.float32)
    assert (
        len(planner.plan_positive_chips(small, (480, 640), [1.0], [(50, -1)], backend=backend)) == 0
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_edge_chip_reaches_the_border(backend):
    # Canvas 1000 wide: grid 0..480 step 32 (last 480), plus flush chip at 488.
    boxes = np.array([[980, 10, 1000, 30]], np.float32)
    plan = planner.plan_positive_chips(
        boxes, (100, 1000), [1.0], [(-1, -1)], 512, 32, backend=backend
    )
    assert plan.chips_scaled.tolist() == [[488, 0, 1000, 100]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_assignment_rules(backend):
    plan = planner.plan_positive_chips(
        np.array([[10, 10, 30, 30]], np.float32),
        (600, 600),
        [2.0],
        [(-1, 80)],
        512,
        32,
        backend=backend,
    )
    assert plan.chips_scaled.tolist() == [[0, 0, 512, 512]]
    boxes = np.array(
        [
            [10, 10, 30, 30],  # A: size 20, inside -> valid, chip px [20, 20, 60, 60]
            [100, 100, 300, 300],  # B: size 200, out of range -> ignore, clipped
            [250, 250, 260, 300],  # C: 7% inside the chip -> ignore
            [255.5, 10, 270, 20],  # D: 1 chip px inside -> removed (sliver)
            [5, 5, 15, 15],  # E: crowd -> ignore
            [300, 300, 310, 310],  # F: outside the chip -> absent
        ],
        np.float32,
    )
    crowd = np.array([0, 0, 0, 0, 1, 0], bool)
    a = planner.assign_boxes(plan, boxes, crowd=crowd, backend=backend)
    vi, vb = a.valid(0)
    gi, gb = a.ignore(0)
    assert vi.tolist() == [0]
    assert vb.tolist() == [[20, 20, 60, 60]]
    assert gi.tolist() == [1, 2, 4]
    assert gb.tolist() == [[200, 200, 512, 512], [500, 500, 512, 512], [10, 10, 30, 30]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_negative_chips_cover_dense_proposals_outside_positives(backend):
    gt = np.array([[10, 10, 30, 30]], np.float32)
    pos = planner.plan_positive_chips(gt, (1000, 1000), [1.0], [(-1, -1)], 256, 32, backend=backend)
    assert pos.chips_scaled.tolist() == [[0, 0, 256, 256]]
    rng = np.random.default_rng(0)
    inside = np.tile([[50, 50, 70, 70]], (30, 1))  # inside the positive chip
    dense = 700 + rng.uniform(0, 150, (12, 2))  # a cluster at (700-870)
    dense = np.concatenate([dense, dense + 20], axis=1)
    sparse = np.array([[400, 50, 420, 70], [50, 600, 70, 620]])  # isolated, too few
    props = np.concatenate([inside, dense, sparse]).astype(np.float32)
    neg = planner.plan_negative_chips(
        props, (1000, 1000), pos, [1.0], [(-1, -1)], 256, 32, min_proposals=[5], backend=backend
    )
    assert neg.counts.tolist() == [12]
    x1, y1, x2, y2 = neg.chips_scaled[0]
    assert x1 <= dense[:, 0].min() and dense[:, 2].max() <= x2
    assert y1 <= dense[:, 1].min() and dense[:, 3].max() <= y2


@pytest.mark.parametrize("backend", BACKENDS)
def test_focus_chips_single_cell_grows_to_min_size(backend):
    prob = np.zeros((8, 8), np.float32)
    prob[3, 2] = 0.9
    # Dilation 3 -> cells x 1..3, y 2..4 -> [1, 2, 4, 5]; grown to 4 -> [1, 2, 5, 6].
    assert planner.focus_chips(prob, 0.5, 3, 4, backend=backend).tolist() == [[1, 2, 5, 6]]
    # Grown past the border: shifted back inside.
    prob = np.zeros((8, 8), np.float32)
    prob[0, 7] = 0.9
    assert planner.focus_chips(prob, 0.5, 1, 4, backend=backend).tolist() == [[4, 0, 8, 4]]
    # Smaller map than min_size: the whole map.
    assert planner.focus_chips(prob[:3, :3] + 0.5, 0.5, 1, 4, backend=backend).tolist() == [
        [0, 0, 3, 3]
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_focus_chips_merge_cascade(backend):
    prob = np.zeros((20, 40), np.float32)
    prob[5, 2] = prob[5, 8] = prob[5, 30] = 1.0
    # Growing [x, x + 1) to k cells starts at x - (k - 1) // 2.
    # min_size 4: x 2 -> [1, 5), 8 -> [7, 11), 30 -> [29, 33); y 5 -> [4, 8): no overlap.
    assert planner.focus_chips(prob, 0.5, 1, 4, backend=backend).tolist() == [
        [1, 4, 5, 8],
        [7, 4, 11, 8],
        [29, 4, 33, 8],
    ]
    # min_size 8: x 2 -> [-1, 7) shifted to [0, 8); 8 -> [5, 13): they overlap -> [0, 13);
    # 30 -> [27, 35) stays apart; y 5 -> [2, 10).
    assert planner.focus_chips(prob, 0.5, 1, 8, backend=backend).tolist() == [
        [0, 2, 13, 10],
        [27, 2, 35, 10],
    ]
    # Threshold is inclusive; empty when nothing reaches it.
    assert len(planner.focus_chips(prob * 0.5, 0.5, 1, 1, backend=backend)) == 3
    assert len(planner.focus_chips(prob * 0.49, 0.5, 1, 1, backend=backend)) == 0


def test_focus_chips_to_image():
    rects = np.array([[1, 2, 5, 6]])
    out = planner.focus_chips_to_image(
        rects, stride=16, factor=0.5, image_size=(300, 150), offset=(10, 0)
    )
    # Cell 1 -> 1 * 16 / 0.5 = 32 (+10); cell 5 -> 160 + 10 clipped to width 150.
    assert out.tolist() == [[42, 64, 150, 192]]


def test_empty_inputs_give_empty_outputs():
    empty = planner.plan_positive_chips(np.zeros((0, 4)), (480, 640))
    assert len(empty) == 0 and empty.chips.shape == (0, 4)
    batch = planner.plan_positive_chips_batch([], np.zeros((0, 2), np.int64))
    assert len(batch) == 0
    a = planner.assign_boxes(empty, np.zeros((0, 4)))
    assert len(a) == 0 and a.valid_boxes.shape == (0, 4)
    neg = planner.plan_negative_chips(np.zeros((0, 4)), (480, 640), empty)
    assert len(neg) == 0
    assert planner.focus_chips(np.zeros((0, 0), np.float32), 0.5).shape == (0, 4)
