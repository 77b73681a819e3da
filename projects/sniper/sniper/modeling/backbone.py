"""Backbones: torchvision trunks (MobileNetV2, ResNet-18/50/101) with an FPN down to stride 4.

Every backbone returns an OrderedDict of pyramid levels named "p{level}" (stride 2**level
chip px), from "p{min_level}" to "p5" and, when enabled, "p6" (a stride-2 subsampling of
P5 used by the RPN only), all with `out_channels` channels. torchvision's own MobileNet FPN
starts at stride 32 (and 16); here MobileNetV2 contributes its stride-4, 8, 16 and 32
features, which small objects (8-30 px in a chip) need.

Trunk stages follow detectron2 naming: stage 0 = stem (stride 2 or 4 px), stages 1-4 =
res2..res5 (strides 4, 8, 16, 32 px). `freeze_at = k` freezes the stem and the first k-1
res stages (FrozenBN + no grad).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch.nn.functional as F
import torchvision
from fvcore.common.config import CfgNode
from fvcore.common.registry import Registry
from torch import Tensor, nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.resnet import Bottleneck
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, FeaturePyramidNetwork

from .norms import convert_norm, freeze_children, head_norm_layer
from .weights import load_trunk_weights

__all__ = [
    "BACKBONE_REGISTRY",
    "FPNBackbone",
    "LastLevelP6",
    "build_backbone",
    "mobilenet_v2_fpn",
    "move_stride_to_1x1",
    "resnet18_fpn",
    "resnet50_fpn",
    "resnet101_fpn",
]

BACKBONE_REGISTRY = Registry("BACKBONE")
BACKBONE_REGISTRY.__doc__ = (
    "Backbone builders: fn(norm, freeze_at, weights, out_channels, min_level, use_p6, "
    "fpn_norm='', stride_in_1x1=False) -> FPNBackbone. Registered names are the "
    "MODEL.BACKBONE.NAME values."
)


class LastLevelP6(ExtraFPNBlock):
    """Appends P6 = P5 subsampled by 2 (max-pool with kernel 1), named `name`."""

    def __init__(self, name: str = "p6") -> None:
        super().__init__()
        self.name = name

    def forward(
        self, results: list[Tensor], x: list[Tensor], names: list[str]
    ) -> tuple[list[Tensor], list[str]]:
        """Add the extra level to the FPN `results` (stride of the last level times 2)."""
        results.append(F.max_pool2d(results[-1], kernel_size=1, stride=2, padding=0))
        names.append(self.name)
        return results, names


class FPNBackbone(nn.Module):
    """Trunk body + FeaturePyramidNetwork.

    Args:
        body: module mapping a (N, 3, H, W) batch to an OrderedDict of trunk features
            named "p{level}" for levels min_level..5.
        in_channels: channels of those trunk features, finest first.
        out_channels: channels of every pyramid level.
        min_level: finest level (2 = stride 4 px).
        use_p6: add "p6" (stride 64 px).
        fpn_norm: norm after each FPN conv, "" (none), "BN", "SN" or "SN_INLN" (`head_norm_layer`).

    Attributes:
        out_channels (int), level_names (list[str]): all output names, finest first,
        pooler_level_names (list[str]): levels used by RoIAlign (without P6),
        strides (dict[str, int]): stride in chip px of each level.
    """

    def __init__(
        self,
        body: nn.Module,
        in_channels: list[int],
        out_channels: int,
        min_level: int,
        use_p6: bool,
        fpn_norm: str = "",
    ) -> None:
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(
            in_channels_list=list(in_channels),
            out_channels=out_channels,
            extra_blocks=LastLevelP6("p6") if use_p6 else None,
            norm_layer=head_norm_layer(fpn_norm),
        )
        self.out_channels = out_channels
        self.pooler_level_names = [f"p{lvl}" for lvl in range(min_level, 6)]
        self.level_names = self.pooler_level_names + (["p6"] if use_p6 else [])
        self.strides = {name: 2 ** int(name[1:]) for name in self.level_names}

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        """(N, 3, H, W) normalized batch, H and W multiples of 32 -> pyramid features,
        level "pL" of shape (N, out_channels, H / 2**L, W / 2**L)."""
        return self.fpn(self.body(x))


@dataclass(frozen=True)
class TrunkSpec:
    """Where the stages of a torchvision classifier are.

    arch: torchvision model name; container: attribute holding the stage children ("" =
    the model); stages: child names of the stem and res2..res5; channels: output channels
    of res2..res5.
    """

    arch: str
    container: str
    stages: tuple[tuple[str, ...], ...]
    channels: tuple[int, int, int, int]


_MOBILENET_V2 = TrunkSpec(
    "mobilenet_v2",
    "features",
    (
        ("0", "1"),
        ("2", "3"),
        ("4", "5", "6"),
        tuple(str(i) for i in range(7, 14)),
        ("14", "15", "16", "17"),
    ),
    (24, 32, 96, 320),
)
_RESNET_STAGES = (
    ("conv1", "bn1", "relu", "maxpool"),
    ("layer1",),
    ("layer2",),
    ("layer3",),
    ("layer4",),
)


def _resnet_spec(arch: str, channels: tuple[int, int, int, int]) -> TrunkSpec:
    return TrunkSpec(arch, "", _RESNET_STAGES, channels)


def move_stride_to_1x1(model: nn.Module, arch: str) -> None:
    """Put the stride 2 of the first block of res3, res4 and res5 of the torchvision ResNet
    `model` in its 1x1 conv (conv1) instead of its 3x3 (conv2), as the MSRA ResNets of
    Detectron / detectron2 (STRIDE_IN_1X1); same output sizes, other features.

    Raises:
        ValueError: `model` is not a bottleneck ResNet (the message names `arch`).
    """
    layers = [getattr(model, f"layer{k}", None) for k in (2, 3, 4)]
    if not all(isinstance(layer, nn.Sequential) for layer in layers) or not all(
        isinstance(layer[0], Bottleneck) for layer in layers
    ):
        raise ValueError(
            "MODEL.BACKBONE.STRIDE_IN_1X1 needs a bottleneck ResNet (resnet50_fpn, "
            f"resnet101_fpn), not {arch}"
        )
    for layer in layers:
        layer[0].conv1.stride = (2, 2)
        layer[0].conv2.stride = (1, 1)


def build_trunk_fpn(
    spec: TrunkSpec,
    norm: str,
    freeze_at: int,
    weights: str,
    out_channels: int,
    min_level: int,
    use_p6: bool,
    fpn_norm: str = "",
    stride_in_1x1: bool = False,
) -> FPNBackbone:
    """Build the torchvision trunk `spec.arch`, move its strides into the 1x1 convs when
    `stride_in_1x1` (`move_stride_to_1x1`), load `weights`, convert norms, freeze the first
    `freeze_at` stages and put an FPN (levels min_level..5 [+6], norm `fpn_norm`) on top."""
    if not 0 <= freeze_at <= len(spec.stages):
        raise ValueError(f"freeze_at must be in [0, {len(spec.stages)}], got {freeze_at}")
    if min_level not in (2, 3, 4):
        raise ValueError(f"min_level must be 2, 3 or 4, got {min_level}")
    model = torchvision.models.get_model(spec.arch, weights=None)
    if stride_in_1x1:
        move_stride_to_1x1(model, spec.arch)
    load_trunk_weights(model, spec.arch, weights)
    container = getattr(model, spec.container) if spec.container else model
    container = convert_norm(container, norm)
    for stage in spec.stages[:freeze_at]:
        freeze_children(container, stage)
    levels = range(min_level, 6)
    return_layers = {spec.stages[lvl - 1][-1]: f"p{lvl}" for lvl in levels}
    body = IntermediateLayerGetter(container, return_layers=return_layers)
    in_channels = [spec.channels[lvl - 2] for lvl in levels]
    return FPNBackbone(body, in_channels, out_channels, min_level, use_p6, fpn_norm)


@BACKBONE_REGISTRY.register()
def mobilenet_v2_fpn(
    norm: str,
    freeze_at: int,
    weights: str,
    out_channels: int,
    min_level: int,
    use_p6: bool,
    fpn_norm: str = "",
    stride_in_1x1: bool = False,
) -> FPNBackbone:
    """MobileNetV2 (features at strides 4/8/16/32 px: 24/32/96/320 ch) + FPN."""
    return build_trunk_fpn(
        _MOBILENET_V2,
        norm,
        freeze_at,
        weights,
        out_channels,
        min_level,
        use_p6,
        fpn_norm,
        stride_in_1x1,
    )


@BACKBONE_REGISTRY.register()
def resnet18_fpn(
    norm: str,
    freeze_at: int,
    weights: str,
    out_channels: int,
    min_level: int,
    use_p6: bool,
    fpn_norm: str = "",
    stride_in_1x1: bool = False,
) -> FPNBackbone:
    """ResNet-18 (res2..res5: 64/128/256/512 ch) + FPN."""
    return build_trunk_fpn(
        _resnet_spec("resnet18", (64, 128, 256, 512)),
        norm,
        freeze_at,
        weights,
        out_channels,
        min_level,
        use_p6,
        fpn_norm,
        stride_in_1x1,
    )


@BACKBONE_REGISTRY.register()
def resnet50_fpn(
    norm: str,
    freeze_at: int,
    weights: str,
    out_channels: int,
    min_level: int,
    use_p6: bool,
    fpn_norm: str = "",
    stride_in_1x1: bool = False,
) -> FPNBackbone:
    """ResNet-50 (res2..res5: 256/512/1024/2048 ch) + FPN."""
    return build_trunk_fpn(
        _resnet_spec("resnet50", (256, 512, 1024, 2048)),
        norm,
        freeze_at,
        weights,
        out_channels,
        min_level,
        use_p6,
        fpn_norm,
        stride_in_1x1,
    )


@BACKBONE_REGISTRY.register()
def resnet101_fpn(
    norm: str,
    freeze_at: int,
    weights: str,
    out_channels: int,
    min_level: int,
    use_p6: bool,
    fpn_norm: str = "",
    stride_in_1x1: bool = False,
) -> FPNBackbone:
    """ResNet-101 (res2..res5: 256/512/1024/2048 ch) + FPN."""
    return build_trunk_fpn(
        _resnet_spec("resnet101", (256, 512, 1024, 2048)),
        norm,
        freeze_at,
        weights,
        out_channels,
        min_level,
        use_p6,
        fpn_norm,
        stride_in_1x1,
    )


def build_backbone(cfg: CfgNode) -> FPNBackbone:
    """Build MODEL.BACKBONE.NAME from BACKBONE_REGISTRY with the MODEL.BACKBONE/FPN keys
    (MODEL.FPN.NORM is passed as `fpn_norm`, MODEL.BACKBONE.STRIDE_IN_1X1 as
    `stride_in_1x1`)."""
    b = cfg.MODEL.BACKBONE
    return BACKBONE_REGISTRY.get(b.NAME)(
        norm=b.NORM,
        freeze_at=b.FREEZE_AT,
        weights=b.WEIGHTS,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        min_level=cfg.MODEL.FPN.MIN_LEVEL,
        use_p6=cfg.MODEL.FPN.USE_P6,
        fpn_norm=cfg.MODEL.FPN.NORM,
        stride_in_1x1=b.STRIDE_IN_1X1,
    )
