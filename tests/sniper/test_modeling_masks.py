"""The mask branch (MODEL.MASK_ON): which RoIs get mask targets, the loss, the eval patches,
the config joint (mapper -> model) and torchvision Mask R-CNN weights."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign

from sniper.config import setup_cfg
from sniper.modeling import build_model
from sniper.modeling.mask_head import mask_training_rois
from sniper.modeling.roi_heads import RangeAwareRoIHeads

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
CLASSES = 3


def _heads(score_thresh: float = 0.0) -> RangeAwareRoIHeads:
    torch.manual_seed(0)
    return RangeAwareRoIHeads(
        MultiScaleRoIAlign(["p3"], output_size=4, sampling_ratio=2),
        FastRCNNConvFCHead((8, 4, 4), [], [16]),
        FastRCNNPredictor(16, CLASSES + 1),
        fg_iou_thresh=0.5,
        bg_iou_thresh=0.5,
        batch_size_per_image=64,
        positive_fraction=1.0,
        bbox_reg_weights=None,
        score_thresh=score_thresh,
        nms_thresh=0.5,
        detections_per_img=50,
        ignore_iou_thresh=0.3,
        mask_roi_pool=MultiScaleRoIAlign(["p3"], output_size=7, sampling_ratio=2),
        mask_head=MaskRCNNHeads(8, [8, 8], 1),
        mask_predictor=MaskRCNNPredictor(8, 8, CLASSES + 1),
    )


def test_mask_rois_are_the_positives_whose_gt_is_in_range() -> None:
    props = torch.tensor(
        [[0, 0, 20, 20], [1, 1, 21, 21], [100, 100, 150, 150], [5, 5, 9, 9]], dtype=torch.float32
    )
    matched = torch.tensor([0, 0, 1, 0])
    labels = torch.tensor([2, 0, 1, 2])  # RoI 1 is background
    target = {
        "boxes": torch.tensor([[0.0, 0.0, 20.0, 20.0], [100.0, 100.0, 160.0, 160.0]]),
        "valid_range": torch.tensor([8.0, 40.0]),  # GT 1 (size 60) is out of range
    }
    rois, idx = mask_training_rois([props], [matched], [labels], [target])
    assert rois[0].tolist() == [[0, 0, 20, 20], [5, 5, 9, 9]]
    assert idx[0].tolist() == [0, 0]
    # a chip without GT (negative chip): nothing, whatever the labels say
    empty = {"boxes": torch.zeros((0, 4)), "valid_range": torch.tensor([0.0, 1e9])}
    rois, idx = mask_training_rois([props], [torch.zeros(4, dtype=torch.int64)], [labels], [empty])
    assert rois[0].shape == (0, 4) and idx[0].shape == (0,)


def _features() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return {"p3": torch.randn(1, 8, 32, 32)}


def _target(masks: torch.Tensor) -> dict[str, torch.Tensor]:
    return {
        "boxes": torch.tensor([[16.0, 16.0, 80.0, 80.0], [128.0, 128.0, 240.0, 240.0]]),
        "labels": torch.tensor([1, 2]),
        "valid_range": torch.tensor([0.0, 100.0]),  # GT 1 (size 112) is out of range
        "masks": masks,
    }


def _loss(heads: RangeAwareRoIHeads, masks: torch.Tensor) -> torch.Tensor:
    heads.train()
    torch.manual_seed(2)
    # RoI 1 (size 96, in range) matches GT 1 (size 112, out of range) with IoU 0.73
    props = [torch.tensor([[16.0, 16.0, 80.0, 80.0], [140.0, 140.0, 236.0, 236.0]])]
    _, losses = heads(_features(), props, [(256, 256)], [_target(masks)])
    return losses["loss_mask"]


def test_loss_uses_the_masks_of_valid_gt_only() -> None:
    heads = _heads()
    masks = torch.zeros((2, 256, 256), dtype=torch.uint8)
    masks[0, 20:60, 20:70] = 1
    masks[1, 130:200, 140:230] = 1
    base = _loss(heads, masks)
    changed_invalid = masks.clone()
    changed_invalid[1] = 1 - changed_invalid[1]
    assert torch.equal(_loss(heads, changed_invalid), base)  # never trained on
    changed_valid = masks.clone()
    changed_valid[0] = 1 - changed_valid[0]
    assert not torch.allclose(_loss(heads, changed_valid), base)


def test_loss_equals_bce_on_the_gt_class_of_the_cell_means() -> None:
    """Independent reference: the one valid positive (the GT box itself, class 1, 56 px =
    14 cells of 4 px) against the exact mean of the mask's pixels in each cell (pixel u
    covers [u, u + 1): the paste frame of sniper.inference.mask_patches), BCE on the class-1
    logits. torchvision's unaligned projection would blend half a pixel off."""
    heads = _heads()
    masks = torch.zeros((1, 256, 256), dtype=torch.uint8)
    masks[0, 21:59, 19:70] = 1
    heads.train()
    # the only positive is the appended GT (in range); the proposal is far background
    props = [torch.tensor([[300.0, 300.0, 310.0, 310.0]])]
    target = _target(masks)
    target["boxes"] = torch.tensor([[16.0, 16.0, 72.0, 72.0]])
    target["labels"] = target["labels"][:1]
    _, losses = heads(_features(), props, [(256, 256)], [target])
    box = target["boxes"]
    logits = heads.mask_predictor(
        heads.mask_head(heads.mask_roi_pool(_features(), [box], [(256, 256)]))
    )
    assert logits.shape[-1] == 14
    cell_means = masks[0, 16:72, 16:72].float().reshape(14, 4, 14, 4).mean(dim=(1, 3))
    assert set(cell_means.unique().tolist()) > {0.0, 1.0}  # partial cells exist
    expected = F.binary_cross_entropy_with_logits(logits[:, 1], cell_means[None])
    assert torch.allclose(losses["loss_mask"], expected, atol=1e-6)


def test_project_masks_cell_means_and_empty() -> None:
    from sniper.modeling.mask_head import project_masks

    masks = torch.zeros((2, 40, 40))
    masks[1, 10:20, 12:30] = 1
    rois = torch.tensor([[8.0, 8.0, 32.0, 32.0]])  # 24 px = 6 cells of 4 px
    out = project_masks(masks, rois, torch.tensor([1]), 6)
    assert torch.allclose(out[0], masks[1, 8:32, 8:32].reshape(6, 4, 6, 4).mean(dim=(1, 3)))
    assert project_masks(
        masks, torch.zeros((0, 4)), torch.zeros(0, dtype=torch.int64), 6
    ).shape == (0, 6, 6)


def test_no_valid_positive_gives_a_zero_loss_reaching_every_mask_parameter() -> None:
    heads = _heads()
    heads.train()
    target = {
        "boxes": torch.zeros((0, 4)),
        "labels": torch.zeros((0,), dtype=torch.int64),
        "masks": torch.zeros((0, 256, 256), dtype=torch.uint8),
    }
    _, losses = heads(_features(), [torch.tensor([[0.0, 0.0, 30.0, 30.0]])], [(256, 256)], [target])
    assert losses["loss_mask"].item() == 0.0
    sum(losses.values()).backward()
    for name, p in heads.named_parameters():
        if name.startswith(("mask_head", "mask_predictor")):
            assert p.grad is not None, name


def test_missing_masks_in_training_is_a_clear_error() -> None:
    from sniper.modeling.detector import check_targets

    target = _target(torch.zeros((2, 256, 256), dtype=torch.uint8))
    check_targets([target], 1, CLASSES, with_masks=True)
    del target["masks"]
    check_targets([target], 1, CLASSES)  # box-only models need none
    with pytest.raises(ValueError, match="target 0 has no 'masks'"):
        check_targets([target], 1, CLASSES, with_masks=True)
    target["masks"] = torch.zeros((1, 256, 256), dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"V = 2 boxes, got \(1, 256, 256\)"):
        check_targets([target], 1, CLASSES, with_masks=True)


def test_eval_patches_are_the_sigmoid_of_each_detections_own_class() -> None:
    heads = _heads(score_thresh=0.0).eval()
    props = [torch.tensor([[10.0, 10.0, 90.0, 90.0], [120.0, 100.0, 200.0, 220.0]])]
    with torch.no_grad():
        (out,), _ = heads(_features(), props, [(256, 256)])
        assert out["mask_patches"].shape == (len(out["boxes"]), 14, 14)
        assert out["mask_patches"].dtype == torch.float32
        logits = heads.mask_predictor(
            heads.mask_head(heads.mask_roi_pool(_features(), [out["boxes"]], [(256, 256)]))
        )
    own = logits[torch.arange(len(out["labels"])), out["labels"]].sigmoid()
    assert torch.allclose(out["mask_patches"], own)
    assert len(set(out["labels"].tolist())) > 1  # several classes: the row choice matters


def test_half_a_mask_branch_is_refused() -> None:
    with pytest.raises(ValueError, match="mask_roi_pool, mask_head and mask_predictor"):
        RangeAwareRoIHeads(
            MultiScaleRoIAlign(["p3"], output_size=4, sampling_ratio=2),
            FastRCNNConvFCHead((8, 4, 4), [], [16]),
            FastRCNNPredictor(16, 4),
            0.5,
            0.5,
            64,
            0.5,
            None,
            0.0,
            0.5,
            50,
            0.3,
            mask_head=MaskRCNNHeads(8, [8], 1),
        )


def _cfg(config: str, *opts: str):
    return setup_cfg(os.path.join(ROOT, "configs", config), ["MODEL.WEIGHTS", "", *opts])


def test_mask_config_trains_on_mapped_chips_and_returns_patches(tmp_path) -> None:
    """The joint: synthetic masks -> ChipMapper (built from the config) -> SniperRCNN with the
    mask branch -> loss_mask in training, 28x28 patches in eval."""
    import cv2

    from sniper.data.build import build_chip_mapper
    from sniper.data.chip_sampler import ChipSampler
    from sniper.data.coco import load_coco_json
    from sniper.data.synthetic import SyntheticSplit, build_split

    cfg = _cfg("sniper/synthetic_mobilenet_mask.yaml", "MODEL.BACKBONE.WEIGHTS", "")
    split = SyntheticSplit("t", num_images=1, canvas=384, seed=3)
    json_file, image_root = build_split(split, tmp_path)
    records = load_coco_json(json_file, image_root)
    chips = ChipSampler(records, [1.0], [[-1, -1]], chip_size=256, stride=32, seed=0).epoch_chips(0)
    mapper = build_chip_mapper(cfg)
    assert mapper.with_masks
    batch = [mapper.map_chip(cv2.imread(c.file_name), c) for c in chips[:2]]
    model = build_model(cfg)
    model.train()
    losses = model([img for img, _ in batch], [t for _, t in batch])
    assert {"loss_mask", "loss_classifier", "loss_box_reg"} <= set(losses)
    assert torch.isfinite(losses["loss_mask"]) and losses["loss_mask"].item() > 0
    model.eval()
    with torch.no_grad():
        (out,) = model([batch[0][0]])
    assert out["mask_patches"].shape == (len(out["boxes"]), 28, 28)
    box_only = build_model(_cfg("sniper/synthetic_mobilenet.yaml", "MODEL.BACKBONE.WEIGHTS", ""))
    assert not box_only.roi_heads.has_mask()


def test_mask_on_with_a_proposal_network_is_refused() -> None:
    from sniper.cli_errors import ConfigError

    cfg = _cfg(
        "sniper/synthetic_mobilenet_mask.yaml",
        "MODEL.BACKBONE.WEIGHTS",
        "",
        "MODEL.META_ARCHITECTURE",
        "SniperRPN",
    )
    with pytest.raises(ConfigError, match="MODEL.MASK_ON = True: SniperRPN has no RoI heads"):
        build_model(cfg)


def test_torchvision_mask_rcnn_file_loads_every_tensor(tmp_path) -> None:
    """A (random) torchvision `maskrcnn_resnet50_fpn` state dict, in its version-2 and its
    version-1 (mask_fcn<k>) names, loads into the COCO R50-FPN mask config with the tv trunk
    settings: every mask tensor arrives, and the 91-way mask logits become the 80 classes."""
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    from sniper.modeling.state_dict import load_model_weights
    from sniper.modeling.torchvision_detection import COCO_CATEGORY_IDS

    torch.manual_seed(0)
    tv = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)
    state = tv.state_dict()
    v1 = {}
    for k, v in state.items():
        if k.startswith("roi_heads.mask_head."):
            i, rest = k[len("roi_heads.mask_head.") :].split(".", 1)
            k = f"roi_heads.mask_head.mask_fcn{int(i) + 1}.{rest.split('.', 1)[1]}"
        v1[k] = v
    opts = [
        "MODEL.BACKBONE.WEIGHTS",
        "",
        "MODEL.BACKBONE.NORM",
        "FrozenBN",
        "MODEL.BACKBONE.FREEZE_AT",
        "2",
        "MODEL.RPN.CONV_DEPTH",
        "1",
    ]
    for name, sd in (("v2.pth", state), ("v1.pth", v1)):
        path = tmp_path / name
        torch.save(sd, path)
        ours = build_model(_cfg("sniper/coco_R50_FPN_mask.yaml", *opts))
        load_model_weights(ours, str(path))
        own = ours.state_dict()
        for k in (
            "roi_heads.mask_head.0.0.weight",
            "roi_heads.mask_head.3.0.bias",
            "roi_heads.mask_predictor.conv5_mask.weight",
        ):
            assert torch.equal(own[k], state[k]), (name, k)
        rows = torch.tensor((0, *COCO_CATEGORY_IDS))
        logits = "roi_heads.mask_predictor.mask_fcn_logits.weight"
        assert torch.equal(own[logits], state[logits][rows])
