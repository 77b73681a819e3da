"""The compiled planner and its pure-numpy twin agree exactly on random inputs."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from planner_strategies import images_with_boxes, plan_settings

from chipping import planner

SETTINGS = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PLAN_FIELDS = ("image_index", "scale_index", "chips_scaled", "factors", "counts")


def assert_plans_equal(a, b):
    for field in PLAN_FIELDS:
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)


@SETTINGS
@given(images_with_boxes(), plan_settings())
def test_positive_chips_agree(data, setting):
    boxes, sizes = data
    scales, ranges, chip, stride, jitter, seed = setting
    kw = dict(jitter=jitter, seed=seed)
    a = planner.plan_positive_chips_batch(boxes, sizes, scales, ranges, chip, stride, **kw)
    b = planner.plan_positive_chips_batch(
        boxes, sizes, scales, ranges, chip, stride, **kw, backend="reference"
    )
    assert_plans_equal(a, b)


@SETTINGS
@given(images_with_boxes(max_boxes=12), plan_settings(), st.data())
def test_assignment_agrees(data, setting, extra):
    boxes, sizes = data
    scales, ranges, chip, stride, jitter, seed = setting
    plan = planner.plan_positive_chips_batch(
        boxes, sizes, scales, ranges, chip, stride, jitter=jitter, seed=seed
    )
    rng = np.random.default_rng(extra.draw(st.integers(0, 2**32 - 1)))
    crowd = [rng.random(len(b)) < 0.2 for b in boxes]
    min_inside = extra.draw(st.floats(0, 1))
    min_box = extra.draw(st.floats(0, 8))
    kw = dict(crowd=crowd, min_inside=min_inside, min_box_size=min_box)
    a = planner.assign_boxes_batch(plan, boxes, **kw)
    b = planner.assign_boxes_batch(plan, boxes, **kw, backend="reference")
    for field in a.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)


@SETTINGS
@given(images_with_boxes(max_images=3, max_boxes=10), plan_settings(), st.data())
def test_negative_chips_agree(data, setting, extra):
    boxes, sizes = data
    scales, ranges, chip, stride, jitter, seed = setting
    positive = planner.plan_positive_chips_batch(boxes, sizes, scales, ranges, chip, stride)
    rng = np.random.default_rng(extra.draw(st.integers(0, 2**32 - 1)))
    from planner_strategies import random_boxes

    proposals = [random_boxes(rng, h, w, int(rng.integers(0, 150)), min_size=4) for h, w in sizes]
    mins = [extra.draw(st.integers(0, 12)) for _ in scales]
    kw = dict(min_proposals=mins, jitter=jitter, seed=seed)
    a = planner.plan_negative_chips_batch(
        proposals, sizes, positive, scales, ranges, chip, stride, **kw
    )
    b = planner.plan_negative_chips_batch(
        proposals, sizes, positive, scales, ranges, chip, stride, **kw, backend="reference"
    )
    assert_plans_equal(a, b)


@st.composite
def prob_maps(draw):
    """A few random probability maps, blobby so components are non-trivial."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    maps = []
    for _ in range(draw(st.integers(1, 3))):
        h, w = int(rng.integers(1, 48)), int(rng.integers(1, 48))
        m = rng.random((h, w)) ** draw(st.sampled_from([1, 4, 12]))
        maps.append(m.astype(np.float32))
    return maps


@SETTINGS
@given(prob_maps(), st.floats(0, 1), st.integers(0, 6), st.integers(0, 24))
def test_focus_chips_agree(maps, threshold, dilation, min_size):
    a = planner.focus_chips_batch(maps, threshold, dilation, min_size)
    b = planner.focus_chips_batch(maps, threshold, dilation, min_size, backend="reference")
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_batch_equals_single_image_calls():
    rng = np.random.default_rng(3)
    sizes = np.array([(480, 640), (427, 640), (640, 480)])
    from planner_strategies import random_boxes

    boxes = [random_boxes(rng, h, w, 20) for h, w in sizes]
    batch = planner.plan_positive_chips_batch(boxes, sizes, jitter=True, seed=11)
    for i, (b, size) in enumerate(zip(boxes, sizes, strict=True)):
        single = planner.plan_positive_chips(
            b, tuple(size), jitter=True, seed=planner.image_seed(11, i)
        )
        np.testing.assert_array_equal(batch.for_image(i).chips_scaled, single.chips_scaled)


def test_threads_do_not_change_the_result():
    rng = np.random.default_rng(4)
    from planner_strategies import random_boxes

    sizes = rng.integers(200, 700, size=(700, 2))
    boxes = [random_boxes(rng, h, w, int(rng.integers(0, 30))) for h, w in sizes]
    one = planner.plan_positive_chips_batch(boxes, sizes, jitter=True, num_threads=1)
    four = planner.plan_positive_chips_batch(boxes, sizes, jitter=True, num_threads=4)
    assert_plans_equal(one, four)
    a1 = planner.assign_boxes_batch(one, boxes, num_threads=1)
    a4 = planner.assign_boxes_batch(one, boxes, num_threads=4)
    for field in a1.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(a1, field), getattr(a4, field))
