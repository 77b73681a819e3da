"""COCO-pretrained torchvision detectors as MODEL.WEIGHTS (`sniper.modeling.torchvision_detection`).

The equivalence tests build torchvision's `fasterrcnn_resnet50_fpn` / `_v2` with random
weights, save its state dict, load the file into our model built from
`configs/sniper/coco_R50_FPN_tv*.yaml`, and compare the detections of both on one
unresized image (torchvision's transform with min_size = max_size = the image side).
"""

from __future__ import annotations

import logging
import os

import pytest
import torch
import torchvision
from torchvision.models.detection import fasterrcnn_resnet50_fpn, fasterrcnn_resnet50_fpn_v2

from sniper.config import setup_cfg
from sniper.modeling import build_model
from sniper.modeling.state_dict import LoadReport, load_model_state, load_model_weights
from sniper.modeling.torchvision_detection import (
    COCO_CATEGORY_IDS,
    convert_torchvision_state,
    fetch_torchvision_detection,
    torchvision_weights,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
SIDE = 192
CLASSES = 3
SMALL = [
    "MODEL.RPN.PRE_NMS_TOPK_TEST",
    "200",
    "MODEL.RPN.POST_NMS_TOPK_TEST",
    "100",
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
    "0.001",
]


def _ours(config: str, *opts: str) -> torch.nn.Module:
    cfg = setup_cfg(
        os.path.join(ROOT, "configs", "sniper", config),
        ["MODEL.WEIGHTS", "", "MODEL.NUM_CLASSES", str(CLASSES), *SMALL, *opts],
    )
    return build_model(cfg)


def _torchvision(builder) -> torch.nn.Module:
    torch.manual_seed(0)
    model = builder(
        weights=None,
        weights_backbone=None,
        num_classes=CLASSES + 1,
        min_size=SIDE,
        max_size=SIDE,
        rpn_pre_nms_top_n_test=200,
        rpn_post_nms_top_n_test=100,
        box_detections_per_img=300,
        box_score_thresh=0.001,
    )
    # Random BatchNorm statistics, so that loading them is visible in the outputs.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    # Small box deltas and class logits, so that random features still give many boxes.
    with torch.no_grad():
        for layer in (model.rpn.head.bbox_pred, model.roi_heads.box_predictor.bbox_pred):
            layer.weight.mul_(1e-4)
        model.roi_heads.box_predictor.cls_score.weight.mul_(1e-2)
    return model.eval()


@pytest.mark.slow  # about 15 s per model on 2 shared cores: two ResNet-50 detectors
@pytest.mark.parametrize(
    ("builder", "config"),
    [
        (fasterrcnn_resnet50_fpn, "coco_R50_FPN_tv.yaml"),
        (fasterrcnn_resnet50_fpn_v2, "coco_R50_FPN_tv_v2.yaml"),
    ],
)
def test_torchvision_file_gives_torchvision_detections(builder, config, tmp_path):
    reference = _torchvision(builder)
    path = tmp_path / "tv.pth"
    torch.save(reference.state_dict(), path)
    ours = _ours(config).eval()
    report = load_model_weights(ours, str(path))
    assert report.missing == [] and report.mismatched == []
    # torchvision's trunk has BatchNorm2d where ours is frozen: only their counters are left.
    assert all(k.endswith("num_batches_tracked") for k in report.unexpected)
    image = torch.rand(3, SIDE, SIDE, generator=torch.Generator().manual_seed(1)) * 255
    with torch.no_grad():
        expected = reference([image / 255])[0]
        got = ours([image])[0]
    assert len(expected["boxes"]) > 10
    assert torch.equal(got["labels"], expected["labels"])
    torch.testing.assert_close(got["boxes"], expected["boxes"], rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(got["scores"], expected["scores"], rtol=1e-4, atol=1e-5)


class _TinyDetector(torch.nn.Module):
    """The names our converter looks at, on tiny layers."""

    def __init__(self, classes: int, num_conv: int = 0) -> None:
        super().__init__()
        self.rpn = torch.nn.Module()
        self.rpn.head = torchvision.models.detection.rpn.RPNHead(4, 3)
        self.roi_heads = torch.nn.Module()
        self.roi_heads.box_head = torchvision.models.detection.faster_rcnn.FastRCNNConvFCHead(
            (4, 2, 2), [4] * num_conv, [6, 6]
        )
        self.roi_heads.box_predictor = torchvision.models.detection.faster_rcnn.FastRCNNPredictor(
            6, classes
        )


def test_converter_renames_two_mlp_and_version_1_keys():
    state = {
        "rpn.head.conv.weight": torch.zeros(4, 4, 3, 3),
        "rpn.head.conv.bias": torch.zeros(4),
        "backbone.fpn.inner_blocks.2.weight": torch.zeros(1),
        "backbone.fpn.layer_blocks.0.bias": torch.zeros(1),
        "roi_heads.box_head.fc6.weight": torch.zeros(6, 16),
        "roi_heads.box_head.fc7.bias": torch.zeros(6),
        "backbone.body.bn1.num_batches_tracked": torch.tensor(3),
        "rpn.head.cls_logits.weight": torch.zeros(3, 4, 1, 1),
    }
    assert sorted(convert_torchvision_state(state, _TinyDetector(4))) == [
        "backbone.fpn.inner_blocks.2.0.weight",
        "backbone.fpn.layer_blocks.0.0.bias",
        "roi_heads.box_head.1.weight",  # Flatten is child 0 without convs
        "roi_heads.box_head.3.bias",
        "rpn.head.cls_logits.weight",
        "rpn.head.conv.0.0.bias",
        "rpn.head.conv.0.0.weight",
    ]
    with_convs = convert_torchvision_state(
        {"roi_heads.box_head.fc6.weight": torch.zeros(1)}, _TinyDetector(4, num_conv=2)
    )
    assert list(with_convs) == ["roi_heads.box_head.3.weight"]  # conv, conv, Flatten, Linear


def test_coco_predictor_rows_map_to_the_80_contiguous_classes():
    assert len(COCO_CATEGORY_IDS) == 80 and COCO_CATEGORY_IDS[:12] == (*range(1, 12), 13)
    assert COCO_CATEGORY_IDS[-1] == 90 and 12 not in COCO_CATEGORY_IDS
    rows = torch.arange(91, dtype=torch.float32)
    state = {
        "roi_heads.box_predictor.cls_score.weight": rows[:, None].repeat(1, 6),
        "roi_heads.box_predictor.cls_score.bias": rows.clone(),
        "roi_heads.box_predictor.bbox_pred.weight": torch.arange(364.0)[:, None].repeat(1, 6),
        "roi_heads.box_predictor.bbox_pred.bias": torch.arange(364.0),
    }
    model = _TinyDetector(81)
    report = load_model_state(model, state)
    assert report.mismatched == [] and report.unexpected == []
    pred = model.roi_heads.box_predictor
    assert pred.cls_score.bias.tolist() == [0.0, *map(float, COCO_CATEGORY_IDS)]
    # class k (label k + 1) of ours: rows 4 * id .. 4 * id + 3 of torchvision's regression
    assert pred.bbox_pred.bias[4:12].tolist() == [4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0]
    assert pred.bbox_pred.bias[4 * 12 : 4 * 13].tolist() == [52.0, 53.0, 54.0, 55.0]  # id 13
    assert pred.cls_score.weight[80].tolist() == [90.0] * 6


def test_other_class_count_reinitializes_the_predictor_and_logs_the_table(caplog):
    source = _TinyDetector(91)
    model = _TinyDetector(5)
    before = model.roi_heads.box_predictor.cls_score.weight.clone()
    with caplog.at_level(logging.INFO, logger="sniper.modeling"):
        report = load_model_state(model, {**source.state_dict(), "extra.weight": torch.ones(1)})
    assert isinstance(report, LoadReport)
    assert [k for k, _, _ in report.mismatched] == [
        "roi_heads.box_predictor.bbox_pred.bias",
        "roi_heads.box_predictor.bbox_pred.weight",
        "roi_heads.box_predictor.cls_score.bias",
        "roi_heads.box_predictor.cls_score.weight",
    ]
    assert report.mismatched[3][1:] == ((91, 6), (5, 6))
    assert report.unexpected == ["extra.weight"] and report.missing == []
    assert torch.equal(model.roi_heads.box_predictor.cls_score.weight, before)
    assert torch.equal(model.rpn.head.cls_logits.weight, source.rpn.head.cls_logits.weight)
    table = report.table().splitlines()
    assert table[0] == "status           | tensors | keys"
    assert (
        table[1] == f"loaded           | {len(report.loaded):>7} | roi_heads.box_head.*, rpn.head.*"
    )
    assert table[2] == "missing          |       0 | -"
    assert table[3] == "unexpected       |       1 | extra.weight"
    assert table[4].startswith(
        "shape-mismatched |       4 | roi_heads.box_predictor.bbox_pred.bias"
    )
    assert "cls_score.weight (file (91, 6), model (5, 6))" in table[4]
    assert report.table() in caplog.text


def test_names_resolve_through_torchvisions_weights_api():
    v1 = torchvision.models.detection.FasterRCNN_ResNet50_FPN_Weights.COCO_V1
    assert torchvision_weights("torchvision://FasterRCNN_ResNet50_FPN_Weights.COCO_V1") is v1
    assert torchvision_weights("torchvision://fasterrcnn_resnet50_fpn") is v1  # DEFAULT
    with pytest.raises(
        ValueError,
        match="not a torchvision weights or model name.*"
        "torchvision://FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1",
    ):
        torchvision_weights("torchvision://fasterrcnn_r50")
    with pytest.raises(ValueError, match="does not start with 'torchvision://'"):
        torchvision_weights("fasterrcnn_resnet50_fpn")


def test_name_reads_the_file_from_torch_homes_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    name = "torchvision://FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1"
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    state = {"rpn.head.cls_logits.bias": torch.arange(3.0)}
    torch.save(state, folder / "fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth")
    got = fetch_torchvision_detection(name)
    assert list(got) == ["rpn.head.cls_logits.bias"]
    assert got["rpn.head.cls_logits.bias"].tolist() == [0.0, 1.0, 2.0]
    model = _TinyDetector(4)
    report = load_model_weights(model, name)
    assert report.loaded == ["rpn.head.cls_logits.bias"]
    assert model.rpn.head.cls_logits.bias.tolist() == [0.0, 1.0, 2.0]


def test_missing_cache_file_names_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    # No network here: the download fails, and it must fail with the path to put the file at.
    monkeypatch.setattr(
        torch.hub, "download_url_to_file", lambda *a, **k: (_ for _ in ()).throw(OSError("offline"))
    )
    expected = str(tmp_path / "hub" / "checkpoints" / "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth")
    with pytest.raises(FileNotFoundError, match="OSError: offline") as err:
        fetch_torchvision_detection("torchvision://fasterrcnn_resnet50_fpn")
    assert expected in str(err.value)


@pytest.mark.parametrize("config", ["coco_R50_FPN_tv.yaml", "coco_R50_FPN_tv_v2.yaml"])
def test_configs_have_torchvisions_key_names_and_shapes(config):
    builder = fasterrcnn_resnet50_fpn if "v2" not in config else fasterrcnn_resnet50_fpn_v2
    reference = builder(weights=None, weights_backbone=None, num_classes=CLASSES + 1)
    ours = _ours(config)
    converted = convert_torchvision_state(reference.state_dict(), ours)
    own = ours.state_dict()
    assert set(own) <= set(converted)
    assert {k: tuple(v.shape) for k, v in own.items()} == {
        k: tuple(converted[k].shape) for k in own
    }
