"""Absurd parameters, malformed plans and the canvas rule (issue 11, planner items 2-4).

Every absurd value is a ValueError naming the argument and the value; numpy scalars are
accepted where Python numbers are; a ChipPlan is validated at construction; chips never leave
the image in image px.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from chipping import ChipAssignment, ChipPlan, planner
from chipping.scales import scaled_size

GOOD = np.array([[10, 10, 50, 50]], np.float32)
SIZE = (480, 640)
FIELDS = ("image_index", "scale_index", "chips_scaled", "factors", "counts")


def plan_fields(plan: ChipPlan) -> list:
    return [getattr(plan, f).tolist() for f in FIELDS]


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: planner.plan_positive_chips(GOOD, (math.inf, 640)), r"image_size must be"),
        (lambda: planner.plan_positive_chips(GOOD, (480, math.nan)), r"image_size must be"),
        (lambda: planner.plan_positive_chips(GOOD, (2**40, 640)), r"a side above 268435456"),
        (lambda: planner.plan_positive_chips(GOOD, (True, 640)), r"image_size must be"),
        (lambda: planner.plan_positive_chips(GOOD, "ab"), r"image_size must be"),
        (lambda: planner.plan_positive_chips(GOOD, SIZE, chip_size=None), r"chip_size must be an"),
        (lambda: planner.plan_positive_chips(GOOD, SIZE, stride="32"), r"stride must be an"),
        (lambda: planner.plan_positive_chips(GOOD, SIZE, seed=2**64), r"seed must be in"),
        (lambda: planner.plan_positive_chips(GOOD, SIZE, jitter="no"), r"jitter must be True"),
        (lambda: planner.plan_positive_chips(GOOD, SIZE, jitter=1), r"jitter must be True"),
        (
            lambda: planner.plan_positive_chips_batch([GOOD], [SIZE], num_threads=2**31),
            r"num_threads must be in \[0, 4096\], got 2147483648",
        ),
        (
            lambda: planner.plan_positive_chips_batch([GOOD], [(math.inf, 5)]),
            r"image_sizes\[0\] = \[inf, 5.0\] must be whole numbers",
        ),
        (
            lambda: planner.plan_positive_chips_batch([GOOD], [SIZE], seeds=np.array([-3])),
            r"seeds must be >= 0, got -3",
        ),
        (
            lambda: planner.plan_positive_chips(GOOD, SIZE, [10**400], [(-1, -1)]),
            r"scales\[0\] = 1000.*a factor must be finite",
        ),
        (
            lambda: planner.plan_positive_chips(GOOD, SIZE, [1e-9], [(-1, -1)]),
            r"scales\[0\] gives image 0 .* the factor 1e-09",
        ),
        (
            lambda: planner.plan_positive_chips(GOOD, SIZE, [1.0], [(None, 5)]),
            r"valid_ranges\[0\] = \(None, 5\)",
        ),
        (
            lambda: planner.plan_negative_chips(
                GOOD, SIZE, planner.plan_positive_chips(GOOD, SIZE), min_proposals=[2**63, 1, 1]
            ),
            r"min_proposals\[0\] must be in \[0, 2147483647\], got 9223372036854775808",
        ),
        (
            lambda: planner.assign_boxes(
                planner.plan_positive_chips(GOOD, SIZE), GOOD, min_inside=None
            ),
            r"min_inside must be a number, got None",
        ),
        (
            lambda: planner.assign_boxes(
                planner.plan_positive_chips(GOOD, SIZE), GOOD, min_inside="1"
            ),
            r"min_inside must be a number, got '1'",
        ),
        (
            lambda: planner.assign_boxes(
                planner.plan_positive_chips(GOOD, SIZE), GOOD, min_box_size=math.inf
            ),
            r"min_box_size must be a finite number, got inf",
        ),
        (
            lambda: planner.assign_boxes(
                planner.plan_positive_chips(GOOD, SIZE), GOOD, crowd=np.array(["yes"])
            ),
            r"crowd\[0\] must be a 1-D array of bools",
        ),
        (
            lambda: planner.assign_boxes(
                planner.plan_positive_chips(GOOD, SIZE), GOOD, crowd=np.array([2])
            ),
            r"crowd\[0\] must be a 1-D array of bools \(or 0/1\)",
        ),
        (
            lambda: planner.focus_chips(np.zeros((4, 4)), None),
            r"threshold must be a number, got None",
        ),
        (
            lambda: planner.focus_chips(np.zeros((4, 4)), 0.5, min_size=2**63),
            r"min_size must be in \[0, 2147483647\]",
        ),
        (lambda: planner.focus_chips(np.zeros((4, 4)), 0.5, dilation=True), r"dilation must be an"),
        (
            lambda: planner.focus_chips_to_image(GOOD, None, 1.0, SIZE),
            r"stride must be a number, got None",
        ),
        (
            lambda: planner.focus_chips_to_image(GOOD, 16, 0.0, SIZE),
            r"factor must be in \(0.0, inf\], got 0.0",
        ),
        (lambda: planner.focus_chips_to_image(GOOD, 16, 1.0, SIZE, offset="ab"), r"offset must be"),
        (lambda: planner.scaled_size(SIZE, math.inf), r"factor must be a finite number, got inf"),
        (lambda: planner.scaled_size(SIZE, 1e300), r"a canvas side above"),
        (lambda: planner.image_seed(None, 0), r"seed must be an integer, got None"),
        (lambda: planner.image_seed(0, -1), r"index must be in \[0, "),
        (lambda: planner.scale_factor(None, SIZE), r"scales\[0\] = None"),
    ],
)
def test_absurd_parameters_are_value_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_numpy_scalars_are_accepted_as_numbers():
    plain = planner.plan_positive_chips(GOOD, SIZE, [1.5], [(-1, -1)], 256, 32, seed=5)
    numpy = planner.plan_positive_chips(
        GOOD,
        (np.int64(480), np.int32(640)),
        [np.float32(1.5)],
        [(np.int8(-1), np.float64(-1))],
        np.int64(256),
        np.uint16(32),
        seed=np.uint64(5),
        jitter=np.bool_(False),
    )
    assert plan_fields(plain) == plan_fields(numpy)
    rects = planner.focus_chips(np.ones((4, 4), np.float32), np.float32(0.5), np.int64(1), 2.0)
    assert rects.tolist() == [[0, 0, 4, 4]]


@pytest.mark.parametrize("shape", [(3, 0), (0, 5), (0, 0), (0, 4, 1)])
def test_only_0x4_or_0_is_no_boxes(shape):
    with pytest.raises(ValueError, match=r"boxes must have shape \(N, 4\)"):
        planner.plan_positive_chips(np.zeros(shape, np.float32), SIZE)
    with pytest.raises(ValueError, match=r"boxes\[0\] must have shape \(N, 4\)"):
        planner.plan_positive_chips_batch([np.zeros(shape, np.float32)], [SIZE])


@pytest.mark.parametrize("empty", [np.zeros((0, 4)), np.zeros((0,)), []])
def test_empty_boxes_plan_no_chips(empty):
    assert len(planner.plan_positive_chips(empty, SIZE)) == 0
    assert len(planner.plan_positive_chips_batch([empty], [SIZE])) == 0


def chip_plan(**changes) -> dict:
    fields = dict(
        image_index=[0],
        scale_index=[0],
        chips_scaled=[[0, 0, 64, 64]],
        factors=[1.0],
        counts=[1],
        valid_ranges=[[0, 10], [5, math.inf]],
    )
    fields.update(changes)
    return fields


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(scale_index=[-1]), r"ChipPlan.scale_index\[0\] = -1 must index the 2 rows"),
        (dict(scale_index=[2]), r"ChipPlan.scale_index\[0\] = 2 must index the 2 rows"),
        (dict(scale_index=[0.0]), r"ChipPlan.scale_index must hold integers, got dtype float64"),
        (dict(image_index=[-4]), r"ChipPlan.image_index\[0\] = -4 must be >= 0"),
        (dict(image_index=[0, 0]), r"ChipPlan.image_index must have shape \(1,\)"),
        (dict(chips_scaled=[0, 0, 64, 64]), r"ChipPlan.chips_scaled must have shape \(-1, 4\)"),
        (dict(chips_scaled=[[0, 0, 0, 64]]), r"ChipPlan.chips_scaled\[0\] = \[0, 0, 0, 64\]"),
        (dict(chips_scaled=[[-8, 0, 64, 64]]), r"0 <= x1 < x2"),
        (
            dict(chips_scaled=[[0, 0, 2**40, 64]]),
            r"ChipPlan.chips_scaled holds values outside int32",
        ),
        (dict(factors=[math.nan]), r"ChipPlan.factors\[0\] = nan must be finite and > 0"),
        (dict(factors=["1"]), r"ChipPlan.factors must hold real numbers"),
        (dict(counts=[-1]), r"ChipPlan.counts\[0\] = -1 must be >= 0"),
        (dict(valid_ranges=[[5, 1], [0, 1]]), r"ChipPlan.valid_ranges\[0\] = \[5.0, 1.0\]"),
        (dict(valid_ranges=[[math.nan, 1], [0, 1]]), r"need 0 <= lo < hi"),
    ],
)
def test_chip_plan_is_validated_at_construction(changes, match):
    with pytest.raises(ValueError, match=match):
        ChipPlan(**chip_plan(**changes))


def test_chip_plan_normalises_dtypes():
    plan = ChipPlan(**chip_plan(image_index=np.array([3], np.uint8)))
    assert plan.image_index.dtype == np.int32 and plan.image_index.tolist() == [3]
    assert plan.chips_scaled.dtype == np.int32 and plan.factors.dtype == np.float64


def test_mutated_scale_index_is_refused_at_use():
    plan = planner.plan_positive_chips(GOOD, SIZE)
    plan.scale_index[0] = -1  # the arrays of a frozen plan are still writable
    with pytest.raises(ValueError, match=r"chips.scale_index must index the 3 rows"):
        planner.assign_boxes(plan, GOOD)


def test_negative_chips_refuse_a_plan_of_several_images():
    pos = planner.plan_positive_chips_batch([GOOD, GOOD], [SIZE, SIZE])
    with pytest.raises(ValueError, match=r"positive holds the chips of 2 images \(image_index"):
        planner.plan_negative_chips(GOOD, SIZE, pos)
    # One image's chips (whatever its index) are accepted.
    one = planner.plan_negative_chips(GOOD, SIZE, pos.for_image(1), min_proposals=[0, 0, 0])
    assert plan_fields(one) == plan_fields(
        planner.plan_negative_chips(GOOD, SIZE, pos.for_image(0), min_proposals=[0, 0, 0])
    )


def test_negative_chips_refuse_positives_of_other_factors():
    big = np.array([[10, 10, 200, 200]], np.float32)  # size 190: one chip, at long side 512
    pos = planner.plan_positive_chips(big, (240, 320))  # factor 512 / 320 = 1.6, not 0.8
    assert pos.scale_index.tolist() == [2]
    match = r"positive chip 0 \(image 0, scale 2\) was planned at factor 1.6, .* factor 0.8"
    with pytest.raises(ValueError, match=match):
        planner.plan_negative_chips(big, SIZE, pos)
    with pytest.raises(ValueError, match=match):
        planner.plan_negative_chips_batch([big], [SIZE], pos)


def test_canvas_is_truncated():
    # 640 * (800 / 480) = 1066.67 -> 1066 (was 1067); the float product 800.0000000000001 of
    # 480 * (800 / 480) stays 800 (the 1e-9 px tolerance).
    assert scaled_size((480, 640), 800 / 480) == (800, 1066)
    assert scaled_size((100, 101), 1.5) == (150, 151)
    assert scaled_size((5, 5), 0.1) == (1, 1)  # at least 1 px
    assert all(scaled_size((s, s), 512 / s) == (512, 512) for s in range(1, 3000))


def test_edge_box_stays_inside_its_chip():
    # Image 100 x 101 at factor 1.5: canvas 150 x 151 (151.5 truncated); chip 64, stride 32:
    # x positions 0, 32, 64, 87; the box [135, 0, 151.5, 15] on the canvas (clamped to 151)
    # lies in the chip at x = 87, whose right edge 151 / 1.5 = 100.67 is inside the image.
    box = np.array([[90, 0, 101, 10]], np.float32)
    for backend in ("compiled", "reference"):
        plan = planner.plan_positive_chips(
            box, (100, 101), [1.5], [(-1, -1)], 64, 32, backend=backend
        )
        assert plan.chips_scaled.tolist() == [[87, 0, 151, 64]]
        assert plan.counts.tolist() == [1]
        a = planner.assign_boxes(plan, box, backend=backend)
        assert a.valid_boxes.tolist() == [[48.0, 0.0, 64.0, 15.0]]
        assert a.ignore_boxes.shape == (0, 4)


def test_chips_lie_inside_the_image_in_image_px():
    rng = np.random.default_rng(11)
    for _ in range(300):
        h, w = int(rng.integers(1, 1500)), int(rng.integers(1, 1500))
        scales = [float(rng.uniform(0.05, 3.5)), (int(rng.integers(16, 1400)), -1)]
        n = int(rng.integers(1, 20))
        x1, y1 = rng.uniform(0, w, n), rng.uniform(0, h, n)
        boxes = np.stack([x1, y1, rng.uniform(x1, w), rng.uniform(y1, h)], axis=1).astype(
            np.float32
        )
        boxes = np.minimum(boxes, [w, h, w, h]).astype(np.float32)
        plan = planner.plan_positive_chips(
            boxes, (h, w), scales, [(-1, -1), (-1, -1)], int(rng.choice([64, 256, 512])), 32
        )
        f = plan.factors
        for s in range(2):  # a side under one canvas px still gets 1 px: skip those scales
            sel = plan.scale_index == s
            if len(f[sel]) and min(h, w) * f[sel][0] < 1:
                plan = plan.select(~sel)
        exact = plan.chips_scaled / plan.factors[:, None]
        assert (exact[:, [0, 1]] >= 0).all()
        assert (exact[:, 2] <= w * (1 + 1e-12)).all() and (exact[:, 3] <= h * (1 + 1e-12)).all()
        chips = plan.chips  # float32 image px
        assert (chips[:, 2] <= w).all() and (chips[:, 3] <= h).all()


def assignment(**changes) -> dict:
    fields = dict(
        valid_splits=[0, 1, 1],
        valid_index=[0],
        valid_boxes=[[0, 0, 5, 5]],
        ignore_splits=[0, 0, 0],
        ignore_index=np.zeros(0, np.int64),
        ignore_boxes=np.zeros((0, 4)),
    )
    fields.update(changes)
    return fields


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(valid_splits=[0, 2, 1]), r"ChipAssignment.valid_splits must rise from 0 to 1"),
        (dict(valid_splits=[]), r"ChipAssignment.valid_splits must be N \+ 1 >= 1 integers"),
        (dict(valid_index=[-1]), r"ChipAssignment.valid_index holds negative values"),
        (dict(valid_boxes=[[0, 0, 5]]), r"ChipAssignment.valid_boxes must have shape \(1, 4\)"),
        (dict(valid_boxes=[[0, 0, 5, np.inf]]), r"ChipAssignment.valid_boxes must be finite"),
        (dict(ignore_splits=[0, 0]), r"valid_splits and ignore_splits differ in length"),
        (dict(ignore_index=["a"]), r"ChipAssignment.ignore_index must hold integers"),
    ],
)
def test_chip_assignment_is_validated_at_construction(changes, match):
    with pytest.raises(ValueError, match=match):
        ChipAssignment(**assignment(**changes))


def test_chip_assignment_refuses_chips_out_of_range():
    a = ChipAssignment(**assignment())
    assert a.valid(0)[0].tolist() == [0] and a.valid(1)[0].tolist() == []
    for chip in (-1, 2, None, 1.5):
        with pytest.raises(ValueError, match=r"chip must be"):
            a.valid(chip)
        with pytest.raises(ValueError, match=r"chip must be"):
            a.ignore(chip)
