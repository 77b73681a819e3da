"""The mask branch of the RoI heads (``MODEL.MASK_ON``): torchvision's Mask R-CNN head on chips.

Architecture (torchvision's ``maskrcnn_resnet50_fpn``): RoIAlign of
``MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION`` (14) cells from the pyramid, ``NUM_CONV`` (4) 3x3
convs of ``CONV_DIM`` (256) channels, a 2x2 stride-2 deconv and a 1x1 conv giving per-class
``M x M`` logits (``M = 2 * POOLER_RESOLUTION`` = 28). The module names (``mask_roi_pool``,
``mask_head``, ``mask_predictor``) are torchvision's, so Mask R-CNN weights load as they are.

Training rule (docs/design.md section 4, "masks on chips"): mask targets are made only for the
*sampled positive* RoIs (label >= 1) whose matched GT box is valid at the chip's scale (its size
in the chip's half-open ``valid_range``). The GT masks (``target["masks"]`` uint8
``(V, k, k)`` chip px, row ``i`` the mask of ``target["boxes"][i]``) are cut to each RoI at
``M x M`` by *aligned* RoIAlign (``project_masks``: chip pixel ``u`` covers ``[u, u + 1)``, so a
cell's target is the mask averaged over the cell, the frame in which
``sniper.inference.mask_patches`` pastes a patch back; torchvision's ``project_masks_on_boxes``
samples half a pixel off); the loss is the per-pixel binary cross-entropy on the logits of the
GT class, as torchvision's ``maskrcnn_loss``. Ignore boxes have no masks and never match a
RoI, so they are never trained on.

Inference: the detections' boxes (input px) are pooled again and the sigmoid probabilities of
each detection's own class are returned as ``mask_patches`` float32 ``(D, M, M)``: the patch
covers the detection's box, divided into ``M x M`` equal cells. Nothing is pasted here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from fvcore.common.config import CfgNode
from torch import Tensor, nn
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import maskrcnn_inference
from torchvision.ops import MultiScaleRoIAlign, roi_align

from .matching import in_range_mask
from .norms import head_norm_layer

__all__ = ["build_mask_branch", "mask_loss", "mask_patches", "mask_training_rois", "project_masks"]


def build_mask_branch(
    cfg: CfgNode, in_channels: int, level_names: list[str]
) -> tuple[MultiScaleRoIAlign, MaskRCNNHeads, MaskRCNNPredictor]:
    """``(mask_roi_pool, mask_head, mask_predictor)`` from MODEL.ROI_MASK_HEAD.* and
    MODEL.NUM_CLASSES (module doc).

    Args:
        in_channels: channels of the pyramid features.
        level_names: feature names RoIAlign pools from (finest first, without P6).
    """
    head_cfg = cfg.MODEL.ROI_MASK_HEAD
    pool = MultiScaleRoIAlign(
        featmap_names=list(level_names),
        output_size=head_cfg.POOLER_RESOLUTION,
        sampling_ratio=head_cfg.POOLER_SAMPLING_RATIO,
    )
    layers = [head_cfg.CONV_DIM] * head_cfg.NUM_CONV
    head = MaskRCNNHeads(in_channels, layers, 1, norm_layer=head_norm_layer(head_cfg.NORM))
    last = layers[-1] if layers else in_channels
    predictor = MaskRCNNPredictor(last, head_cfg.CONV_DIM, cfg.MODEL.NUM_CLASSES + 1)
    return pool, head, predictor


def mask_training_rois(
    proposals: list[Tensor],
    matched_idxs: list[Tensor],
    labels: list[Tensor],
    targets: list[dict[str, Tensor]],
) -> tuple[list[Tensor], list[Tensor]]:
    """The RoIs that get mask targets (module doc), per image.

    Args:
        proposals: sampled RoIs per image, float ``(S, 4)`` chip px.
        matched_idxs: index of each RoI's matched GT in ``target["boxes"]``, int64 ``(S,)``.
        labels: class of each RoI, int64 ``(S,)`` in 0..C (0 = background).
        targets: with ``boxes`` ``(V, 4)`` and optional ``valid_range`` ``(2,)`` (chip px).

    Returns:
        Per image the kept RoIs ``(P, 4)`` and their matched GT index ``(P,)``.
    """
    rois, matched = [], []
    for props, idx, lab, target in zip(proposals, matched_idxs, labels, targets, strict=True):
        gt_boxes = target["boxes"]
        keep = lab > 0
        if gt_boxes.shape[0] == 0:  # a negative chip: no positives, no masks
            keep = torch.zeros_like(keep)
        else:
            gt_valid = in_range_mask(gt_boxes.to(props.dtype), target.get("valid_range"))
            keep = keep & gt_valid[idx.clamp(0, gt_boxes.shape[0] - 1)]
        rois.append(props[keep])
        matched.append(idx[keep])
    return rois, matched


def project_masks(gt_masks: Tensor, rois: Tensor, matched: Tensor, m: int) -> Tensor:
    """float ``(P, m, m)`` mask targets: GT mask ``matched[p]`` (of ``gt_masks`` ``(V, H, W)``,
    chip px) over RoI ``rois[p]`` (``(P, 4)`` XYXY chip px), each cell the bilinear mean of the
    mask over the cell (aligned RoIAlign, adaptive samples: pixel ``u`` covers ``[u, u + 1)``;
    a RoI with whole-pixel cells gets the exact mean of each cell's pixels)."""
    if rois.shape[0] == 0:
        return rois.new_zeros((0, m, m))
    indexed = torch.cat([matched.to(rois)[:, None], rois], dim=1)
    return roi_align(gt_masks[:, None].to(rois), indexed, (m, m), 1.0, aligned=True)[:, 0]


def mask_loss(
    pool: MultiScaleRoIAlign,
    head: nn.Module,
    predictor: nn.Module,
    features: dict[str, Tensor],
    rois: list[Tensor],
    matched: list[Tensor],
    targets: list[dict[str, Tensor]],
    image_shapes: list[tuple[int, int]],
) -> Tensor:
    """``loss_mask`` of the RoIs chosen by ``mask_training_rois`` (a zero that still reaches
    every mask parameter when there are none, so that DDP sees them used). Targets need
    ``masks`` (V, H, W) (checked by `sniper.modeling.detector.check_targets`)."""
    logits = predictor(head(pool(features, rois, image_shapes)))
    if sum(int(r.shape[0]) for r in rois) == 0:
        return logits.sum() * 0.0
    m = int(logits.shape[-1])
    mask_targets = torch.cat(
        [project_masks(t["masks"], r, i, m) for t, r, i in zip(targets, rois, matched, strict=True)]
    )
    labels = torch.cat([t["labels"][i] for t, i in zip(targets, matched, strict=True)])
    own = logits[torch.arange(labels.shape[0], device=labels.device), labels]
    return F.binary_cross_entropy_with_logits(own, mask_targets)


def mask_patches(
    pool: MultiScaleRoIAlign,
    head: nn.Module,
    predictor: nn.Module,
    features: dict[str, Tensor],
    boxes: list[Tensor],
    labels: list[Tensor],
    image_shapes: list[tuple[int, int]],
) -> list[Tensor]:
    """Per image float32 ``(D, M, M)`` mask probabilities of each detection's own class
    (``labels`` int64 ``(D,)`` in 1..C), covering its box (``boxes`` ``(D, 4)`` input px)."""
    logits = predictor(head(pool(features, boxes, image_shapes)))
    if logits.shape[0] == 0:
        m = int(logits.shape[-1])
        return [logits.new_zeros((0, m, m), dtype=torch.float32) for _ in boxes]
    return [p[:, 0].float() for p in maskrcnn_inference(logits, labels)]
