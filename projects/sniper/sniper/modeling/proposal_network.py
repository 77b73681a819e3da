"""SniperRPN: backbone + FPN + ignore-aware RPN, no RoI heads (detectron2's `ProposalNetwork`).

The model of the first stage of negative chip mining (`sniper.engine.negative_mining`):
trained on positive chips, then run on whole training images to propose the regions that
become negative chips. Selected with `MODEL.META_ARCHITECTURE: "SniperRPN"`; it reads the
same MODEL.* keys as `SniperRCNN` (MODEL.ROI_* and MODEL.NUM_CLASSES are unused).

Inputs and training targets are those of `SniperRCNN` (chip px; `labels` are checked to be
int64 but their values are unused: every GT box is an object).

Outputs: in training `{"loss_objectness", "loss_rpn_box_reg"}`; in eval a list with one dict
per image: `{"boxes" float (P, 4) XYXY input px, "scores" float (P,) objectness probability,
"labels" int64 (P,) all 1}`, at most MODEL.RPN.POST_NMS_TOPK_TEST proposals, best first.
"""

from __future__ import annotations

import torch
from fvcore.common.config import CfgNode
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList

from sniper.cli_errors import ConfigError

from .backbone import build_backbone
from .build import META_ARCH_REGISTRY
from .detector import check_targets
from .rpn import IgnoreAwareRPN, build_rpn
from .transform import NoResizeTransform

__all__ = ["SniperRPN"]


@META_ARCH_REGISTRY.register()
class SniperRPN(nn.Module):
    """Proposal network for SNIPER chips (module doc gives inputs, targets and outputs).

    Args:
        backbone: FPNBackbone-like module with `out_channels`, returning pyramid features.
        rpn: IgnoreAwareRPN (its forward also returns objectness scores).
        transform: NoResizeTransform (normalize + pad, never resize).
    """

    def __init__(
        self, backbone: nn.Module, rpn: IgnoreAwareRPN, transform: NoResizeTransform
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.rpn = rpn
        self.transform = transform

    @classmethod
    def from_config(cls, cfg: CfgNode) -> SniperRPN:
        """Build from MODEL.BACKBONE / FPN / RPN, MODEL.PIXEL_*, INPUT.FORMAT and SNIPER.*.

        Raises:
            ConfigError: MODEL.MASK_ON (a proposal network has no RoI heads to put masks on).
        """
        if cfg.MODEL.MASK_ON:
            raise ConfigError(
                f"config key MODEL.MASK_ON = True: {cls.__name__} has no RoI heads; use "
                "SniperRCNN (or AutoFocusRCNN) for masks",
                key="MODEL.MASK_ON",
            )
        backbone = build_backbone(cfg)
        rpn = build_rpn(cfg, backbone.out_channels, len(backbone.level_names))
        transform = NoResizeTransform(
            cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD, cfg.INPUT.FORMAT, size_divisible=32
        )
        return cls(backbone, rpn, transform)

    def forward(
        self,
        images: list[Tensor],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """RPN loss dict in training mode, per-image proposals in eval mode."""
        if self.training:
            if targets is None:
                raise ValueError("targets are required in training mode")
            check_targets(targets, len(images))
        image_list, targets = self.transform(images, targets if self.training else None)
        features = self.backbone(image_list.tensors)
        return self.forward_rpn(image_list, features, targets)

    def forward_rpn(
        self,
        image_list: ImageList,
        features: dict[str, Tensor],
        targets: list[dict[str, Tensor]] | None,
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """The RPN on backbone features: its losses (training) or the proposals (eval)."""
        proposals, objectness, losses = self.rpn(image_list, features, targets)
        if self.training:
            return losses
        return [
            {"boxes": b, "scores": s, "labels": s.new_ones(s.shape, dtype=torch.int64)}
            for b, s in zip(proposals, objectness, strict=True)
        ]
