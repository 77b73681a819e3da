"""A chip without positives gives box-regression losses of exactly zero, in the RPN and the RoI
heads (as torchvision's `test_forward_negative_sample_frcnn`), while the classification
losses still train: plain negative chips, negative chips with ignore boxes, and chips whose
valid range leaves the RoI heads nothing to sample."""

from __future__ import annotations

import pytest
import torch

from sniper.config import add_sniper_config, get_cfg
from sniper.modeling import SniperRCNN, build_model

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
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
    "32",
]


@pytest.fixture(scope="module")
def model() -> SniperRCNN:
    cfg = add_sniper_config(get_cfg())
    cfg.merge_from_list(TINY)
    torch.manual_seed(0)
    return build_model(cfg).train()


def _images(n: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    return [(torch.rand(3, 128, 128, generator=gen) * 255).to(torch.uint8) for _ in range(n)]


def _negative(ignore: list[list[float]], valid_range=(0.0, float("inf"))) -> dict:
    return {
        "boxes": torch.zeros(0, 4),
        "labels": torch.zeros(0, dtype=torch.int64),
        "ignore_boxes": torch.tensor(ignore, dtype=torch.float32).reshape(-1, 4),
        "valid_range": torch.tensor(valid_range, dtype=torch.float32),
    }


IGNORES = [[0.0, 0.0, 64.0, 64.0], [40.0, 60.0, 120.0, 128.0], [90.0, 10.0, 110.0, 30.0]]


@pytest.mark.parametrize("ignore", [[], IGNORES], ids=["plain", "with_ignore_boxes"])
def test_negative_chip_has_zero_box_regression_losses(model, ignore) -> None:
    losses = model(_images(2), [_negative(ignore), _negative(ignore[:1])])
    assert losses["loss_rpn_box_reg"].item() == 0.0
    assert losses["loss_box_reg"].item() == 0.0
    assert losses["loss_objectness"].item() > 0.0 and losses["loss_classifier"].item() > 0.0
    sum(losses.values()).backward()


def test_nothing_to_sample_gives_zero_box_and_class_losses(model) -> None:
    # No GT and a valid range no proposal of a 128 px chip reaches: the RoI heads sample none.
    losses = model(_images(1), [_negative(IGNORES[:1], (500.0, 1000.0))])
    assert losses["loss_rpn_box_reg"].item() == 0.0
    assert losses["loss_box_reg"].item() == 0.0 and losses["loss_classifier"].item() == 0.0
    assert losses["loss_objectness"].item() > 0.0
    total = sum(losses.values())
    assert total.requires_grad
    total.backward()
