"""merge_detections: Gaussian soft-NMS values, per-class independence, top_k, hard NMS."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchvision.ops import batched_nms

from sniper.inference.soft_nms import merge_detections, merge_indices, soft_nms_class


def _t(values, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def reference_soft_nms(boxes, scores, labels, sigma, min_score):
    """Slow, readable per-class Gaussian soft-NMS in float64 python: [(index, score)] best first."""
    out = []
    for c in sorted(set(labels)):
        items = [
            [i, float(s)]
            for i, (s, lab) in enumerate(zip(scores, labels, strict=True))
            if lab == c and s >= min_score
        ]
        while items:
            best = max(items, key=lambda t: (t[1], -t[0]))
            items.remove(best)
            out.append(best)
            for t in items:
                t[1] *= math.exp(-(_iou(boxes[best[0]], boxes[t[0]]) ** 2) / sigma)
            items = [t for t in items if t[1] >= min_score]
    return sorted(out, key=lambda t: (-t[1], t[0]))


def _random_detections(seed: int, n: int, num_classes: int):
    """Clustered random boxes (so that many overlap), scores in (0, 1), labels 0..C-1."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 300, size=(max(1, n // 8), 2))
    c = centres[rng.integers(0, len(centres), n)] + rng.normal(0, 6, size=(n, 2))
    wh = rng.uniform(8, 60, size=(n, 2))
    boxes = np.concatenate([c - wh / 2, c + wh / 2], axis=1).astype(np.float32)
    scores = rng.uniform(0.01, 1.0, n).astype(np.float32)
    labels = rng.integers(0, num_classes, n)
    return boxes, scores, labels


def test_two_boxes_exact_decay() -> None:
    boxes = _t([[0, 0, 10, 10], [5, 0, 15, 10]])  # IoU = 50 / 150 = 1/3
    b, s, lab = merge_detections(boxes, _t([0.9, 0.8]), _t([3, 3], torch.int64), sigma=0.55)
    assert torch.equal(b, boxes)
    expected = 0.8 * math.exp(-((1 / 3) ** 2) / 0.55)
    np.testing.assert_allclose(s.numpy(), [0.9, expected], rtol=1e-6)
    assert lab.tolist() == [3, 3]


def test_decay_is_sequential_and_reorders() -> None:
    # A (0.9) overlaps B (0.85) strongly and C (0.8) not at all: C overtakes decayed B.
    boxes = _t([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]])
    _, s, _ = merge_detections(boxes, _t([0.9, 0.85, 0.8]), _t([0, 0, 0], torch.int64))
    iou_ab = 90 / 110
    np.testing.assert_allclose(
        s.numpy(), [0.9, 0.8, 0.85 * math.exp(-(iou_ab**2) / 0.55)], rtol=1e-6
    )


def test_different_classes_do_not_suppress() -> None:
    boxes = _t([[0, 0, 10, 10], [0, 0, 10, 10]])
    for method in ("soft", "nms"):
        b, s, lab = merge_detections(boxes, _t([0.9, 0.8]), _t([1, 2], torch.int64), method=method)
        np.testing.assert_allclose(s.numpy(), [0.9, 0.8])
        assert lab.tolist() == [1, 2]
    _, s, _ = merge_detections(boxes, _t([0.9, 0.8]), _t([1, 1], torch.int64), method="nms")
    assert s.tolist() == pytest.approx([0.9])


def test_min_score_drops_decayed_and_low_boxes() -> None:
    boxes = _t([[0, 0, 10, 10], [0, 0, 10, 10], [40, 40, 50, 50]])
    # Identical box decays to 0.5 * exp(-1 / 0.55) = 0.081; the third starts below 0.1.
    _, s, _ = merge_detections(
        boxes, _t([0.9, 0.5, 0.05]), _t([0, 0, 0], torch.int64), min_score=0.1
    )
    np.testing.assert_allclose(s.numpy(), [0.9])
    _, s, _ = merge_detections(
        boxes, _t([0.9, 0.5, 0.05]), _t([0, 0, 0], torch.int64), min_score=0.01
    )
    np.testing.assert_allclose(s.numpy(), [0.9, 0.5 * math.exp(-1 / 0.55), 0.05], rtol=1e-6)


def test_top_k_keeps_best_sorted() -> None:
    boxes = torch.stack([_t([20.0 * i, 0, 20.0 * i + 10, 10]) for i in range(10)])
    scores = _t([0.1 * ((3 * i) % 10) + 0.05 for i in range(10)])
    b, s, _ = merge_detections(boxes, scores, torch.zeros(10, dtype=torch.int64), top_k=3)
    np.testing.assert_allclose(s.numpy(), [0.95, 0.85, 0.75], rtol=1e-6)
    assert torch.equal(b, boxes[torch.topk(scores, 3).indices])
    _, s_all, _ = merge_detections(boxes, scores, torch.zeros(10, dtype=torch.int64), top_k=0)
    assert len(s_all) == 10


def test_ties_keep_input_order() -> None:
    boxes = torch.stack([_t([20.0 * i, 0, 20.0 * i + 10, 10]) for i in range(4)])
    b, _, _ = merge_detections(boxes, _t([0.5, 0.7, 0.5, 0.7]), torch.arange(4))
    assert b[:, 0].tolist() == [20.0, 60.0, 0.0, 40.0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hard_nms_equals_torchvision(seed: int) -> None:
    boxes, scores, labels = _random_detections(seed, 400, 4)
    b, s, lab = merge_detections(
        torch.from_numpy(boxes),
        torch.from_numpy(scores),
        torch.from_numpy(labels),
        method="nms",
        iou=0.5,
        min_score=0.0,
        top_k=0,
    )
    keep = batched_nms(
        torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels), 0.5
    )
    assert torch.equal(b, torch.from_numpy(boxes)[keep])
    assert torch.equal(s, torch.from_numpy(scores)[keep])
    assert torch.equal(lab, torch.from_numpy(labels)[keep])


@pytest.mark.parametrize(
    ("seed", "sigma", "min_score"),
    [(0, 0.55, 0.001), (1, 0.3, 0.05), (2, 1.0, 0.0), (3, 0.55, 0.2)],
)
def test_soft_nms_matches_reference(seed: int, sigma: float, min_score: float) -> None:
    boxes, scores, labels = _random_detections(seed, 300, 3)
    b, s, lab = merge_detections(
        torch.from_numpy(boxes),
        torch.from_numpy(scores),
        torch.from_numpy(labels),
        sigma=sigma,
        min_score=min_score,
        top_k=0,
    )
    ref = reference_soft_nms(boxes.tolist(), scores.tolist(), labels.tolist(), sigma, min_score)
    idx = np.array([i for i, _ in ref])
    assert len(s) == len(ref) and len(ref) > 0
    np.testing.assert_allclose(s.numpy(), [v for _, v in ref], rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(b.numpy(), boxes[idx])
    np.testing.assert_array_equal(lab.numpy(), labels[idx])
    assert (np.diff(s.numpy()) <= 0).all()


def test_soft_nms_class_pick_order_and_empty() -> None:
    keep, s = soft_nms_class(
        np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32), np.array([0.3, 0.6], np.float32)
    )
    assert keep.tolist() == [1, 0] and s[0] == pytest.approx(0.6)
    keep, s = soft_nms_class(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
    assert keep.shape == (0,) and s.shape == (0,)
    with pytest.raises(ValueError, match="sigma"):
        soft_nms_class(np.zeros((1, 4)), np.ones(1), sigma=0.0)


def test_empty_input_and_errors() -> None:
    for method in ("soft", "nms"):
        b, s, lab = merge_detections(
            torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), method=method
        )
        assert b.shape == (0, 4) and s.shape == (0,) and lab.dtype == torch.int64
    with pytest.raises(ValueError, match="method"):
        merge_detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0), method="linear")
    with pytest.raises(ValueError, match="boxes"):
        merge_detections(torch.zeros(2, 4), torch.zeros(3), torch.zeros(3))


@pytest.mark.parametrize("method", ["soft", "nms"])
def test_merge_indices_are_the_detections_merge_keeps(method) -> None:
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(40, 2, generator=gen) * 50
    boxes = torch.cat([xy, xy + 5 + torch.rand(40, 2, generator=gen) * 20], dim=1)
    scores = torch.rand(40, generator=gen)
    labels = torch.randint(0, 3, (40,), generator=gen)
    keep, new_scores = merge_indices(boxes, scores, labels, method=method, top_k=15)
    b, s, lab = merge_detections(boxes, scores, labels, method=method, top_k=15)
    assert keep.dtype == torch.int64 and len(keep) == 15 == len(set(keep.tolist()))
    assert torch.equal(boxes[keep], b) and torch.equal(labels[keep], lab)
    assert torch.equal(new_scores, s)
    if method == "nms":
        assert torch.equal(scores[keep], s)
