"""Names of Detectron (Caffe2) blobs -> our state-dict keys. Pure string rules, no torch.

Trunk (MSRA ResNet-50/101 as Detectron builds it; torchvision classifier names on the right,
``backbone.body.`` in front of them inside a detector):

    conv1_w                          conv1.weight (input channels BGR -> RGB, see `CONV1`)
    res_conv1_bn_{s,b}               bn1 (AffineChannel scale / bias)
    res{n}_{i}_branch2{a,b,c}_w      layer{n-1}.{i}.conv{1,2,3}.weight      n = 2..5
    res{n}_{i}_branch2{a,b,c}_bn_s   layer{n-1}.{i}.bn{1,2,3} (scale; _bn_b: bias)
    res{n}_0_branch1_w               layer{n-1}.0.downsample.0.weight
    res{n}_0_branch1_bn_{s,b}        layer{n-1}.0.downsample.1

FPN (Detectron's ``FPN.add_fpn``: each name carries the trunk blob of the stage's last block,
``res5_2_sum`` for ResNet-50, ``res4_22_sum`` for ResNet-101's res4):

    fpn_inner_res{L}_{i}_sum[_lateral]_{w,b}   backbone.fpn.inner_blocks.{L-min}.0   1x1 lateral
    fpn_res{L}_{i}_sum_{w,b}                   backbone.fpn.layer_blocks.{L-min}.0   3x3 output

(the coarsest lateral has no ``_lateral`` suffix, the others have it unless Detectron ran
with FPN.INPLACE_LATERAL; both spellings are accepted at every level). Levels below the
model's finest FPN level have no target.

RPN (``FPN.add_fpn_rpn_outputs`` shares one head over the levels, stored under the finest
level's name, ``..._fpn2``; ``conv_rpn_w`` etc. without a level are the single-level RPN):

    conv_rpn[_fpn{k}]_{w,b}          rpn.head.conv.0.0
    rpn_cls_logits[_fpn{k}]_{w,b}    rpn.head.cls_logits   A sigmoid logits, anchor a = channel a
    rpn_bbox_pred[_fpn{k}]_{w,b}     rpn.head.bbox_pred    4A deltas, channel 4a + (dx,dy,dw,dh)

Box head (``fast_rcnn_heads``) and predictor:

    fc6_{w,b}, fc7_{w,b}             the 1st / 2nd Linear of roi_heads.box_head (2mlp head;
                                     fc6's input is the (C, 7, 7) RoI feature flattened C-major)
    head_conv{k}_{w,b}               the k-th conv of roi_heads.box_head (4conv1fc head)
    cls_score_{w,b}                  roi_heads.box_predictor.cls_score   row 0 = background
    bbox_pred_{w,b}                  roi_heads.box_predictor.bbox_pred   rows 4c..4c+3 = class c

Everything else (``fc1000_*`` of the ImageNet classifier, ``_gn_`` GroupNorm blobs, Mask
R-CNN's ``_[mask]_fcn*`` whose convs Detectron dilates by 2, ...) has no target and is
reported as unused by `sniper.modeling.detectron_weights`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "AFFINE_BIAS",
    "AFFINE_SCALE",
    "CONV1",
    "TENSOR",
    "BlobTarget",
    "DetectorLayout",
    "detector_target",
    "trunk_target",
]

# How a blob becomes tensors (`BlobTarget.kind`).
TENSOR = "tensor"  # copied as is into `key`
CONV1 = "conv1"  # the stem conv: input channels reversed (BGR -> RGB)
AFFINE_SCALE = "affine_scale"  # AffineChannel scale: `key` is the norm module's prefix
AFFINE_BIAS = "affine_bias"  # AffineChannel bias: `key` is the norm module's prefix


@dataclass(frozen=True)
class BlobTarget:
    """Where a blob goes: `key` a state-dict key (kind TENSOR / CONV1) or the prefix of a norm
    module (AFFINE_SCALE / AFFINE_BIAS); `kind` one of the constants above."""

    key: str
    kind: str


@dataclass(frozen=True)
class DetectorLayout:
    """What the detector names depend on.

    min_level: finest FPN level of the model (2 = stride 4); fc_names / conv_names: child
    names of the Linear / conv layers of ``roi_heads.box_head``, in order.
    """

    min_level: int
    fc_names: tuple[str, ...]
    conv_names: tuple[str, ...]


_LEAF = {"w": "weight", "b": "bias"}
_BRANCH2 = {"a": "1", "b": "2", "c": "3"}


def _res_block(m: re.Match[str]) -> BlobTarget | None:
    stage, block, branch, rest = int(m["n"]), m["i"], m["branch"], m["rest"]
    if not 2 <= stage <= 5:
        return None
    base = f"layer{stage - 1}.{block}"
    if branch == "branch1":
        if block != "0":
            return None
        conv, norm = f"{base}.downsample.0", f"{base}.downsample.1"
    else:
        conv, norm = f"{base}.conv{_BRANCH2[branch[-1]]}", f"{base}.bn{_BRANCH2[branch[-1]]}"
    if rest in _LEAF:
        return BlobTarget(f"{conv}.{_LEAF[rest]}", TENSOR)
    return BlobTarget(norm, AFFINE_SCALE if rest == "bn_s" else AFFINE_BIAS)


_TRUNK_RULES: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], BlobTarget | None]], ...] = (
    (re.compile(r"^conv1_w$"), lambda m: BlobTarget("conv1.weight", CONV1)),
    (
        re.compile(r"^res_conv1_bn_(?P<sb>[sb])$"),
        lambda m: BlobTarget("bn1", AFFINE_SCALE if m["sb"] == "s" else AFFINE_BIAS),
    ),
    (
        re.compile(
            r"^res(?P<n>\d)_(?P<i>\d+)_(?P<branch>branch1|branch2[abc])_(?P<rest>w|b|bn_s|bn_b)$"
        ),
        _res_block,
    ),
)


def trunk_target(blob: str) -> BlobTarget | None:
    """Target of a Detectron trunk blob in torchvision's ResNet classifier names (module doc);
    None when `blob` is not a trunk blob (``fc1000_w``, FPN, heads, ...)."""
    for pattern, make in _TRUNK_RULES:
        match = pattern.match(blob)
        if match:
            return make(match)
    return None


def _fpn(kind: str) -> Callable[[re.Match[str], DetectorLayout], BlobTarget | None]:
    def make(m: re.Match[str], layout: DetectorLayout) -> BlobTarget | None:
        level = int(m["L"])
        if not layout.min_level <= level <= 5:
            return None
        index = level - layout.min_level
        return BlobTarget(f"backbone.fpn.{kind}.{index}.0.{_LEAF[m['wb']]}", TENSOR)

    return make


def _nth(
    names: Callable[[DetectorLayout], tuple[str, ...]], first: int, fmt: str
) -> Callable[[re.Match[str], DetectorLayout], BlobTarget | None]:
    """The (k - first)-th of `names(layout)`, k from the match group "k", formatted by `fmt`."""

    def make(m: re.Match[str], layout: DetectorLayout) -> BlobTarget | None:
        index = int(m["k"]) - first
        available = names(layout)
        if not 0 <= index < len(available):
            return None
        return BlobTarget(fmt.format(name=available[index], leaf=_LEAF[m["wb"]]), TENSOR)

    return make


def _fixed(fmt: str) -> Callable[[re.Match[str], DetectorLayout], BlobTarget | None]:
    return lambda m, layout: BlobTarget(fmt.format(leaf=_LEAF[m["wb"]]), TENSOR)


_DETECTOR_RULES: tuple[
    tuple[re.Pattern[str], Callable[[re.Match[str], DetectorLayout], BlobTarget | None]], ...
] = (
    (
        re.compile(r"^fpn_inner_res(?P<L>\d)_\d+_sum(?:_lateral)?_(?P<wb>[wb])$"),
        _fpn("inner_blocks"),
    ),
    (re.compile(r"^fpn_res(?P<L>\d)_\d+_sum_(?P<wb>[wb])$"), _fpn("layer_blocks")),
    (re.compile(r"^conv_rpn(?:_fpn\d+)?_(?P<wb>[wb])$"), _fixed("rpn.head.conv.0.0.{leaf}")),
    (
        re.compile(r"^rpn_cls_logits(?:_fpn\d+)?_(?P<wb>[wb])$"),
        _fixed("rpn.head.cls_logits.{leaf}"),
    ),
    (
        re.compile(r"^rpn_bbox_pred(?:_fpn\d+)?_(?P<wb>[wb])$"),
        _fixed("rpn.head.bbox_pred.{leaf}"),
    ),
    (
        re.compile(r"^fc(?P<k>[67])_(?P<wb>[wb])$"),
        _nth(lambda lay: lay.fc_names, 6, "roi_heads.box_head.{name}.{leaf}"),
    ),
    (
        re.compile(r"^head_conv(?P<k>\d+)_(?P<wb>[wb])$"),
        _nth(lambda lay: lay.conv_names, 1, "roi_heads.box_head.{name}.0.{leaf}"),
    ),
    (re.compile(r"^cls_score_(?P<wb>[wb])$"), _fixed("roi_heads.box_predictor.cls_score.{leaf}")),
    (re.compile(r"^bbox_pred_(?P<wb>[wb])$"), _fixed("roi_heads.box_predictor.bbox_pred.{leaf}")),
)


def detector_target(blob: str, layout: DetectorLayout) -> BlobTarget | None:
    """Target of a Detectron detector blob in `SniperRCNN` / `SniperRPN` names (module doc):
    trunk blobs under ``backbone.body.``; None when nothing of `layout` takes it."""
    trunk = trunk_target(blob)
    if trunk is not None:
        return BlobTarget("backbone.body." + trunk.key, trunk.kind)
    for pattern, make in _DETECTOR_RULES:
        match = pattern.match(blob)
        if match:
            return make(match, layout)
    return None
