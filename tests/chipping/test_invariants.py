"""Properties of the cover that hold whatever the implementation (checked from scratch here)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from planner_strategies import images_with_boxes, plan_settings, random_boxes

from chipping import planner
from chipping.scales import parse_ranges, parse_scales

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def candidate_grid(length: int, chip: int, stride: int) -> tuple[list[int], int]:
    """Chip start positions and chip length along one canvas side, from the spec."""
    if length <= chip:
        return [0], length
    return sorted(set(range(0, length - chip + 1, stride)) | {length - chip}), chip


def canvas(h: int, w: int, scale) -> tuple[float, int, int]:
    row = parse_scales([scale])[0]
    f = (
        row[1]
        if row[0] == 0
        else min(row[1] / min(h, w), row[2] / max(h, w) if row[2] > 0 else math.inf)
    )
    # Canvas sides are truncated (1e-9 px tolerance for float rounding), at least 1 px.
    return f, max(1, math.floor(w * f + 1e-9)), max(1, math.floor(h * f + 1e-9))


def contains(chip, box) -> bool:
    return chip[0] <= box[0] and box[2] <= chip[2] and chip[1] <= box[1] and box[3] <= chip[3]


@SETTINGS
@given(images_with_boxes(max_images=2), plan_settings())
def test_cover_invariants(data, setting):
    boxes, sizes = data
    scales, ranges, chip, stride, _, seed = setting
    plan = planner.plan_positive_chips_batch(
        boxes, sizes, scales, ranges, chip, stride, jitter=False, seed=seed
    )
    lims = parse_ranges(ranges, len(scales))
    for i, ((h, w), b) in enumerate(zip(sizes, boxes, strict=True)):
        for s, scale in enumerate(scales):
            f, cw, ch = canvas(int(h), int(w), scale)
            sel = (plan.image_index == i) & (plan.scale_index == s)
            chosen = plan.chips_scaled[sel]
            # Chips lie inside the canvas and have the candidate size.
            assert (chosen[:, :2] >= 0).all() and (chosen[:, 2] <= cw).all()
            assert (chosen[:, 3] <= ch).all()
            assert ((chosen[:, 2] - chosen[:, 0]) == min(chip, cw)).all()
            size = np.sqrt((b[:, 2].astype(float) - b[:, 0]) * (b[:, 3].astype(float) - b[:, 1]))
            valid = (size > 0) & (size >= lims[s, 0]) & (size < lims[s, 1])
            scaled = np.minimum(b[valid].astype(np.float64) * f, [cw, ch, cw, ch])
            xs, kw = candidate_grid(cw, chip, stride)
            ys, kh = candidate_grid(ch, chip, stride)
            cands = [(x, y, x + kw, y + kh) for y in ys for x in xs]
            coverable = [bx for bx in scaled if any(contains(c, bx) for c in cands)]
            # Every coverable valid box is fully inside a chosen chip of its scale.
            for bx in coverable:
                assert any(contains(c, bx) for c in chosen), (bx, chosen)
            # Every chosen chip covers something new, exactly its count, in pick order.
            covered = np.zeros(len(coverable), dtype=bool)
            for c, count in zip(chosen, plan.counts[sel], strict=True):
                new = [not covered[k] and contains(c, bx) for k, bx in enumerate(coverable)]
                assert sum(new) == count > 0
                covered |= np.array(new, dtype=bool)
            # Greedy: the first pick contains at least as many boxes as any candidate.
            if len(chosen):
                best = max(sum(contains(c, bx) for bx in coverable) for c in cands)
                assert plan.counts[sel][0] == best


@SETTINGS
@given(st.integers(0, 2**32 - 1), st.integers(0, 15))
def test_negative_chips_keep_only_dense_chips(seed, min_props):
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(200, 900)), int(rng.integers(200, 900))
    gt = random_boxes(rng, h, w, int(rng.integers(0, 8)))
    proposals = random_boxes(rng, h, w, int(rng.integers(0, 300)), min_size=4)
    scales, ranges = [1.5, 0.7], [(-1, 60), (40, -1)]
    pos = planner.plan_positive_chips(gt, (h, w), scales, ranges, 256, 32)
    neg = planner.plan_negative_chips(
        proposals, (h, w), pos, scales, ranges, 256, 32, min_proposals=[min_props, min_props]
    )
    assert (neg.counts > min_props).all()
    # No negative chip lies inside... more precisely: no remaining proposal cluster is left
    # that a candidate chip would hold more than min_props of.
    lims = parse_ranges(ranges, 2)
    for s, scale in enumerate(scales):
        f, cw, ch = canvas(h, w, scale)
        p = proposals.astype(np.float64)
        size = np.sqrt((p[:, 2] - p[:, 0]) * (p[:, 3] - p[:, 1]))
        p = np.minimum(
            p[(size >= lims[s, 0]) & (size < lims[s, 1]) & (size > 0)] * f, [cw, ch, cw, ch]
        )
        taken = np.concatenate(
            [pos.chips_scaled[pos.scale_index == s], neg.chips_scaled[neg.scale_index == s]]
        )
        left = [bx for bx in p if not any(contains(c, bx) for c in taken)]
        xs, kw = candidate_grid(cw, 256, 32)
        ys, kh = candidate_grid(ch, 256, 32)
        for y in ys:
            for x in xs:
                assert sum(contains((x, y, x + kw, y + kh), bx) for bx in left) <= min_props


@SETTINGS
@given(st.integers(0, 2**32 - 1), st.floats(0.05, 0.95), st.integers(0, 5), st.integers(0, 20))
def test_focus_chip_invariants(seed, threshold, dilation, min_size):
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(1, 40)), int(rng.integers(1, 40))
    prob = (rng.random((h, w)) ** 6).astype(np.float32)
    rects = planner.focus_chips(prob, threshold, dilation, min_size)
    # Every above-threshold cell lies in a chip.
    for y, x in np.argwhere(prob >= threshold):
        assert any(r[0] <= x < r[2] and r[1] <= y < r[3] for r in rects)
    # Chips are inside the map, at least min_size (capped by the map), and pairwise disjoint.
    assert (rects[:, :2] >= 0).all() and (rects[:, 2] <= w).all() and (rects[:, 3] <= h).all()
    assert ((rects[:, 2] - rects[:, 0]) >= min(min_size, w)).all()
    assert ((rects[:, 3] - rects[:, 1]) >= min(min_size, h)).all()
    for i in range(len(rects)):
        for j in range(i + 1, len(rects)):
            a, b = rects[i], rects[j]
            assert min(a[2], b[2]) <= max(a[0], b[0]) or min(a[3], b[3]) <= max(a[1], b[1])
    if not (prob >= threshold).any():
        assert len(rects) == 0


def test_same_seed_same_chips_and_jitter_varies():
    rng = np.random.default_rng(0)
    boxes = random_boxes(rng, 480, 640, 25)
    a = planner.plan_positive_chips(boxes, (480, 640), jitter=True, seed=7)
    b = planner.plan_positive_chips(boxes, (480, 640), jitter=True, seed=7)
    np.testing.assert_array_equal(a.chips_scaled, b.chips_scaled)
    others = {
        planner.plan_positive_chips(boxes, (480, 640), jitter=True, seed=s).chips_scaled.tobytes()
        for s in range(10)
    }
    assert len(others) > 1
