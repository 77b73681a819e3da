"""Bad input: a ValueError naming the argument and the value, never a crash."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from chipping import planner

GOOD = np.array([[10, 10, 50, 50]], np.float32)


@pytest.mark.parametrize(
    "boxes, match",
    [
        (np.zeros((3,)) + 1, r"boxes must have shape \(N, 4\)"),
        (np.array([["a", "b", "c", "d"]]), "dtype"),
        (np.array([[1, 2, 3, 4]], dtype=object), "dtype"),
        (np.array([[0, 0, np.nan, 4]]), r"not finite"),
        (np.array([[0, 0, np.inf, 4]]), r"not finite"),
        (np.array([[20, 0, 10, 4]]), r"negative width"),
        (np.array([[0, 0, 700, 4]]), r"outside the image"),
        (np.array([[-1, 0, 10, 4]]), r"outside the image"),
    ],
)
def test_bad_boxes(boxes, match):
    with pytest.raises(ValueError, match=match):
        planner.plan_positive_chips(boxes, (480, 640))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(image_size=(0, 640)), r"image_size = \(0, 640\)"),
        (dict(image_size=(480,)), "image_size must be"),
        (dict(chip_size=0), "chip_size must be in"),
        (dict(stride=0), "stride must be in"),
        (dict(stride=600), "stride must be in"),
        (dict(scales=[]), "scales must be a non-empty"),
        (dict(scales=[-1.0], valid_ranges=[(-1, -1)]), r"scales\[0\] = -1.0"),
        (dict(scales=[(0, 512)], valid_ranges=[(-1, -1)]), r"short-side target"),
        (dict(scales=["x"], valid_ranges=[(-1, -1)]), r"scales\[0\] = 'x'"),
        (dict(valid_ranges=[(0, 80)]), "valid_ranges has 1 entries but there are 3 scales"),
        (dict(valid_ranges=[(80, 10), (0, -1), (0, -1)]), r"valid_ranges\[0\] = \(80, 10\)"),
        (dict(scales=[1e9], valid_ranges=[(-1, -1)]), "canvas"),
        (dict(scales=[50.0], valid_ranges=[(-1, -1)], stride=1, chip_size=2), "candidate chips"),
        (dict(seed=-1), "seed must be"),
        (dict(backend="gpu"), "backend must be"),
    ],
)
def test_bad_parameters(kwargs, match):
    args = dict(boxes=GOOD, image_size=(480, 640))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        planner.plan_positive_chips(**args)


def test_bad_batch_arguments():
    with pytest.raises(ValueError, match="boxes has 1 entries for 2 images"):
        planner.plan_positive_chips_batch([GOOD], [(480, 640), (480, 640)])
    with pytest.raises(ValueError, match="splits must rise from 0 to 1"):
        planner.plan_positive_chips_batch(GOOD, [(480, 640)], box_splits=np.array([0, 2]))
    with pytest.raises(ValueError, match=r"image_sizes\[1\] = \[-5, 3\]"):
        planner.plan_positive_chips_batch([GOOD, GOOD], [(480, 640), (-5, 3)])
    with pytest.raises(ValueError, match="boxes of image 1, row 0"):
        planner.plan_positive_chips_batch([GOOD, GOOD], [(480, 640), (20, 20)])


def test_bad_assignment_and_negative_arguments():
    plan = planner.plan_positive_chips(GOOD, (480, 640))
    with pytest.raises(ValueError, match="crowd must have one flag per box"):
        planner.assign_boxes(plan, GOOD, crowd=np.array([1, 0]))
    with pytest.raises(ValueError, match="min_inside must be in"):
        planner.assign_boxes(plan, GOOD, min_inside=2)
    with pytest.raises(ValueError, match="chips must be a ChipPlan"):
        planner.assign_boxes(np.zeros((1, 4)), GOOD)
    with pytest.raises(ValueError, match="min_proposals"):
        planner.plan_negative_chips(GOOD, (480, 640), plan, min_proposals=[1])
    with pytest.raises(ValueError, match="positive must be a ChipPlan"):
        planner.plan_negative_chips(GOOD, (480, 640), None)


@pytest.mark.parametrize(
    "prob, kwargs, match",
    [
        (np.full((4, 4), np.nan, np.float32), {}, r"prob_maps\[0\]\[0, 0\] = nan"),
        (np.zeros((2, 2, 2), np.float32), {}, "must be 2-D"),
        (np.full((4, 4), 3.0, np.float32), {}, r"in \[0, 1\]"),
        (np.zeros((4, 4), bool), {}, "dtype"),
        (np.zeros((4, 4), np.float32), dict(dilation=-1), "dilation must be in"),
        (np.zeros((4, 4), np.float32), dict(min_size=-2), "min_size must be"),
        (
            np.zeros((4, 4), np.float32),
            dict(threshold=float("nan")),
            "threshold must be a finite number",
        ),
    ],
)
def test_bad_focus_maps(prob, kwargs, match):
    args = dict(threshold=0.5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        planner.focus_chips(prob, **args)


def test_importing_chipping_does_not_import_torch():
    code = "import sys, chipping; chipping.plan_positive_chips; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
