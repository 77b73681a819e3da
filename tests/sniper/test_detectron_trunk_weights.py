"""Detectron ``.pkl`` weights: ImageNet trunks through MODEL.BACKBONE.WEIGHTS, norms other
than FrozenBN, the pixel / stride conventions and the RPN layout (the detector round trip
and the reader's refusals are in test_detectron_weights.py).

A random model of ours is exported to a pickle named as Detectron names its blobs
(`detectron_fakes`, written by walking the modules, not from the loader's mapping), loaded
back into a freshly built model through the config keys, and must give the same trunk
features and detections. Detectron's AffineChannel ``s * x + b`` loads as FrozenBatchNorm2d
with ``running_var + eps == 1``, so the FrozenBN outputs are bitwise equal.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import torchvision
from detectron_fakes import (
    detector_blobs,
    detectron_cfg,
    random_image,
    randomize_norms,
    source_model,
    trunk_blobs,
    write_pickle,
)
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.models.resnet import resnet18

from sniper.config import setup_cfg
from sniper.modeling import build_model
from sniper.modeling.backbone import build_backbone, move_stride_to_1x1
from sniper.modeling.detectron_pkl import read_detectron_pkl
from sniper.modeling.state_dict import load_model_weights
from sniper.modeling.weights import load_trunk_weights


@pytest.fixture(scope="module")
def source() -> torch.nn.Module:
    return source_model()


@pytest.fixture(scope="module")
def blobs(source) -> dict[str, np.ndarray]:
    return detector_blobs(source)


# ---------------------------------------------------------------------------------------
# ImageNet trunk (R-50.pkl) through MODEL.BACKBONE.WEIGHTS


def _imagenet_resnet50(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torchvision.models.resnet50()
    move_stride_to_1x1(model, "resnet50")  # MSRA's ResNet
    randomize_norms(model, seed)
    return model.eval()


def test_imagenet_pickle_into_the_backbone_gives_the_same_trunk_features(tmp_path):
    reference = _imagenet_resnet50(4)
    blobs = trunk_blobs(reference)
    blobs["fc1000_w"] = reference.fc.weight.detach().numpy().copy()
    blobs["fc1000_b"] = reference.fc.bias.detach().numpy().copy()
    path = write_pickle(tmp_path / "R-50.pkl", blobs)
    cfg = detectron_cfg("MODEL.BACKBONE.WEIGHTS", str(path))
    torch.manual_seed(77)
    backbone = build_backbone(cfg).eval()
    assert tuple(backbone.body.layer3[0].conv1.stride) == (2, 2)
    rgb = random_image(2)
    mean = torch.tensor([122.7717, 115.9465, 102.9801]).view(3, 1, 1)
    x = (rgb - mean)[None]
    getter = torchvision.models._utils.IntermediateLayerGetter(
        reference, {"layer1": "p2", "layer2": "p3", "layer3": "p4", "layer4": "p5"}
    )
    with torch.no_grad():
        expected, got = getter(x), backbone.body(x)
        # Detectron's view of the same image: BGR minus the BGR mean, its own conv1 blob
        bgr = torch.nn.functional.conv2d(
            x.flip(1), torch.from_numpy(blobs["conv1_w"]), stride=2, padding=3
        )
        ours = torch.nn.functional.conv2d(x, backbone.body.conv1.weight, stride=2, padding=3)
    torch.testing.assert_close(bgr, ours, rtol=1e-5, atol=1e-4)  # same sums, other order
    for name in ("p2", "p3", "p4", "p5"):
        # BatchNorm (reference) and FrozenBN (ours) round differently: 1e-5 of the range
        tol = 1e-5 * float(expected[name].abs().max())
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=tol)


def test_imagenet_pickle_reports_fc1000_unused_and_momentum(tmp_path, caplog):
    reference = _imagenet_resnet50(6)
    blobs = trunk_blobs(reference)
    blobs["fc1000_w"] = np.zeros((1000, 2048), np.float32)
    blobs["fc1000_b"] = np.zeros(1000, np.float32)
    blobs["res2_0_branch2a_w_momentum"] = np.zeros_like(blobs["res2_0_branch2a_w"])
    path = write_pickle(tmp_path / "R-50.pkl", blobs)
    classifier = torchvision.models.resnet50()
    with caplog.at_level(logging.INFO, logger="sniper.modeling"):
        missing, unused = load_trunk_weights(classifier, "resnet50", str(path))
    assert missing == ["fc.bias", "fc.weight"]
    assert unused == ["fc1000_b", "fc1000_w"]
    assert read_detectron_pkl(str(path)).momentum == ["res2_0_branch2a_w_momentum"]
    assert "1 _momentum blobs dropped" in caplog.text
    # torchvision strides in the 3x3 conv: the loader says so
    assert "set MODEL.BACKBONE.STRIDE_IN_1X1 True" in caplog.text
    assert torch.equal(classifier.bn1.running_mean, torch.zeros(64))
    assert torch.equal(classifier.bn1.running_var + classifier.bn1.eps, torch.ones(64))


def test_detector_pickle_as_backbone_weights_takes_only_its_trunk(source, blobs, tmp_path):
    path = write_pickle(tmp_path / "model_final.pkl", {"blobs": blobs})
    classifier = torchvision.models.resnet50()
    missing, unused = load_trunk_weights(classifier, "resnet50", str(path))
    assert missing == ["fc.bias", "fc.weight"]
    assert set(unused) == {k for k in blobs if not k.startswith(("res", "conv1_w"))}
    torch.testing.assert_close(
        classifier.layer4[2].conv3.weight, source.backbone.body.layer4[2].conv3.weight
    )


def test_detectron_trunks_are_bottleneck_resnets_only(tmp_path):
    path = write_pickle(tmp_path / "R-50.pkl", {"conv1_w": np.zeros((64, 3, 7, 7), np.float32)})
    cfg = detectron_cfg(
        "MODEL.BACKBONE.NAME",
        "mobilenet_v2_fpn",
        "MODEL.BACKBONE.WEIGHTS",
        str(path),
        "MODEL.BACKBONE.STRIDE_IN_1X1",
        "False",
    )
    with pytest.raises(ValueError, match="bottleneck ResNets .* not mobilenet_v2"):
        build_backbone(cfg)
    with pytest.raises(ValueError, match="STRIDE_IN_1X1 needs a bottleneck ResNet .* resnet18"):
        move_stride_to_1x1(resnet18(), "resnet18")


def test_wrong_trunk_shape_is_an_error_naming_blob_and_shapes(tmp_path):
    blobs = trunk_blobs(_imagenet_resnet50(8))
    blobs["res5_0_branch1_bn_s"] = np.ones(1024, np.float32)
    path = write_pickle(tmp_path / "R-50.pkl", blobs)
    with pytest.raises(ValueError) as err:
        load_trunk_weights(torchvision.models.resnet50(), "resnet50", str(path))
    assert "blob 'res5_0_branch1_bn_s' has shape (1024,), layer4.0.downsample.1.weight " in str(
        err.value
    )
    assert "expects (2048,)" in str(err.value)


# ---------------------------------------------------------------------------------------
# Norms other than FrozenBN


@pytest.mark.parametrize("norm", ["BN", "SN"])
def test_trained_norms_start_from_the_affine_with_identity_statistics(norm, tmp_path, caplog):
    blobs = trunk_blobs(_imagenet_resnet50(10))
    path = write_pickle(tmp_path / "R-50.pkl", blobs)
    cfg = detectron_cfg("MODEL.BACKBONE.WEIGHTS", str(path), "MODEL.BACKBONE.NORM", norm)
    with caplog.at_level(logging.INFO, logger="sniper.modeling"):
        backbone = build_backbone(cfg)
    layer = backbone.body.layer2[0].bn2
    assert type(layer).__name__ == ("BatchNorm2d" if norm == "BN" else "SwitchNorm2d")
    assert torch.equal(layer.weight.detach(), torch.from_numpy(blobs["res3_0_branch2b_bn_s"]))
    assert torch.equal(layer.bias.detach(), torch.from_numpy(blobs["res3_0_branch2b_bn_b"]))
    assert torch.equal(layer.running_mean, torch.zeros(128))
    assert torch.equal(layer.running_var, torch.full((128,), 1 - layer.eps))
    assert "Detectron AffineChannel (s, b) -> BatchNorm2d with weight=s, bias=b" in caplog.text


def test_group_norm_models_keep_their_init_and_say_why(blobs, tmp_path, caplog):
    path = write_pickle(tmp_path / "model_final.pkl", {"blobs": blobs})
    model = build_model(detectron_cfg("MODEL.BACKBONE.NORM", "GN", "MODEL.BACKBONE.FREEZE_AT", "0"))
    with caplog.at_level(logging.INFO, logger="sniper.modeling"):
        report = load_model_weights(model, str(path))
    assert set(report.unexpected) == {k for k in blobs if k.endswith(("_bn_s", "_bn_b"))}
    assert "no GroupNorm equivalent" in caplog.text
    assert "backbone.body.layer1.0.bn1.weight" in report.missing


# ---------------------------------------------------------------------------------------
# Conventions: the config check, the RPN layout


def test_config_warns_when_pixels_or_strides_do_not_match_detectron(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="sniper"):
        detectron_cfg("MODEL.WEIGHTS", "m.pkl")
    assert caplog.records == []
    with caplog.at_level(logging.WARNING, logger="sniper"):
        detectron_cfg(
            "MODEL.WEIGHTS",
            "m.pkl",
            "MODEL.PIXEL_STD",
            "[58.395, 57.12, 57.375]",
            "MODEL.BACKBONE.STRIDE_IN_1X1",
            "False",
        )
    text = caplog.text
    assert (
        "MODEL.WEIGHTS 'm.pkl' is a Detectron file: Detectron weights expect MODEL.PIXEL_MEAN"
        in text
    )
    assert "got [122.7717, 115.9465, 102.9801] and [58.395, 57.12, 57.375]" in text
    assert "set MODEL.BACKBONE.STRIDE_IN_1X1 True" in text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sniper"):
        setup_cfg("", ["MODEL.BACKBONE.WEIGHTS", "x.pth"])
    assert caplog.records == []


def test_loading_into_a_model_of_other_pixels_warns(blobs, tmp_path, caplog):
    path = write_pickle(tmp_path / "model_final.pkl", {"blobs": blobs})
    model = build_model(
        detectron_cfg("MODEL.PIXEL_MEAN", "[102.9801, 115.9465, 122.7717]")  # BGR order: wrong here
    )
    with caplog.at_level(logging.WARNING, logger="sniper.modeling"):
        load_model_weights(model, str(path))
    assert "expect MODEL.PIXEL_MEAN [122.7717, 115.9465, 102.9801]" in caplog.text


def test_rpn_deltas_are_per_anchor_as_in_detectron():
    """Detectron's GenerateProposals reads (4A, H, W) as (H, W, A, 4): channel 4a + k is
    coordinate k of anchor a; torchvision's RPN reads it the same way."""
    cls = torch.zeros(1, 3, 2, 1)
    deltas = torch.arange(24.0).view(1, 12, 2, 1)
    _, flat = concat_box_prediction_layers([cls], [deltas])
    expected = deltas[0].permute(1, 2, 0).reshape(-1, 4)  # (H, W, 4A) -> rows of 4
    assert torch.equal(flat, expected)
    assert flat[:3].tolist() == [[0, 2, 4, 6], [8, 10, 12, 14], [16, 18, 20, 22]]
