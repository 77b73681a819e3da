"""Ignore-aware RPN: torchvision's RegionProposalNetwork with SNIPER's anchor labelling.

Anchor labels (float32, per image): 1 = positive (IoU >= fg threshold with a valid GT box, or
the best anchor of a GT box), 0 = negative (IoU < bg threshold with every valid GT box),
-1 = not used in the loss: between the thresholds, or IoU > `ignore_iou_thresh` with any
ignore box of the chip. The ignore rule is applied last, so it wins over positive.
"""

from __future__ import annotations

from fvcore.common.config import CfgNode
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import (
    RegionProposalNetwork,
    RPNHead,
    concat_box_prediction_layers,
)

from .matching import max_iou_with

__all__ = ["IgnoreAwareRPN", "build_anchor_generator", "build_rpn"]


class IgnoreAwareRPN(RegionProposalNetwork):
    """RegionProposalNetwork whose targets may carry `ignore_boxes` (float32 (M, 4) chip px).

    Args: those of `RegionProposalNetwork`, plus
        ignore_iou_thresh: anchors with IoU strictly above this with an ignore box get -1.

    `forward` returns `(proposals, objectness, losses)`: unlike torchvision it also returns
    the sigmoid objectness of each kept proposal, used by `SniperRPN`.
    """

    def __init__(
        self,
        anchor_generator: AnchorGenerator,
        head: nn.Module,
        fg_iou_thresh: float,
        bg_iou_thresh: float,
        batch_size_per_image: int,
        positive_fraction: float,
        pre_nms_top_n: dict[str, int],
        post_nms_top_n: dict[str, int],
        nms_thresh: float,
        ignore_iou_thresh: float,
        score_thresh: float = 0.0,
    ) -> None:
        super().__init__(
            anchor_generator,
            head,
            fg_iou_thresh,
            bg_iou_thresh,
            batch_size_per_image,
            positive_fraction,
            pre_nms_top_n,
            post_nms_top_n,
            nms_thresh,
            score_thresh,
        )
        self.ignore_iou_thresh = float(ignore_iou_thresh)

    def assign_targets_to_anchors(
        self, anchors: list[Tensor], targets: list[dict[str, Tensor]]
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Per image: (A,) float32 labels in {1, 0, -1} and (A, 4) matched GT boxes.

        Args:
            anchors: per image (A, 4) anchors, chip px.
            targets: per image dict with `boxes` (N, 4) and optional `ignore_boxes` (M, 4).
        """
        labels, matched_gt_boxes = super().assign_targets_to_anchors(anchors, targets)
        for labels_img, anchors_img, target in zip(labels, anchors, targets, strict=True):
            ignore = target.get("ignore_boxes")
            overlap = max_iou_with(anchors_img, ignore)
            labels_img[overlap > self.ignore_iou_thresh] = -1.0
        return labels, matched_gt_boxes

    def forward(
        self,
        images: ImageList,
        features: dict[str, Tensor],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[list[Tensor], list[Tensor], dict[str, Tensor]]:
        """Proposals for a batch.

        Args:
            images: the padded batch and its unpadded image sizes.
            features: pyramid levels, finest first; all are used.
            targets: required in training (see `assign_targets_to_anchors`).

        Returns:
            proposals: per image (K, 4) float boxes in input pixels, clipped to the image.
            objectness: per image (K,) sigmoid objectness of those proposals.
            losses: {"loss_objectness", "loss_rpn_box_reg"} in training, else {}.
        """
        feature_list = list(features.values())
        objectness, pred_bbox_deltas = self.head(feature_list)
        anchors = self.anchor_generator(images, feature_list)
        num_images = len(anchors)
        num_anchors_per_level = [int(o[0].numel()) for o in objectness]
        objectness, pred_bbox_deltas = concat_box_prediction_layers(objectness, pred_bbox_deltas)
        proposals = self.box_coder.decode(pred_bbox_deltas.detach(), anchors)
        proposals = proposals.view(num_images, -1, 4)
        boxes, scores = self.filter_proposals(
            proposals, objectness, images.image_sizes, num_anchors_per_level
        )
        losses: dict[str, Tensor] = {}
        if self.training:
            if targets is None:
                raise ValueError("targets are required in training mode")
            labels, matched_gt_boxes = self.assign_targets_to_anchors(anchors, targets)
            regression_targets = self.box_coder.encode(matched_gt_boxes, anchors)
            loss_objectness, loss_rpn_box_reg = self.compute_loss(
                objectness, pred_bbox_deltas, labels, regression_targets
            )
            losses = {"loss_objectness": loss_objectness, "loss_rpn_box_reg": loss_rpn_box_reg}
        return boxes, scores, losses


def build_anchor_generator(cfg: CfgNode) -> AnchorGenerator:
    """AnchorGenerator from MODEL.ANCHOR_SIZES (chip px, one list per level) and
    MODEL.ASPECT_RATIOS (one list for all levels, or one per level)."""
    sizes = tuple(tuple(float(s) for s in level) for level in cfg.MODEL.ANCHOR_SIZES)
    ratios = [tuple(float(r) for r in level) for level in cfg.MODEL.ASPECT_RATIOS]
    if len(ratios) == 1:
        ratios = ratios * len(sizes)
    if len(ratios) != len(sizes):
        raise ValueError(
            f"MODEL.ASPECT_RATIOS has {len(ratios)} lists for {len(sizes)} anchor levels"
        )
    generator = AnchorGenerator(sizes=sizes, aspect_ratios=tuple(ratios))
    if len(set(generator.num_anchors_per_location())) != 1:
        raise ValueError("every level needs the same number of anchors (shared RPN head)")
    return generator


def build_rpn(cfg: CfgNode, in_channels: int, num_levels: int) -> IgnoreAwareRPN:
    """IgnoreAwareRPN from MODEL.RPN.*, MODEL.ANCHOR_* and SNIPER.RPN_* keys; the head is
    torchvision's `RPNHead` with MODEL.RPN.CONV_DEPTH 3x3 convs (1 as `fasterrcnn_resnet50_fpn`,
    2 as `fasterrcnn_resnet50_fpn_v2`).

    Args:
        in_channels: channels of the pyramid features.
        num_levels: number of pyramid levels (must equal len(MODEL.ANCHOR_SIZES)).
    """
    anchors = build_anchor_generator(cfg)
    if len(cfg.MODEL.ANCHOR_SIZES) != num_levels:
        raise ValueError(
            f"MODEL.ANCHOR_SIZES has {len(cfg.MODEL.ANCHOR_SIZES)} levels, backbone {num_levels}"
        )
    rpn = cfg.MODEL.RPN
    head = RPNHead(in_channels, anchors.num_anchors_per_location()[0], conv_depth=rpn.CONV_DEPTH)
    return IgnoreAwareRPN(
        anchor_generator=anchors,
        head=head,
        fg_iou_thresh=cfg.SNIPER.RPN_POS_IOU,
        bg_iou_thresh=cfg.SNIPER.RPN_NEG_IOU,
        batch_size_per_image=rpn.BATCH_SIZE_PER_IMAGE,
        positive_fraction=rpn.POSITIVE_FRACTION,
        pre_nms_top_n={"training": rpn.PRE_NMS_TOPK_TRAIN, "testing": rpn.PRE_NMS_TOPK_TEST},
        post_nms_top_n={"training": rpn.POST_NMS_TOPK_TRAIN, "testing": rpn.POST_NMS_TOPK_TEST},
        nms_thresh=rpn.NMS_THRESH,
        ignore_iou_thresh=cfg.SNIPER.RPN_IGNORE_IOU,
    )
