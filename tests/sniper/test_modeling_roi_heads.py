"""RangeAwareRoIHeads: valid-range and ignore rules on hand-made proposals, exact labels."""

from __future__ import annotations

import math

import torch
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign

from sniper.modeling.roi_heads import RangeAwareRoIHeads


def _heads(batch: int = 64) -> RangeAwareRoIHeads:
    return RangeAwareRoIHeads(
        MultiScaleRoIAlign(["p3"], output_size=4, sampling_ratio=2),
        FastRCNNConvFCHead((8, 4, 4), [], [16]),
        FastRCNNPredictor(16, 4),
        fg_iou_thresh=0.5,
        bg_iou_thresh=0.5,
        batch_size_per_image=batch,
        positive_fraction=0.5,
        bbox_reg_weights=None,
        score_thresh=0.0,
        nms_thresh=0.5,
        detections_per_img=50,
        ignore_iou_thresh=0.3,
    )


GT = torch.tensor(
    [
        [0.0, 0.0, 20.0, 20.0],  # size 20, in range, class 2
        [100.0, 100.0, 160.0, 160.0],  # size 60, outside [8, 40]: matched but never appended
        [400.0, 0.0, 420.0, 20.0],  # size 20, class 3
    ]
)
LABELS = torch.tensor([2, 1, 3])
IGNORE = torch.tensor([[200.0, 0.0, 230.0, 30.0], [400.0, 0.0, 420.0, 14.0]])
PROPOSALS = torch.tensor(
    [
        [0.0, 0.0, 20.0, 18.0],  # IoU 0.9 with GT 0             -> 2
        [0.0, 0.0, 4.0, 4.0],  # size 4 < 8                     -> dropped
        [0.0, 0.0, 100.0, 100.0],  # size 100 > 40                  -> dropped
        [200.0, 0.0, 230.0, 30.0],  # bg, IoU 1.0 with ignore 0      -> -1
        [300.0, 300.0, 320.0, 320.0],  # bg, far                      -> 0
        [200.0, 0.0, 230.0, 12.0],  # bg, IoU 0.4 with ignore 0      -> -1
        [200.0, 0.0, 230.0, 6.0],  # bg, IoU 0.2 with ignore 0      -> 0
        [400.0, 0.0, 420.0, 20.0],  # fg on GT 2, IoU 0.7 with ignore 1 -> 3 (fg kept)
        [100.0, 100.0, 130.0, 130.0],  # size 30, IoU 0.25 with GT 1  -> 0
    ]
)


def _target(valid_range: tuple[float, float] = (8.0, 40.0)) -> dict[str, torch.Tensor]:
    return {
        "boxes": GT,
        "labels": LABELS,
        "ignore_boxes": IGNORE,
        "valid_range": torch.tensor(valid_range),
    }


def test_range_and_ignore_rules_with_exact_labels() -> None:
    props, matched, labels = _heads().label_proposals([PROPOSALS], [_target()])
    expected_props = torch.cat([PROPOSALS[[0, 3, 4, 5, 6, 7, 8]], GT[[0, 2]]])
    assert torch.equal(props[0], expected_props)
    assert labels[0].tolist() == [2, -1, 0, -1, 0, 3, 0, 2, 3]
    assert matched[0][[0, 5, 7, 8]].tolist() == [0, 2, 0, 2]


def test_open_range_keeps_every_proposal_and_gt() -> None:
    props, _, labels = _heads().label_proposals([PROPOSALS], [_target((0.0, math.inf))])
    assert props[0].shape[0] == PROPOSALS.shape[0] + GT.shape[0]
    assert labels[0][-3:].tolist() == [2, 1, 3]


def test_sampling_never_uses_ignored_or_dropped_proposals() -> None:
    heads = _heads().train()
    props, _, labels, reg = heads.select_training_samples([PROPOSALS], [_target()])
    assert sorted(labels[0].tolist()) == [0, 0, 0, 2, 2, 3, 3]
    kept = {tuple(p) for p in props[0].tolist()}
    for dropped in (1, 2, 3, 5):
        assert tuple(PROPOSALS[dropped].tolist()) not in kept
    assert reg[0].shape == (7, 4)


def test_negative_chip_with_nothing_in_range_gives_zero_finite_loss() -> None:
    heads = _heads().train()
    features = {"p3": torch.rand(1, 8, 64, 64, requires_grad=True)}
    target = {
        "boxes": torch.zeros(0, 4),
        "labels": torch.zeros(0, dtype=torch.int64),
        "ignore_boxes": torch.zeros(0, 4),
        "valid_range": torch.tensor([200.0, 300.0]),
    }
    _, losses = heads(features, [PROPOSALS[:2]], [(512, 512)], [target])
    assert all(torch.isfinite(v) and v.item() == 0.0 for v in losses.values())
    sum(losses.values()).backward()


def test_eval_returns_labels_one_to_c_inside_the_image() -> None:
    heads = _heads().eval()
    features = {"p3": torch.rand(1, 8, 8, 8)}
    with torch.no_grad():
        result, losses = heads(features, [PROPOSALS[[0, 4, 8]] / 8], [(64, 48)])
    assert losses == {}
    det = result[0]
    assert ((det["labels"] >= 1) & (det["labels"] <= 3)).all()
    assert (det["boxes"][:, 2] <= 48).all() and (det["boxes"][:, 3] <= 64).all()
