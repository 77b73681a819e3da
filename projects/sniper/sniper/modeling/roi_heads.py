"""Range- and ignore-aware RoI box heads: torchvision's RoIHeads with SNIPER's sampling rules.

Training rules, per chip (targets in chip px):

1. proposals whose size sqrt(w*h) is outside the chip's half-open `valid_range` [lo, hi) are
   dropped before sampling;
2. GT boxes are appended to the proposals only when their size is in that range;
3. proposals are matched to all GT boxes (labels 1..C fg, 0 bg, -1 between thresholds);
4. a proposal that is not fg and has IoU > `ignore_iou_thresh` with an ignore box gets -1
   and is never sampled (neither fg nor bg).

Inference is torchvision's: per-class NMS, detections in input pixels, labels 1..C.

With a mask branch (``MODEL.MASK_ON``, `sniper.modeling.mask_head`) training adds
``loss_mask`` on the sampled positive RoIs whose GT is valid at the chip's scale, and
inference adds ``mask_patches`` float32 (D, M, M) per image.
"""

from __future__ import annotations

import torch
from fvcore.common.config import CfgNode
from torch import Tensor
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss
from torchvision.ops import MultiScaleRoIAlign

from .mask_head import build_mask_branch, mask_loss, mask_patches, mask_training_rois
from .matching import in_range_mask, max_iou_with
from .norms import head_norm_layer

__all__ = ["RangeAwareRoIHeads", "build_roi_heads"]


class RangeAwareRoIHeads(RoIHeads):
    """RoIHeads honouring `valid_range` (float32 (2,), chip px, hi may be inf) and
    `ignore_boxes` (float32 (M, 4), chip px) in the targets; both are optional.

    Args: those of torchvision's `RoIHeads` for boxes, plus
        ignore_iou_thresh: IoU with an ignore box above which a non-fg proposal is -1.
        mask_roi_pool, mask_head, mask_predictor: the optional mask branch
            (`sniper.modeling.mask_head.build_mask_branch`); all three or none.
    """

    def __init__(
        self,
        box_roi_pool: MultiScaleRoIAlign,
        box_head: torch.nn.Module,
        box_predictor: torch.nn.Module,
        fg_iou_thresh: float,
        bg_iou_thresh: float,
        batch_size_per_image: int,
        positive_fraction: float,
        bbox_reg_weights: tuple[float, float, float, float] | None,
        score_thresh: float,
        nms_thresh: float,
        detections_per_img: int,
        ignore_iou_thresh: float,
        mask_roi_pool: MultiScaleRoIAlign | None = None,
        mask_head: torch.nn.Module | None = None,
        mask_predictor: torch.nn.Module | None = None,
    ) -> None:
        parts = (mask_roi_pool, mask_head, mask_predictor)
        if any(p is None for p in parts) and any(p is not None for p in parts):
            raise ValueError("the mask branch needs mask_roi_pool, mask_head and mask_predictor")
        super().__init__(
            box_roi_pool,
            box_head,
            box_predictor,
            fg_iou_thresh,
            bg_iou_thresh,
            batch_size_per_image,
            positive_fraction,
            bbox_reg_weights,
            score_thresh,
            nms_thresh,
            detections_per_img,
            mask_roi_pool=mask_roi_pool,
            mask_head=mask_head,
            mask_predictor=mask_predictor,
        )
        self.ignore_iou_thresh = float(ignore_iou_thresh)

    def label_proposals(
        self, proposals: list[Tensor], targets: list[dict[str, Tensor]]
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Apply rules 1-4 (module doc) before sampling.

        Returns per image: proposals (K, 4) (in range, plus in-range GT appended),
        matched GT index (K,) int64 (clamped to >= 0) and labels (K,) int64 in {-1, 0..C}.
        """
        kept, matched, labels = [], [], []
        for props, target in zip(proposals, targets, strict=True):
            gt_boxes = target["boxes"].to(props.dtype)
            valid_range = target.get("valid_range")
            props = props[in_range_mask(props, valid_range)]
            props = torch.cat([props, gt_boxes[in_range_mask(gt_boxes, valid_range)]])
            (idx,), (lab,) = self.assign_targets_to_proposals(
                [props], [gt_boxes], [target["labels"]]
            )
            ignored = (lab <= 0) & (
                max_iou_with(props, target.get("ignore_boxes")) > self.ignore_iou_thresh
            )
            lab[ignored] = -1
            kept.append(props)
            matched.append(idx)
            labels.append(lab)
        return kept, matched, labels

    def select_training_samples(
        self, proposals: list[Tensor], targets: list[dict[str, Tensor]] | None
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
        """Label (rules 1-4), sample fg/bg and encode regression targets.

        Returns per image: sampled proposals (S, 4), matched GT index (S,), labels (S,)
        int64 in 0..C, regression targets (S, 4).
        """
        self.check_targets(targets)
        assert targets is not None
        proposals, matched_idxs, labels = self.label_proposals(proposals, targets)
        sampled_inds = self.subsample(labels)
        matched_gt_boxes = []
        for i, inds in enumerate(sampled_inds):
            proposals[i] = proposals[i][inds]
            labels[i] = labels[i][inds]
            matched_idxs[i] = matched_idxs[i][inds]
            gt_boxes = targets[i]["boxes"].to(proposals[i].dtype)
            if gt_boxes.numel() == 0:
                gt_boxes = proposals[i].new_zeros((1, 4))
            matched_gt_boxes.append(gt_boxes[matched_idxs[i]])
        regression_targets = self.box_coder.encode(matched_gt_boxes, proposals)
        return proposals, matched_idxs, labels, regression_targets

    def forward(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """Training: {"loss_classifier", "loss_box_reg"} (plus "loss_mask" with a mask
        branch). Inference, per image: {"boxes" (D, 4) input px, "scores" (D,), "labels" (D,)
        int64 in 1..C} (plus "mask_patches" float32 (D, M, M) with a mask branch)."""
        if self.training:
            assert targets is not None
            for t in targets:
                if not t["boxes"].is_floating_point() or t["labels"].dtype != torch.int64:
                    raise TypeError("target boxes must be float and labels int64")
            proposals, matched_idxs, labels, regression_targets = self.select_training_samples(
                proposals, targets
            )
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        if self.training:
            if sum(int(lab.numel()) for lab in labels) == 0:
                zero = class_logits.sum() * 0.0 + box_regression.sum() * 0.0
                losses = {"loss_classifier": zero, "loss_box_reg": zero.clone()}
            else:
                loss_cls, loss_box = fastrcnn_loss(
                    class_logits, box_regression, labels, regression_targets
                )
                losses = {"loss_classifier": loss_cls, "loss_box_reg": loss_box}
            if self.has_mask():
                rois, matched = mask_training_rois(proposals, matched_idxs, labels, targets)
                losses["loss_mask"] = mask_loss(
                    *self._mask_modules(), features, rois, matched, targets, image_shapes
                )
            return [], losses
        boxes, scores, labels = self.postprocess_detections(
            class_logits, box_regression, proposals, image_shapes
        )
        results = [
            {"boxes": b, "scores": s, "labels": c}
            for b, s, c in zip(boxes, scores, labels, strict=True)
        ]
        if self.has_mask():
            patches = mask_patches(*self._mask_modules(), features, boxes, labels, image_shapes)
            for result, patch in zip(results, patches, strict=True):
                result["mask_patches"] = patch
        return results, {}

    def _mask_modules(self) -> tuple[MultiScaleRoIAlign, torch.nn.Module, torch.nn.Module]:
        assert self.mask_roi_pool is not None and self.mask_head is not None
        assert self.mask_predictor is not None
        return self.mask_roi_pool, self.mask_head, self.mask_predictor


def build_roi_heads(cfg: CfgNode, in_channels: int, level_names: list[str]) -> RangeAwareRoIHeads:
    """RangeAwareRoIHeads from MODEL.ROI_HEADS.*, MODEL.ROI_BOX_HEAD.*, MODEL.NUM_CLASSES and
    SNIPER.ROI_IGNORE_IOU, with the mask branch of MODEL.ROI_MASK_HEAD.* when MODEL.MASK_ON.
    The box head is torchvision's `FastRCNNConvFCHead`: NUM_CONV 3x3
    convs of CONV_DIM channels (norm NORM), then NUM_FC fc layers of FC_DIM (0 convs, 2 fc =
    `fasterrcnn_resnet50_fpn`'s TwoMLPHead; 4 convs with BN, 1 fc = `_v2`'s head).

    Args:
        in_channels: channels of the pyramid features.
        level_names: feature names RoIAlign pools from (finest first, without P6).
    """
    box = cfg.MODEL.ROI_BOX_HEAD
    heads = cfg.MODEL.ROI_HEADS
    resolution = box.POOLER_RESOLUTION
    pooler = MultiScaleRoIAlign(
        featmap_names=list(level_names),
        output_size=resolution,
        sampling_ratio=box.POOLER_SAMPLING_RATIO,
    )
    head = FastRCNNConvFCHead(
        (in_channels, resolution, resolution),
        conv_layers=[box.CONV_DIM] * box.NUM_CONV,
        fc_layers=[box.FC_DIM] * box.NUM_FC,
        norm_layer=head_norm_layer(box.NORM),
    )
    predictor = FastRCNNPredictor(box.FC_DIM, cfg.MODEL.NUM_CLASSES + 1)
    masks = build_mask_branch(cfg, in_channels, level_names) if cfg.MODEL.MASK_ON else None
    return RangeAwareRoIHeads(
        box_roi_pool=pooler,
        box_head=head,
        box_predictor=predictor,
        fg_iou_thresh=heads.FG_IOU,
        bg_iou_thresh=heads.BG_IOU,
        batch_size_per_image=heads.BATCH_SIZE_PER_IMAGE,
        positive_fraction=heads.POSITIVE_FRACTION,
        bbox_reg_weights=tuple(float(w) for w in box.BBOX_REG_WEIGHTS),
        score_thresh=heads.SCORE_THRESH_TEST,
        nms_thresh=heads.NMS_THRESH_TEST,
        detections_per_img=heads.DETECTIONS_PER_IMAGE,
        ignore_iou_thresh=cfg.SNIPER.ROI_IGNORE_IOU,
        mask_roi_pool=masks[0] if masks else None,
        mask_head=masks[1] if masks else None,
        mask_predictor=masks[2] if masks else None,
    )
