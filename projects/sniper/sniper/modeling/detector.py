"""SniperRCNN: Faster R-CNN + FPN that never resizes, with SNIPER's ignore-aware heads.

`SniperRPN` (`sniper.modeling.proposal_network`) is the same without RoI heads.

Inputs (both modes): a list of (3, H, W) images, uint8 or float in 0-255, channel order
INPUT.FORMAT; chips at their chip size, test images already at their test scale.

Training targets, per image (all in the pixels of that input, i.e. chip px):
    boxes        float32 (N, 4) XYXY valid GT boxes (N may be 0: negative chip)
    labels       int64 (N,) classes 1..C (0 = background is never a GT label)
    ignore_boxes float32 (M, 4) optional, GT boxes of the wrong size for this chip's scale
    valid_range  float32 (2,) optional, [lo, hi) (half-open) box size sqrt(w*h) range in chip px
    masks        uint8 (N, H, W) with MODEL.MASK_ON, row i the mask of boxes[i] (chip px)

Outputs: in training a loss dict {"loss_objectness", "loss_rpn_box_reg", "loss_classifier",
"loss_box_reg"} (plus "loss_mask" with MODEL.MASK_ON); in eval a list with one dict per image:
{"boxes" float (D, 4) XYXY input px, "scores" (D,), "labels" int64 (D,) in 1..C}
(torchvision convention; subtract 1 for 0-based dataset ids), plus with MODEL.MASK_ON
"mask_patches" float32 (D, 28, 28), each detection's mask probabilities over its box
(`sniper.modeling.mask_head`).
"""

from __future__ import annotations

import torch
from fvcore.common.config import CfgNode
from torch import Tensor, nn
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.image_list import ImageList

from .backbone import build_backbone
from .build import META_ARCH_REGISTRY
from .roi_heads import RangeAwareRoIHeads, build_roi_heads
from .rpn import IgnoreAwareRPN, build_rpn
from .transform import NoResizeTransform

__all__ = ["SniperRCNN", "check_targets"]


def check_targets(
    targets: list[dict[str, Tensor]],
    num_images: int,
    num_classes: int | None = None,
    with_masks: bool = False,
) -> None:
    """Validate training targets (see module doc); labels must lie in 1..num_classes when
    `num_classes` is given; with `with_masks` (a mask branch) each target needs `masks`
    (V, H, W), row i the mask of boxes[i] (input px).

    Raises:
        ValueError: naming the image index and the offending field.
    """
    if len(targets) != num_images:
        raise ValueError(f"got {len(targets)} targets for {num_images} images")
    for i, t in enumerate(targets):
        boxes, labels = t.get("boxes"), t.get("labels")
        if boxes is None or labels is None:
            raise ValueError(f"target {i} needs 'boxes' and 'labels'")
        if boxes.dim() != 2 or boxes.shape[-1] != 4 or not boxes.is_floating_point():
            raise ValueError(f"target {i}: boxes must be float (N, 4), got {tuple(boxes.shape)}")
        if labels.dtype != torch.int64 or labels.shape != boxes.shape[:1]:
            raise ValueError(f"target {i}: labels must be int64 (N,) matching boxes")
        if (
            num_classes is not None
            and labels.numel()
            and not (labels.min() >= 1 and labels.max() <= num_classes)
        ):
            raise ValueError(f"target {i}: labels {labels.tolist()} not in 1..{num_classes}")
        degenerate = (boxes[:, 2:] <= boxes[:, :2]).any(dim=1)
        if degenerate.any():
            bad = boxes[degenerate][0].tolist()
            raise ValueError(f"target {i}: degenerate box {bad} (needs x2 > x1 and y2 > y1)")
        ignore = t.get("ignore_boxes")
        if ignore is not None and (ignore.dim() != 2 or ignore.shape[-1] != 4):
            raise ValueError(f"target {i}: ignore_boxes must be (M, 4), got {tuple(ignore.shape)}")
        valid_range = t.get("valid_range")
        if valid_range is not None and valid_range.numel() != 2:
            raise ValueError(f"target {i}: valid_range must hold [lo, hi]")
        if with_masks:
            _check_masks(t, i)


def _check_masks(target: dict[str, Tensor], i: int) -> None:
    masks = target.get("masks")
    if masks is None:
        raise ValueError(f"target {i} has no 'masks' (MODEL.MASK_ON needs them in training)")
    n = target["boxes"].shape[0]
    if masks.dim() != 3 or masks.shape[0] != n:
        raise ValueError(
            f"target {i}: masks must be (V, H, W) with V = {n} boxes, got {tuple(masks.shape)}"
        )


@META_ARCH_REGISTRY.register()
class SniperRCNN(GeneralizedRCNN):
    """Faster R-CNN + FPN for SNIPER chips (module doc gives inputs, targets and outputs).

    Args:
        backbone: FPNBackbone-like module with `out_channels`, returning pyramid features.
        rpn: IgnoreAwareRPN (its forward also returns objectness scores).
        roi_heads: RangeAwareRoIHeads.
        transform: NoResizeTransform (normalize + pad, never resize).
    """

    def __init__(
        self,
        backbone: nn.Module,
        rpn: IgnoreAwareRPN,
        roi_heads: RangeAwareRoIHeads,
        transform: NoResizeTransform,
    ) -> None:
        super().__init__(backbone, rpn, roi_heads, transform)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> SniperRCNN:
        """Build from MODEL.*, INPUT.FORMAT and SNIPER.* (needs `add_sniper_config`)."""
        backbone = build_backbone(cfg)
        rpn = build_rpn(cfg, backbone.out_channels, len(backbone.level_names))
        roi_heads = build_roi_heads(cfg, backbone.out_channels, backbone.pooler_level_names)
        transform = NoResizeTransform(
            cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD, cfg.INPUT.FORMAT, size_divisible=32
        )
        return cls(backbone, rpn, roi_heads, transform)

    @property
    def num_classes(self) -> int:
        """Number of object classes C (labels 1..C)."""
        return int(self.roi_heads.box_predictor.cls_score.out_features) - 1

    def forward(  # type: ignore[override]
        self,
        images: list[Tensor],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """Loss dict in training mode, per-image detections in eval mode."""
        image_list, targets, features = self.forward_features(images, targets)
        return self.forward_heads(image_list, features, targets)

    def forward_features(
        self,
        images: list[Tensor],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[ImageList, list[dict[str, Tensor]] | None, dict[str, Tensor]]:
        """Checks targets (training), normalizes and pads, runs the backbone.

        Returns:
            (padded ImageList, targets or None in eval mode, FPN features by name).
        """
        if self.training:
            if targets is None:
                raise ValueError("targets are required in training mode")
            with_masks = bool(getattr(self.roi_heads, "has_mask", lambda: False)())
            check_targets(targets, len(images), self.num_classes, with_masks)
        image_list, targets = self.transform(images, targets if self.training else None)
        return image_list, targets, self.backbone(image_list.tensors)

    def forward_heads(
        self,
        image_list: ImageList,
        features: dict[str, Tensor],
        targets: list[dict[str, Tensor]] | None,
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """RPN and RoI heads on backbone features: losses (training) or detections."""
        proposals, _, losses = self.rpn(image_list, features, targets)
        detections, head_losses = self.roi_heads(
            features, proposals, image_list.image_sizes, targets
        )
        if self.training:
            losses.update(head_losses)
            return losses
        return detections
