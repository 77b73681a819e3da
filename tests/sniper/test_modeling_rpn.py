"""IgnoreAwareRPN: anchor labels on hand-made anchors and boxes, and a training pass."""

from __future__ import annotations

import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RPNHead

from sniper.modeling.rpn import IgnoreAwareRPN


def _rpn(pos: float = 0.5, neg: float = 0.4, ignore: float = 0.3) -> IgnoreAwareRPN:
    anchors = AnchorGenerator(sizes=((16.0,),), aspect_ratios=((1.0,),))
    return IgnoreAwareRPN(
        anchors,
        RPNHead(8, 1),
        fg_iou_thresh=pos,
        bg_iou_thresh=neg,
        batch_size_per_image=64,
        positive_fraction=0.5,
        pre_nms_top_n={"training": 50, "testing": 50},
        post_nms_top_n={"training": 20, "testing": 20},
        nms_thresh=0.7,
        ignore_iou_thresh=ignore,
    )


ANCHORS = torch.tensor(
    [
        [0.0, 0.0, 10.0, 10.0],  # 0: IoU 1.0 with GT 0             -> 1
        [0.0, 0.0, 10.0, 8.0],  # 1: IoU 0.8 with GT 0             -> 1
        [0.0, 0.0, 10.0, 4.5],  # 2: IoU 0.45, between 0.4 and 0.5 -> -1
        [0.0, 0.0, 10.0, 2.0],  # 3: IoU 0.2                       -> 0
        [20.0, 0.0, 30.0, 10.0],  # 4: IoU 1.0 with ignore 0         -> -1
        [20.0, 0.0, 30.0, 3.5],  # 5: IoU 0.35 with ignore 0        -> -1
        [20.0, 0.0, 30.0, 2.5],  # 6: IoU 0.25 with ignore 0        -> 0
        [50.0, 50.0, 60.0, 60.0],  # 7: IoU 1.0 with GT 1, 0.8 with ignore 1 -> -1 (ignore wins)
        [80.0, 80.0, 90.0, 90.0],  # 8: far from everything          -> 0
    ]
)
GT = torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]])
IGNORE = torch.tensor([[20.0, 0.0, 30.0, 10.0], [50.0, 50.0, 60.0, 58.0]])


def test_ignore_rule_with_exact_labels() -> None:
    target = {"boxes": GT, "labels": torch.tensor([1, 2]), "ignore_boxes": IGNORE}
    labels, matched = _rpn().assign_targets_to_anchors([ANCHORS], [target])
    assert labels[0].tolist() == [1.0, 1.0, -1.0, 0.0, -1.0, -1.0, 0.0, -1.0, 0.0]
    assert torch.equal(matched[0][0], GT[0])


def test_without_ignore_boxes_torchvision_labels_are_kept() -> None:
    target = {"boxes": GT, "labels": torch.tensor([1, 2])}
    labels, _ = _rpn().assign_targets_to_anchors([ANCHORS], [target])
    assert labels[0].tolist() == [1.0, 1.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def test_negative_chip_with_only_ignore_boxes() -> None:
    target = {
        "boxes": torch.zeros(0, 4),
        "labels": torch.zeros(0, dtype=torch.int64),
        "ignore_boxes": IGNORE[:1],
    }
    labels, _ = _rpn().assign_targets_to_anchors([ANCHORS], [target])
    assert labels[0].tolist() == [0.0, 0.0, 0.0, 0.0, -1.0, -1.0, 0.0, 0.0, 0.0]


def test_forward_returns_proposals_scores_and_finite_losses() -> None:
    rpn = _rpn().train()
    images = ImageList(torch.zeros(2, 3, 64, 64), [(64, 64), (64, 48)])
    features = {"p3": torch.rand(2, 8, 8, 8)}
    targets = [
        {
            "boxes": torch.tensor([[8.0, 8.0, 24.0, 24.0]]),
            "labels": torch.tensor([1]),
            "ignore_boxes": torch.tensor([[40.0, 40.0, 60.0, 60.0]]),
        },
        {
            "boxes": torch.zeros(0, 4),
            "labels": torch.zeros(0, dtype=torch.int64),
            "ignore_boxes": torch.zeros(0, 4),
        },
    ]
    boxes, scores, losses = rpn(images, features, targets)
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())
    assert [b.shape[0] for b in boxes] == [s.shape[0] for s in scores]
    assert all(((s >= 0) & (s <= 1)).all() for s in scores)
    assert (boxes[1][:, 2] <= 48).all()
    rpn.eval()
    _, _, eval_losses = rpn(images, features)
    assert eval_losses == {}
