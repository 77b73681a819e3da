"""One vocabulary of box sizes, ranges and scales: the numpy rules of `chipping.scales`, their
torch twins in `sniper.modeling.matching`, and every user of them (config, inference, RoI
heads, visualization) agreeing on the half-open `[lo, hi)`."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from chipping.scales import box_sizes, in_range, parse_ranges, scale_factor, scale_specs
from sniper.config import parse_scale_list, parse_valid_ranges, setup_cfg
from sniper.modeling import matching
from sniper.visualization import valid_scale_of_boxes


def _boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    xy = rng.uniform(-50, 500, (n, 2))
    wh = rng.uniform(-5, 200, (n, 2))  # a few inverted boxes
    wh[: n // 10] = 0.0
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


def test_box_sizes_numpy_and_torch_agree() -> None:
    boxes = _boxes(np.random.default_rng(0), 500)
    ours = box_sizes(boxes)
    twin = matching.box_sizes(torch.from_numpy(boxes)).numpy()
    np.testing.assert_allclose(ours, twin, rtol=1e-6)
    b = boxes.astype(np.float64)
    by_hand = np.sqrt(np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None))
    np.testing.assert_array_equal(ours, by_hand)
    assert box_sizes(np.array([[0, 0, 4, 9], [5, 5, 3, 9]])).tolist() == [6.0, 0.0]


def test_range_tests_are_half_open_in_both_twins() -> None:
    # sizes 10, 20, 30 exactly (squares)
    boxes = np.array([[0, 0, 10, 10], [0, 0, 20, 20], [0, 0, 30, 30]], np.float32)
    assert in_range(box_sizes(boxes), 10.0, 30.0).tolist() == [True, True, False]
    mask = matching.in_range_mask(torch.from_numpy(boxes), torch.tensor([10.0, 30.0]))
    assert mask.tolist() == [True, True, False]
    mask = matching.in_range_mask(torch.from_numpy(boxes), torch.tensor([0.0, math.inf]))
    assert mask.tolist() == [True, True, True]
    assert matching.in_range_mask(torch.from_numpy(boxes), None).tolist() == [True] * 3
    rng = np.random.default_rng(1)
    boxes = _boxes(rng, 400)
    for lo, hi in [(0.0, 50.0), (32.0, 150.0), (120.0, math.inf)]:
        twin = matching.in_range_mask(torch.from_numpy(boxes), torch.tensor([lo, hi]))
        assert twin.tolist() == in_range(box_sizes(boxes), lo, hi).tolist()


def test_visualization_uses_the_same_half_open_ranges() -> None:
    boxes = np.array([[0, 0, 32, 32], [0, 0, 80, 80], [0, 0, 150, 150], [0, 0, 5, 5]])
    ranges = [[-1, 80], [32, 150], [120, -1]]
    assert valid_scale_of_boxes(boxes, ranges).tolist() == [0, 1, 2, 0]
    assert valid_scale_of_boxes(boxes, [[40, 80]]).tolist() == [-1, -1, -1, -1]


def test_config_parsers_are_the_planner_parsers() -> None:
    entries = [2.0, [800, 1280], [512, -1], 1]
    assert (
        parse_scale_list(entries)
        == scale_specs(entries)
        == [2.0, (800.0, 1280.0), (512.0, -1.0), 1.0]
    )
    ranges = [[-1, 80], [32, 150], [120, -1]]
    assert parse_valid_ranges(ranges) == [tuple(r) for r in parse_ranges(ranges).tolist()]
    for bad in ([0.0], [[800, 0]], [[800]], ["x"]):
        with pytest.raises(ValueError, match=r"scales\[0\]"):
            parse_scale_list(bad)
    with pytest.raises(ValueError, match=r"valid_ranges\[1\]"):
        parse_valid_ranges([[0, 10], [10, 5]])


def test_config_accepts_a_short_side_without_cap() -> None:
    cfg = setup_cfg(
        "",
        [
            "SNIPER.TEST_SCALES",
            "[[600, -1], 1.0]",
            "SNIPER.TEST_VALID_RANGES",
            "[[-1, -1], [-1, -1]]",
        ],
    )
    short_only = parse_scale_list(cfg.SNIPER.TEST_SCALES)[0]
    # short side 600 of a 300 x 3000 image: factor 2 (a 1333 cap would have given 0.44)
    assert scale_factor(short_only, (300, 3000)) == 2.0
    with pytest.raises(ValueError, match="SNIPER.TEST_SCALES"):
        setup_cfg(
            "", ["SNIPER.TEST_SCALES", "[[600, -2]]", "SNIPER.TEST_VALID_RANGES", "[[-1, -1]]"]
        )
