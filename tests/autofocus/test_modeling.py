"""AutoFocusRCNN: built from the registry (`build_autofocus_model`), trains with loss_focus,
predicts focus_prob."""

from __future__ import annotations

import math

import pytest
import torch

from autofocus.config import add_autofocus_config
from autofocus.head import focus_probability
from autofocus.modeling import AutoFocusRCNN, build_autofocus_model
from sniper.config import add_sniper_config, get_cfg
from sniper.modeling import build_model

TINY = [
    "MODEL.META_ARCHITECTURE",
    "AutoFocusRCNN",
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
    "AUTOFOCUS.HEAD_CHANNELS",
    "8",
]


def _model(*opts: str) -> AutoFocusRCNN:
    cfg = add_autofocus_config(add_sniper_config(get_cfg()))
    cfg.merge_from_list([*TINY, *opts])
    torch.manual_seed(0)
    model = build_model(cfg)
    assert isinstance(model, AutoFocusRCNN)
    return model


def _batch() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    gen = torch.Generator().manual_seed(1)
    images = [(torch.rand(3, 128, 128, generator=gen) * 255).to(torch.uint8) for _ in range(2)]
    targets = [
        {
            "boxes": torch.tensor([[10.0, 12.0, 50.0, 60.0]]),
            "labels": torch.tensor([1]),
            "ignore_boxes": torch.tensor([[70.0, 70.0, 80.0, 78.0]]),
            "valid_range": torch.tensor([32.0, float("inf")]),
            "focus_boxes": torch.tensor([[10.0, 12.0, 50.0, 60.0], [70.0, 70.0, 80.0, 78.0]]),
            "focus_sizes": torch.tensor([43.8, 8.9]),
            "focus_ignore_boxes": torch.zeros(0, 4),
        },
        {
            "boxes": torch.zeros(0, 4),
            "labels": torch.zeros(0, dtype=torch.int64),
            "ignore_boxes": torch.tensor([[5.0, 5.0, 120.0, 120.0]]),
            "valid_range": torch.tensor([10.0, 80.0]),
        },
    ]
    return images, targets


def test_config_builds_the_head_on_p4() -> None:
    model = _model()
    assert model.focus_feature == "p4" and model.focus_stride == 16
    assert model.label_sizes == (5.0, 64.0, 90.0)
    assert model.focus_head.conv.in_channels == 16 and model.focus_head.conv.out_channels == 8
    with pytest.raises(ValueError, match="AUTOFOCUS.FEATURE = 'p7'"):
        _model("AUTOFOCUS.FEATURE", "p7")


def test_train_step_gives_finite_losses_and_head_gradients() -> None:
    model = _model().train()
    images, targets = _batch()
    losses = model(images, targets)
    assert set(losses) == {
        "loss_objectness",
        "loss_rpn_box_reg",
        "loss_classifier",
        "loss_box_reg",
        "loss_focus",
    }
    assert all(torch.isfinite(v) for v in losses.values())
    assert 0.0 < float(losses["loss_focus"].detach()) < 2.0  # ~log 2 at initialization
    sum(losses.values()).backward()
    grads = [p.grad for p in model.focus_head.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert float(model.focus_head.logits.weight.grad.abs().sum()) > 0


def test_loss_weight_scales_the_focus_loss() -> None:
    images, targets = _batch()
    torch.manual_seed(3)
    full = _model().train()(images, targets)["loss_focus"]
    torch.manual_seed(3)
    half = _model("AUTOFOCUS.LOSS_WEIGHT", "0.5").train()(images, targets)["loss_focus"]
    assert math.isclose(float(half.detach()), float(full.detach()) / 2, rel_tol=1e-5)


def test_eval_returns_focus_prob_of_the_unpadded_input() -> None:
    model = _model().eval()
    images = [torch.rand(3, 128, 128) * 255, torch.rand(3, 100, 70) * 255]
    with torch.no_grad():
        outputs = model(images)
        features = model.backbone(model.transform(images)[0].tensors)
        logits = model.focus_head(features["p4"])
    assert [tuple(o["focus_prob"].shape) for o in outputs] == [(8, 8), (7, 5)]
    expected = focus_probability(logits)
    assert torch.allclose(outputs[1]["focus_prob"], expected[1, :7, :5])
    for out in outputs:
        assert ((out["focus_prob"] >= 0) & (out["focus_prob"] <= 1)).all()
        assert {"boxes", "scores", "labels"} <= set(out)


def test_build_autofocus_model_refuses_a_model_without_the_head() -> None:
    cfg = add_autofocus_config(add_sniper_config(get_cfg()))
    cfg.merge_from_list([*TINY])
    assert isinstance(build_autofocus_model(cfg), AutoFocusRCNN)
    cfg.MODEL.META_ARCHITECTURE = "SniperRPN"
    with pytest.raises(ValueError, match="MODEL.META_ARCHITECTURE = 'SniperRPN'"):
        build_autofocus_model(cfg)


def test_mask_on_trains_masks_and_focus_together_and_returns_both() -> None:
    """AutoFocusRCNN with MODEL.MASK_ON: loss_mask beside loss_focus in training (the chip
    without a valid box still gives a zero mask loss), mask_patches beside focus_prob."""
    model = _model("MODEL.MASK_ON", "True", "MODEL.ROI_MASK_HEAD.CONV_DIM", "8").train()
    images, targets = _batch()
    targets[0]["masks"] = torch.zeros((1, 128, 128), dtype=torch.uint8)
    targets[0]["masks"][0, 20:50, 15:45] = 1
    targets[1]["masks"] = torch.zeros((0, 128, 128), dtype=torch.uint8)
    losses = model(images, targets)
    assert {"loss_focus", "loss_mask"} <= set(losses)
    assert float(losses["loss_mask"].detach()) > 0
    sum(losses.values()).backward()
    assert model.roi_heads.mask_predictor.mask_fcn_logits.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        (out,) = model([images[0]])
    assert out["mask_patches"].shape == (len(out["boxes"]), 28, 28)
    assert out["focus_prob"].shape == (8, 8)
