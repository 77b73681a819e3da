"""Detectron / Caffe2 ``.pkl`` weights through MODEL.WEIGHTS and MODEL.BACKBONE.WEIGHTS.

A random model of ours is exported to a pickle named as Detectron names its blobs
(`detectron_fakes`, written by walking the modules, not from the loader's mapping), loaded
back into a freshly built model through the config keys, and must give the same trunk
features and detections. Detectron's AffineChannel ``s * x + b`` loads as FrozenBatchNorm2d
with ``running_var + eps == 1``, so the FrozenBN outputs are bitwise equal.
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron_fakes import (
    SIDE,
    detector_blobs,
    detectron_cfg,
    momentum_blobs,
    py2_pickle_bytes,
    random_image,
    source_model,
    write_pickle,
)

from sniper.engine.checkpoint import load_eval_weights
from sniper.inference.predictor import SniperPredictor
from sniper.modeling import build_model
from sniper.modeling.backbone import build_backbone
from sniper.modeling.detectron_names import (
    AFFINE_BIAS,
    AFFINE_SCALE,
    CONV1,
    TENSOR,
    BlobTarget,
    DetectorLayout,
    detector_target,
    trunk_target,
)
from sniper.modeling.detectron_pkl import DetectronPickleError, read_detectron_pkl
from sniper.modeling.state_dict import load_model_weights


@pytest.fixture(scope="module")
def source() -> torch.nn.Module:
    return source_model()


@pytest.fixture(scope="module")
def blobs(source) -> dict[str, np.ndarray]:
    return detector_blobs(source)


# ---------------------------------------------------------------------------------------
# The full detector through MODEL.WEIGHTS


@pytest.mark.parametrize("form", ["blobs", "flat", "python2"])
def test_detector_pickle_gives_identical_features_and_detections(source, blobs, form, tmp_path):
    momentum = momentum_blobs(blobs, ["fc6_w", "conv1_w"])
    path = tmp_path / "model_final.pkl"
    if form == "blobs":
        write_pickle(path, {"blobs": {**blobs, **momentum}, "cfg": "MODEL:\n  TYPE: rcnn\n"})
    elif form == "flat":
        write_pickle(path, {**blobs, **momentum, "__author__": "Detectron"})
    else:  # Python 2 era: names and array buffers as str, numpy.core.multiarray
        raw = {k.encode(): v for k, v in {**blobs, **momentum}.items()}
        path.write_bytes(py2_pickle_bytes({b"blobs": raw, b"cfg": b"MODEL: {}"}))
    cfg = detectron_cfg("MODEL.WEIGHTS", str(path))
    torch.manual_seed(123)  # another random init: everything must come from the file
    model = build_model(cfg).eval()
    report = load_model_weights(model, cfg.MODEL.WEIGHTS)
    assert report.missing == [] and report.unexpected == [] and report.mismatched == []
    assert set(report.loaded) == set(source.state_dict())
    dropped = {"blobs": ["cfg"], "flat": ["__author__"], "python2": ["cfg"]}[form]
    assert report.dropped == sorted(["conv1_w_momentum", "fc6_w_momentum", *dropped])
    image = random_image()
    with torch.no_grad():
        ours = source.backbone(source.transform([image])[0].tensors)
        got = model.backbone(model.transform([image])[0].tensors)
        assert list(got) == ["p2", "p3", "p4", "p5", "p6"]
        for name in ours:
            assert torch.equal(got[name], ours[name]), name
        expected, result = source([image])[0], model([image])[0]
    assert len(expected["boxes"]) > 10
    for key in ("boxes", "scores", "labels"):
        assert torch.equal(result[key], expected[key]), key


def test_predictor_on_the_pickle_equals_the_predictor_on_our_checkpoint(source, blobs, tmp_path):
    """The joint with inference: SniperPredictor reads MODEL.WEIGHTS (.pth or .pkl)."""
    pth = tmp_path / "model_final.pth"
    torch.save({"model": source.state_dict()}, pth)
    pkl = write_pickle(tmp_path / "model_final.pkl", {"blobs": blobs})
    image = (np.random.default_rng(3).random((SIDE, SIDE + 32, 3)) * 255).astype(np.uint8)
    outs = [SniperPredictor(detectron_cfg("MODEL.WEIGHTS", str(p)))(image) for p in (pth, pkl)]
    assert len(outs[0]["boxes"]) > 10
    for key in ("boxes", "scores", "classes"):
        np.testing.assert_array_equal(outs[1][key], outs[0][key])


def test_checkpointer_loads_the_pickle_for_eval_only(source, blobs, tmp_path):
    pkl = write_pickle(tmp_path / "model_final.pkl", {"blobs": blobs})
    torch.manual_seed(9)
    model = build_model(detectron_cfg()).eval()
    assert load_eval_weights(model, str(tmp_path / "out"), str(pkl), resume=False) == str(pkl)
    own = model.state_dict()
    for key, value in source.state_dict().items():
        if ".bn" not in key and "downsample.1" not in key and "body.bn1" not in key:
            assert torch.equal(own[key], value), key  # norms hold the folded affine instead
    bn = model.backbone.body.layer1[0].bn1
    scale = detector_blobs(source)["res2_0_branch2a_bn_s"]
    assert torch.equal(bn.weight, torch.from_numpy(scale))


def test_missing_unused_and_mismatched_blobs_are_reported(blobs, tmp_path, caplog):
    changed = dict(blobs)
    del changed["res3_0_branch2b_w"]  # a missing blob: that parameter keeps its init
    changed["fc1000_w"] = np.zeros((1000, 2048), np.float32)  # unused blobs, by name
    changed["fpn_6_w"] = np.zeros((32, 2048, 3, 3), np.float32)
    changed["res2_0_branch2a_gn_s"] = np.ones(64, np.float32)
    # another NUM_CLASSES: the predictor is skipped and keeps its initialization
    changed["cls_score_w"] = np.zeros((81, 48), np.float32)
    path = write_pickle(tmp_path / "other_classes.pkl", {"blobs": changed})
    torch.manual_seed(5)
    model = build_model(detectron_cfg()).eval()
    before = model.roi_heads.box_predictor.cls_score.weight.clone()
    with caplog.at_level(logging.INFO, logger="sniper.modeling"):
        report = load_model_weights(model, str(path))
    assert report.missing == ["backbone.body.layer2.0.conv2.weight"]
    assert report.unexpected == ["fc1000_w", "fpn_6_w", "res2_0_branch2a_gn_s"]
    assert report.mismatched == [("roi_heads.box_predictor.cls_score.weight", (81, 48), (4, 48))]
    assert torch.equal(model.roi_heads.box_predictor.cls_score.weight, before)
    assert "skip Detectron blob cls_score_w" in caplog.text
    assert "unexpected       |       3 | {fc1000_w,fpn_6_w,res2_0_branch2a_gn_s}" in caplog.text


def test_a_blob_of_another_shape_is_an_error_naming_blob_and_shapes(blobs, tmp_path):
    changed = {**blobs, "res2_0_branch2a_w": np.zeros((64, 64, 3, 3), np.float32)}
    path = write_pickle(tmp_path / "wrong.pkl", {"blobs": changed})
    model = build_model(detectron_cfg())
    with pytest.raises(ValueError) as err:
        load_model_weights(model, str(path))
    assert (
        "blob 'res2_0_branch2a_w' has shape (64, 64, 3, 3), "
        "backbone.body.layer1.0.conv1.weight expects (64, 64, 1, 1)"
    ) in str(err.value)
    assert str(path) in str(err.value)


def test_two_spellings_of_one_layer_are_refused(blobs, tmp_path):
    top = [k for k in blobs if k.startswith("fpn_inner_res5_")][0]
    changed = {**blobs, top.replace("_sum_", "_sum_lateral_"): blobs[top]}
    path = write_pickle(tmp_path / "twice.pkl", {"blobs": changed})
    with pytest.raises(ValueError, match="both map to backbone.fpn.inner_blocks.3.0"):
        load_model_weights(build_model(detectron_cfg()), str(path))


def test_a_file_of_no_fitting_blob_is_refused(tmp_path):
    path = write_pickle(tmp_path / "other.pkl", {"blobs": {"foo_w": np.zeros(3, np.float32)}})
    with pytest.raises(ValueError, match="has no blob that fits this model"):
        load_model_weights(build_model(detectron_cfg()), str(path))


# ---------------------------------------------------------------------------------------
# Refusals of the reader


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_with_a_code_global_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"blobs": {"conv1_w": _Evil(marker)}}, protocol=2))
    module = os.system.__module__  # "posix" on Linux
    with pytest.raises(DetectronPickleError) as err:
        load_model_weights(build_model(detectron_cfg()), str(path))
    assert f"refers to the global {module}.system" in str(err.value)
    assert str(path) in str(err.value) and "MODEL.WEIGHTS file" in str(err.value)
    cfg = detectron_cfg("MODEL.BACKBONE.WEIGHTS", str(path))
    with pytest.raises(DetectronPickleError, match=f"MODEL.BACKBONE.WEIGHTS file .*{module}"):
        build_backbone(cfg)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([np.zeros(3)], "holds a list, not a dict of blobs"),
        ({"blobs": [np.zeros(3)]}, "its 'blobs' entry is a list, not a dict"),
        ({"blobs": {"conv1_w": "abc"}}, "blob 'conv1_w' is a str, not a numeric numpy array"),
        (
            {"blobs": {"conv1_w": np.array(["a"], dtype=object)}},
            "blob 'conv1_w' is a object, not a numeric",
        ),
        ({"blobs": {3: np.zeros(3)}}, "blob name 3 is not a string"),
    ],
)
def test_not_a_dict_of_numeric_arrays_is_refused(payload, message, tmp_path):
    path = write_pickle(tmp_path / "bad.pkl", payload)
    with pytest.raises(DetectronPickleError, match=message):
        read_detectron_pkl(str(path))


def test_unreadable_and_missing_files_are_named(tmp_path):
    truncated = tmp_path / "cut.pkl"
    truncated.write_bytes(pickle.dumps({"blobs": {"a": np.zeros(30)}}, protocol=2)[:40])
    with pytest.raises(DetectronPickleError, match="cut.pkl' is not a readable pickle"):
        read_detectron_pkl(str(truncated))
    torch_file = tmp_path / "torch.pkl"
    torch.save({"conv1.weight": torch.zeros(2)}, torch_file)  # a zip: not a pickle stream
    with pytest.raises(DetectronPickleError, match="torch.pkl"):
        read_detectron_pkl(str(torch_file))
    with pytest.raises(FileNotFoundError, match="nope.pkl"):
        load_model_weights(build_model(detectron_cfg()), str(tmp_path / "nope.pkl"))


# ---------------------------------------------------------------------------------------
# The name rules on hand-made names


@pytest.mark.parametrize(
    ("blob", "target"),
    [
        ("conv1_w", BlobTarget("conv1.weight", CONV1)),
        ("res_conv1_bn_s", BlobTarget("bn1", AFFINE_SCALE)),
        ("res_conv1_bn_b", BlobTarget("bn1", AFFINE_BIAS)),
        ("res2_0_branch2a_w", BlobTarget("layer1.0.conv1.weight", TENSOR)),
        ("res4_22_branch2c_bn_s", BlobTarget("layer3.22.bn3", AFFINE_SCALE)),
        ("res5_0_branch1_w", BlobTarget("layer4.0.downsample.0.weight", TENSOR)),
        ("res3_0_branch1_bn_b", BlobTarget("layer2.0.downsample.1", AFFINE_BIAS)),
        ("res3_1_branch1_w", None),
        ("res6_0_branch2a_w", None),
        ("fc1000_w", None),
        ("res2_0_branch2a_gn_s", None),
    ],
)
def test_trunk_names(blob, target):
    assert trunk_target(blob) == target


@pytest.mark.parametrize(
    ("blob", "key"),
    [
        ("fpn_inner_res5_2_sum_w", "backbone.fpn.inner_blocks.2.0.weight"),
        ("fpn_inner_res4_22_sum_lateral_b", "backbone.fpn.inner_blocks.1.0.bias"),
        ("fpn_inner_res3_3_sum_w", "backbone.fpn.inner_blocks.0.0.weight"),  # INPLACE_LATERAL
        ("fpn_res3_3_sum_w", "backbone.fpn.layer_blocks.0.0.weight"),
        ("fpn_res2_2_sum_w", None),  # below MIN_LEVEL 3
        ("fpn_inner_res2_2_sum_lateral_w", None),
        ("conv_rpn_fpn3_w", "rpn.head.conv.0.0.weight"),
        ("conv_rpn_b", "rpn.head.conv.0.0.bias"),
        ("rpn_cls_logits_fpn2_b", "rpn.head.cls_logits.bias"),
        ("rpn_bbox_pred_fpn2_w", "rpn.head.bbox_pred.weight"),
        ("fc6_w", "roi_heads.box_head.5.weight"),
        ("fc7_b", None),  # a 4conv1fc head has one fc
        ("head_conv1_w", "roi_heads.box_head.0.0.weight"),
        ("head_conv4_b", "roi_heads.box_head.3.0.bias"),
        ("head_conv5_w", None),
        ("cls_score_w", "roi_heads.box_predictor.cls_score.weight"),
        ("bbox_pred_b", "roi_heads.box_predictor.bbox_pred.bias"),
        ("res4_0_branch2b_w", "backbone.body.layer3.0.conv2.weight"),
        ("_[mask]_fcn1_w", None),
        ("fpn_6_w", None),
    ],
)
def test_detector_names(blob, key):
    layout = DetectorLayout(min_level=3, fc_names=("5",), conv_names=("0", "1", "2", "3"))
    target = detector_target(blob, layout)
    assert (target.key if target else None) == key
