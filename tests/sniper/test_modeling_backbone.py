"""Backbones: pyramid strides, registry, norm conversion and stage freezing."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from sniper.modeling.backbone import BACKBONE_REGISTRY
from sniper.modeling.norms import convert_norm


def _build(
    name: str,
    norm: str = "BN",
    freeze_at: int = 1,
    min_level: int = 2,
    use_p6: bool = True,
    out_channels: int = 32,
) -> nn.Module:
    return BACKBONE_REGISTRY.get(name)(
        norm=norm,
        freeze_at=freeze_at,
        weights="",
        out_channels=out_channels,
        min_level=min_level,
        use_p6=use_p6,
    )


@pytest.mark.parametrize("name", ["mobilenet_v2_fpn", "resnet18_fpn"])
def test_pyramid_strides_for_a_512_chip(name: str) -> None:
    backbone = _build(name).eval()
    with torch.no_grad():
        feats = backbone(torch.zeros(1, 3, 512, 512))
    shapes = {k: tuple(v.shape) for k, v in feats.items()}
    assert shapes == {
        "p2": (1, 32, 128, 128),
        "p3": (1, 32, 64, 64),
        "p4": (1, 32, 32, 32),
        "p5": (1, 32, 16, 16),
        "p6": (1, 32, 8, 8),
    }
    assert backbone.strides == {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}
    assert backbone.pooler_level_names == ["p2", "p3", "p4", "p5"]


@pytest.mark.parametrize("name", ["resnet50_fpn", "resnet101_fpn"])
def test_deep_resnets_build_with_min_level_3_and_no_p6(name: str) -> None:
    backbone = _build(name, min_level=3, use_p6=False).eval()
    with torch.no_grad():
        feats = backbone(torch.zeros(1, 3, 64, 64))
    assert [(k, v.shape[-1]) for k, v in feats.items()] == [("p3", 8), ("p4", 4), ("p5", 2)]


def test_unknown_backbone_is_named() -> None:
    with pytest.raises(KeyError, match="vgg16_fpn"):
        BACKBONE_REGISTRY.get("vgg16_fpn")


def _count(module: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in module.modules())


def test_norm_frozen_bn_replaces_every_batchnorm() -> None:
    backbone = _build("mobilenet_v2_fpn", norm="FrozenBN", freeze_at=0)
    assert _count(backbone, nn.BatchNorm2d) == 0
    assert _count(backbone, FrozenBatchNorm2d) > 30


def test_norm_bn_keeps_trained_bn_outside_the_frozen_stem() -> None:
    backbone = _build("mobilenet_v2_fpn", norm="BN", freeze_at=1)
    stem = backbone.body["0"], backbone.body["1"]
    assert all(_count(m, FrozenBatchNorm2d) > 0 and _count(m, nn.BatchNorm2d) == 0 for m in stem)
    assert all(not p.requires_grad for m in stem for p in m.parameters())
    assert _count(backbone.body["2"], nn.BatchNorm2d) > 0
    assert all(p.requires_grad for p in backbone.body["2"].parameters())


def test_norm_gn_and_syncbn() -> None:
    gn = _build("mobilenet_v2_fpn", norm="GN", freeze_at=0)
    assert _count(gn, nn.BatchNorm2d) == 0 and _count(gn, nn.GroupNorm) > 30
    groups = {m.num_channels: m.num_groups for m in gn.modules() if isinstance(m, nn.GroupNorm)}
    assert groups[16] == 16 and groups[24] == 8 and groups[96] == 32
    sync = _build("resnet18_fpn", norm="SyncBN", freeze_at=1)
    assert _count(sync, nn.SyncBatchNorm) > 0
    sync.train()
    out = sync(torch.rand(2, 3, 64, 64))  # single process: plain batch statistics
    assert torch.isfinite(out["p2"]).all()


@pytest.mark.parametrize(
    ("freeze_at", "frozen", "trainable"),
    [(0, [], ["conv1", "layer1"]), (2, ["conv1", "layer1"], ["layer2"])],
)
def test_freeze_at_counts_stem_then_stages(
    freeze_at: int, frozen: list[str], trainable: list[str]
) -> None:
    body = _build("resnet18_fpn", freeze_at=freeze_at).body
    for name in frozen:
        assert all(not p.requires_grad for p in body[name].parameters())
    for name in trainable:
        assert all(p.requires_grad for p in body[name].parameters())


def test_convert_norm_unknown_name_is_named() -> None:
    with pytest.raises(KeyError, match="LayerNorm"):
        convert_norm(nn.Sequential(nn.BatchNorm2d(4)), "LayerNorm")
