"""build_model: a tiny SniperRCNN trains (finite losses, negative chips) and predicts; the
SniperRPN meta-architecture has no RoI heads and returns proposals."""

from __future__ import annotations

import pytest
import torch

from sniper.config import add_sniper_config, get_cfg
from sniper.modeling import SniperRCNN, SniperRPN, build_model

TINY = [
    "MODEL.BACKBONE.NAME",
    "mobilenet_v2_fpn",
    "MODEL.FPN.OUT_CHANNELS",
    "16",
    "MODEL.ROI_BOX_HEAD.FC_DIM",
    "32",
    "MODEL.NUM_CLASSES",
    "3",
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN",
    "200",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN",
    "50",
    "MODEL.RPN.PRE_NMS_TOPK_TEST",
    "200",
    "MODEL.RPN.POST_NMS_TOPK_TEST",
    "50",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
    "32",
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
    "0.0",
]


def _model(*opts: str) -> SniperRCNN:
    cfg = add_sniper_config(get_cfg())
    cfg.merge_from_list([*TINY, *opts])
    torch.manual_seed(0)
    model = build_model(cfg)
    assert isinstance(model, SniperRCNN)
    return model


def _batch() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    gen = torch.Generator().manual_seed(1)
    images = [(torch.rand(3, 128, 128, generator=gen) * 255).to(torch.uint8) for _ in range(3)]
    targets = [
        {
            "boxes": torch.tensor([[10.0, 12.0, 50.0, 60.0], [70.0, 70.0, 120.0, 100.0]]),
            "labels": torch.tensor([1, 3]),
            "ignore_boxes": torch.tensor([[0.0, 90.0, 30.0, 128.0]]),
            "valid_range": torch.tensor([0.0, float("inf")]),
        },
        {
            "boxes": torch.tensor([[30.0, 30.0, 60.0, 45.0]]),
            "labels": torch.tensor([2]),
            "ignore_boxes": torch.zeros(0, 4),
            "valid_range": torch.tensor([10.0, 80.0]),
        },
        {
            "boxes": torch.zeros(0, 4),
            "labels": torch.zeros(0, dtype=torch.int64),
            "ignore_boxes": torch.tensor([[5.0, 5.0, 120.0, 120.0]]),
            "valid_range": torch.tensor([10.0, 80.0]),
        },
    ]
    return images, targets


def test_train_step_gives_finite_losses_and_gradients() -> None:
    model = _model().train()
    images, targets = _batch()
    losses = model(images, targets)
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    grads = [p.grad for p in model.roi_heads.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_batch_of_only_negative_chips_trains() -> None:
    model = _model().train()
    images, targets = _batch()
    losses = model(images[2:], targets[2:])
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()


def test_eval_outputs_boxes_inside_each_unpadded_image() -> None:
    model = _model().eval()
    images = [torch.rand(3, 128, 128) * 255, torch.rand(3, 100, 70) * 255]
    with torch.no_grad():
        outputs = model(images)
    assert len(outputs) == 2
    for out, img in zip(outputs, images, strict=True):
        height, width = img.shape[-2:]
        boxes = out["boxes"]
        assert boxes.shape[0] == out["scores"].shape[0] == out["labels"].shape[0] > 0
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
        assert (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
        assert ((out["labels"] >= 1) & (out["labels"] <= 3)).all()


def test_rpn_meta_architecture_trains_rpn_and_returns_proposals() -> None:
    cfg = add_sniper_config(get_cfg())
    cfg.merge_from_list([*TINY, "MODEL.META_ARCHITECTURE", "SniperRPN"])
    torch.manual_seed(0)
    model = build_model(cfg).train()
    assert type(model) is SniperRPN and not isinstance(model, SniperRCNN)
    assert not hasattr(model, "roi_heads")
    assert not any(name.startswith("roi_heads.") for name in model.state_dict())
    detector_keys = set(_model().state_dict())
    assert set(model.state_dict()) < detector_keys  # its weights load into the detector
    images, targets = _batch()
    losses = model(images, targets)
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg"}
    model.eval()
    with torch.no_grad():
        outputs = model(images[:1])
    scores = outputs[0]["scores"]
    assert 0 < outputs[0]["boxes"].shape[0] <= 50
    assert ((scores >= 0) & (scores <= 1)).all()
    assert (outputs[0]["labels"] == 1).all()


def test_bad_targets_are_reported() -> None:
    model = _model().train()
    images, targets = _batch()
    targets[1]["boxes"] = torch.tensor([[30.0, 30.0, 20.0, 45.0]])
    with pytest.raises(ValueError, match="target 1: degenerate box"):
        model(images, targets)
    with pytest.raises(ValueError, match="targets are required"):
        model(images)
    _, targets = _batch()
    targets[0]["labels"] = torch.tensor([1, 4])
    with pytest.raises(ValueError, match=r"target 0: labels \[1, 4\] not in 1..3"):
        model(images, targets)
    targets[0]["labels"] = torch.tensor([1, 3], dtype=torch.int32)
    with pytest.raises(ValueError, match="target 0: labels must be int64"):
        model(images, targets)


def test_unknown_meta_architecture_is_named() -> None:
    cfg = add_sniper_config(get_cfg())
    cfg.MODEL.META_ARCHITECTURE = "NoSuchRCNN"
    with pytest.raises(KeyError, match="NoSuchRCNN"):
        build_model(cfg)
