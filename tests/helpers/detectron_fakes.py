"""Detectron-named pickles written from our modules, independently of the loader's mapping.

The names follow Detectron (Caffe2) as it builds its networks (``ResNet.py``, ``FPN.py``,
``fast_rcnn_heads.py``): each blob is taken from the module it belongs to by walking the
model by hand, not through `sniper.modeling.detectron_names`.

Detectron's AffineChannel computes ``s * x + b``; a BatchNorm in eval mode computes
``x * scale + shift`` with ``scale = w * (var + eps) ** -0.5`` and ``shift = b - mean *
scale`` (exactly as FrozenBatchNorm2d does, in float32), so those are the blobs. Detectron's
conv1 reads BGR: the blob is our RGB conv1 with its input channels reversed.
"""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sniper.config import setup_cfg
from sniper.modeling import build_model

__all__ = [
    "detector_blobs",
    "py2_pickle_bytes",
    "randomize_norms",
    "trunk_blobs",
    "write_pickle",
]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def _affine(norm: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    scale = norm.weight * (norm.running_var + norm.eps).rsqrt()
    shift = norm.bias - norm.running_mean * scale
    return _np(scale), _np(shift)


def randomize_norms(model: nn.Module, seed: int) -> None:
    """Random affine and statistics for every BatchNorm / FrozenBatchNorm2d of `model`."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "running_var") and hasattr(module, "weight"):
                n = module.running_var.numel()
                module.weight.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
                module.bias.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
                module.running_mean.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
                module.running_var.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)


def trunk_blobs(trunk: Any) -> dict[str, np.ndarray]:
    """Detectron's blobs of a torchvision bottleneck ResNet (classifier or our body)."""
    blobs = {"conv1_w": _np(trunk.conv1.weight[:, [2, 1, 0]])}
    blobs["res_conv1_bn_s"], blobs["res_conv1_bn_b"] = _affine(trunk.bn1)
    for stage in (2, 3, 4, 5):
        for i, block in enumerate(getattr(trunk, f"layer{stage - 1}")):
            for letter, conv, norm in (
                ("a", block.conv1, block.bn1),
                ("b", block.conv2, block.bn2),
                ("c", block.conv3, block.bn3),
            ):
                name = f"res{stage}_{i}_branch2{letter}"
                blobs[f"{name}_w"] = _np(conv.weight)
                blobs[f"{name}_bn_s"], blobs[f"{name}_bn_b"] = _affine(norm)
            if block.downsample is not None:
                name = f"res{stage}_{i}_branch1"
                blobs[f"{name}_w"] = _np(block.downsample[0].weight)
                blobs[f"{name}_bn_s"], blobs[f"{name}_bn_b"] = _affine(block.downsample[1])
    return blobs


def detector_blobs(model: Any) -> dict[str, np.ndarray]:
    """Detectron's blobs of our SniperRCNN (ResNet-FPN, one-conv RPN, 2mlp box head)."""
    body = model.backbone.body
    blobs = trunk_blobs(body)
    sums = {s: f"res{s}_{len(getattr(body, f'layer{s - 1}')) - 1}_sum" for s in (2, 3, 4, 5)}
    fpn = model.backbone.fpn
    levels = [int(name[1:]) for name in model.backbone.pooler_level_names]
    for index, level in enumerate(levels):
        lateral = f"fpn_inner_{sums[level]}" + ("" if level == 5 else "_lateral")
        blobs[f"{lateral}_w"] = _np(fpn.inner_blocks[index][0].weight)
        blobs[f"{lateral}_b"] = _np(fpn.inner_blocks[index][0].bias)
        blobs[f"fpn_{sums[level]}_w"] = _np(fpn.layer_blocks[index][0].weight)
        blobs[f"fpn_{sums[level]}_b"] = _np(fpn.layer_blocks[index][0].bias)
    rpn = model.rpn.head
    lowest = levels[0]
    for name, layer in (
        (f"conv_rpn_fpn{lowest}", rpn.conv[0][0]),
        (f"rpn_cls_logits_fpn{lowest}", rpn.cls_logits),
        (f"rpn_bbox_pred_fpn{lowest}", rpn.bbox_pred),
    ):
        blobs[f"{name}_w"], blobs[f"{name}_b"] = _np(layer.weight), _np(layer.bias)
    fcs = [m for m in model.roi_heads.box_head.children() if isinstance(m, nn.Linear)]
    predictor = model.roi_heads.box_predictor
    for name, layer in (
        ("fc6", fcs[0]),
        ("fc7", fcs[1]),
        ("cls_score", predictor.cls_score),
        ("bbox_pred", predictor.bbox_pred),
    ):
        blobs[f"{name}_w"], blobs[f"{name}_b"] = _np(layer.weight), _np(layer.bias)
    return blobs


def write_pickle(path: Path, obj: Any, protocol: int = 2) -> Path:
    """`pickle.dump(obj)` into `path` (protocol 2, as Detectron's files)."""
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler: its dispatch table is a dict
    """Writes bytes as Python 2 wrote `str` (BINSTRING), as in Detectron's own files."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def py2_pickle_bytes(obj: Any) -> bytes:
    """A protocol-2 pickle of `obj` as Python 2 + numpy 1 wrote it: names and array buffers
    as BINSTRING (pass keys as bytes), arrays rebuilt by ``numpy.core.multiarray``."""

    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol=2).dump(obj)
    data = buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert b"numpy.core.multiarray" in data and b"_codecs" not in data
    return data


# The small Detectron-convention model of the Detectron weight tests.
ROOT = Path(__file__).resolve().parents[2]
DETECTRON_CONFIG = str(ROOT / "configs" / "sniper" / "coco_R50_FPN_detectron.yaml")
SIDE = 128
DETECTRON_SMALL_OPTS = [
    *("MODEL.BACKBONE.WEIGHTS", "", "MODEL.NUM_CLASSES", "3", "MODEL.FPN.OUT_CHANNELS", "32"),
    *("MODEL.ROI_BOX_HEAD.FC_DIM", "48", "MODEL.RPN.PRE_NMS_TOPK_TEST", "200"),
    *("MODEL.RPN.POST_NMS_TOPK_TEST", "100", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.001"),
    *("TEST.MAX_DETS_PER_IMAGE", "100", "SNIPER.DETECTIONS_PER_IMAGE", "100"),
    *("SNIPER.TEST_SCALES", "[1.0]", "SNIPER.TEST_VALID_RANGES", "[[-1, -1]]"),
]


def detectron_cfg(*opts: str) -> Any:
    """The Detectron config with the small-model overrides and `opts`."""
    return setup_cfg(DETECTRON_CONFIG, [*DETECTRON_SMALL_OPTS, *opts])


def source_model(seed: int = 0) -> torch.nn.Module:
    """A random detector of ours with random norm statistics and small box deltas / logits,
    so that random features still give many detections."""
    torch.manual_seed(seed)
    model = build_model(detectron_cfg()).eval()
    randomize_norms(model, seed + 1)
    with torch.no_grad():
        for layer in (model.rpn.head.bbox_pred, model.roi_heads.box_predictor.bbox_pred):
            layer.weight.mul_(1e-3)
        model.roi_heads.box_predictor.cls_score.weight.mul_(1e-2)
    return model


def random_image(seed: int = 1) -> torch.Tensor:
    """A float (3, SIDE, SIDE) image in 0-255."""
    return torch.rand(3, SIDE, SIDE, generator=torch.Generator().manual_seed(seed)) * 255


def momentum_blobs(blobs: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    """Zero ``<name>_momentum`` blobs for `names`, as Detectron checkpoints carry."""
    return {f"{n}_momentum": np.zeros_like(blobs[n]) for n in names}
