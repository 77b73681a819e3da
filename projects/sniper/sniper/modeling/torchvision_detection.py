"""COCO-pretrained torchvision detectors as MODEL.WEIGHTS: name resolution and key mapping.

`MODEL.WEIGHTS` may name torchvision detection weights instead of a file:

- ``torchvision://FasterRCNN_ResNet50_FPN_Weights.COCO_V1`` (any `torchvision.models`
  weights enum member, as `torchvision.models.get_weight` spells it), or
- ``torchvision://fasterrcnn_resnet50_fpn`` (a torchvision model name: its DEFAULT weights).

The file is read from torchvision's cache, ``$TORCH_HOME/hub/checkpoints/<file name of the
URL>`` (`torch.hub.get_dir()`), and downloaded there when missing and the network allows;
offline, put the file there (or give its path as MODEL.WEIGHTS).

A torchvision detection state dict (`fasterrcnn_resnet50_fpn`, `_v2`, `maskrcnn_resnet50_fpn`,
from the cache or from any file) loads into `SniperRCNN` / `SniperRPN` after
`convert_torchvision_state`, which maps torchvision's names onto ours:

- ``roi_heads.box_head.fc6`` / ``fc7`` (TwoMLPHead) -> the fc layers of our
  `FastRCNNConvFCHead` (``roi_heads.box_head.1`` / ``.3`` with no convs);
- names of torchvision's version-1 files (``rpn.head.conv.weight``,
  ``backbone.fpn.inner_blocks.0.weight``, Mask R-CNN's ``roi_heads.mask_head.mask_fcn1.weight``)
  -> ``rpn.head.conv.0.0.weight``, ``backbone.fpn.inner_blocks.0.0.weight``,
  ``roi_heads.mask_head.0.0.weight`` (as torchvision's own loaders do);
- ``num_batches_tracked`` of BatchNorm layers the model holds as FrozenBatchNorm2d: dropped;
- a 91-way COCO predictor (box classes, box deltas and, for `maskrcnn_resnet50_fpn`, mask
  logits; torchvision's labels = COCO category ids 1..90, 0 = background)
  loaded into an 80-class model: the rows of the 80 COCO categories, in ascending category
  id, which is the contiguous order of `sniper.data.coco` (class k = k-th sorted id).

Every other key already has our name (trunk ``backbone.body.*``, FPN ``backbone.fpn.*``,
RPN ``rpn.head.*``, ``roi_heads.box_predictor.*``). A predictor of any other size does not
fit and keeps its fresh initialization (`sniper.modeling.state_dict.load_model_state`
reports it as shape-mismatched).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn

__all__ = [
    "COCO_CATEGORY_IDS",
    "TORCHVISION_PREFIX",
    "convert_torchvision_state",
    "fetch_torchvision_detection",
    "is_torchvision_name",
    "torchvision_cache_file",
    "torchvision_weights",
]

logger = logging.getLogger(__name__)

TORCHVISION_PREFIX = "torchvision://"
# The 80 COCO category ids, ascending: torchvision's detection label of sniper's class k.
COCO_CATEGORY_IDS = (
    tuple(range(1, 12))
    + tuple(range(13, 26))
    + (27, 28)
    + tuple(range(31, 45))
    + tuple(range(46, 66))
    + (67, 70)
    + tuple(range(72, 83))
    + tuple(range(84, 91))
)
_PREDICTOR = "roi_heads.box_predictor."
_OLD_NAMES = (
    (re.compile(r"^rpn\.head\.conv\.(weight|bias)$"), r"rpn.head.conv.0.0.\1"),
    (
        re.compile(r"^backbone\.fpn\.(inner_blocks|layer_blocks)\.(\d+)\.(weight|bias)$"),
        r"backbone.fpn.\1.\2.0.\3",
    ),
)
# version-1 Mask R-CNN files: roi_heads.mask_head.mask_fcn<k> -> roi_heads.mask_head.<k-1>.0
_MASK_FCN = re.compile(r"^roi_heads\.mask_head\.mask_fcn(\d+)\.(weight|bias)$")
_MASK_LOGITS = "roi_heads.mask_predictor.mask_fcn_logits."
_TWO_MLP = re.compile(r"^roi_heads\.box_head\.fc(6|7)\.(weight|bias)$")


def is_torchvision_name(source: str) -> bool:
    """Whether a MODEL.WEIGHTS value names torchvision weights (``torchvision://...``)."""
    return source.startswith(TORCHVISION_PREFIX)


def _detection_weight_names() -> list[str]:
    names = []
    for model in torchvision.models.list_models(module=torchvision.models.detection):
        enum = torchvision.models.get_model_weights(model)
        names += [f"{enum.__name__}.{member.name}" for member in enum]
    return sorted(names)


def torchvision_weights(source: str) -> torchvision.models.WeightsEnum:
    """The torchvision weights enum member named by ``torchvision://NAME`` (module doc).

    Raises:
        ValueError: not a ``torchvision://`` name, or NAME is neither a weights name nor a
            model name; the message lists the detection weights names.
    """
    if not is_torchvision_name(source):
        raise ValueError(f"MODEL.WEIGHTS {source!r} does not start with {TORCHVISION_PREFIX!r}")
    name = source[len(TORCHVISION_PREFIX) :]
    try:
        if "." in name:
            return torchvision.models.get_weight(name)
        return torchvision.models.get_model_weights(name).DEFAULT
    except (KeyError, ValueError, AttributeError) as err:
        raise ValueError(
            f"MODEL.WEIGHTS {source!r}: {name!r} is not a torchvision weights or model name "
            f"({type(err).__name__}: {err}); detection weights are: "
            + ", ".join(TORCHVISION_PREFIX + n for n in _detection_weight_names())
        ) from err


def torchvision_cache_file(weights: torchvision.models.WeightsEnum) -> Path:
    """Where torchvision keeps the file of `weights`: ``<torch.hub.get_dir()>/checkpoints/``
    plus the file name of its URL (``$TORCH_HOME/hub/checkpoints/...``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def fetch_torchvision_detection(source: str) -> dict[str, Tensor]:
    """The state dict of the torchvision weights ``source`` (``torchvision://NAME``), read
    from the cache with ``weights_only=True`` (downloaded there first if missing).

    Raises:
        ValueError: an unknown name (`torchvision_weights`).
        FileNotFoundError: not in the cache and the download failed; the message names the
            cache file and the URL.
    """
    weights = torchvision_weights(source)
    cached = torchvision_cache_file(weights)
    try:
        state = weights.get_state_dict(progress=False, check_hash=True, weights_only=True)
    except Exception as err:  # network errors come in many types (URLError, OSError, ...)
        raise FileNotFoundError(
            f"MODEL.WEIGHTS {source!r}: {cached} is not in torchvision's cache and the "
            f"download from {weights.url} failed ({type(err).__name__}: {err}); put the file "
            "there (TORCH_HOME sets the cache folder) or give its path as MODEL.WEIGHTS"
        ) from err
    logger.info("MODEL.WEIGHTS %s: torchvision weights %s from %s", source, weights, cached)
    return dict(state)


def _rename(key: str, fc_names: list[str]) -> str:
    for pattern, replacement in _OLD_NAMES:
        if pattern.match(key):
            return pattern.sub(replacement, key)
    mask_fcn = _MASK_FCN.match(key)
    if mask_fcn:
        return f"roi_heads.mask_head.{int(mask_fcn.group(1)) - 1}.0.{mask_fcn.group(2)}"
    match = _TWO_MLP.match(key)
    index = int(match.group(1)) - 6 if match else -1
    if match and index < len(fc_names):
        return f"roi_heads.box_head.{fc_names[index]}.{match.group(2)}"
    return key


def _coco_rows(state: dict[str, Tensor], own: dict[str, Tensor]) -> None:
    """Keep the 80 COCO categories' rows of a 91-way predictor (box, and mask logits when
    present) loaded into 80 classes."""
    cls_w, box_w = _PREDICTOR + "cls_score.weight", _PREDICTOR + "bbox_pred.weight"
    if cls_w not in state or cls_w not in own:
        return
    if state[cls_w].shape[0] != 91 or own[cls_w].shape[0] != len(COCO_CATEGORY_IDS) + 1:
        return
    rows = torch.tensor((0, *COCO_CATEGORY_IDS))
    box_rows = (rows[:, None] * 4 + torch.arange(4)).flatten()
    for prefix, index in (
        (_PREDICTOR + "cls_score.", rows),
        (_PREDICTOR + "bbox_pred.", box_rows),
        (_MASK_LOGITS, rows),
    ):
        for leaf in ("weight", "bias"):
            key = prefix + leaf
            if key in state and (prefix != _MASK_LOGITS or state[key].shape[0] == 91):
                state[key] = state[key][index]
    logger.info(
        "%s: 91-way torchvision COCO predictor -> the 80 COCO categories (ascending id)", box_w
    )


def convert_torchvision_state(state: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Map a torchvision detection state dict onto `model`'s names (module doc gives the
    rules); a state dict that already uses our names comes back unchanged.

    Args:
        state: parameter and buffer tensors by name (``module.`` prefix already stripped).
        model: a `SniperRCNN` / `SniperRPN` (anything with our names), not a DDP wrapper.

    Returns:
        A new dict; `state` is not modified.
    """
    own = model.state_dict()
    box_head = getattr(getattr(model, "roi_heads", None), "box_head", None)
    fc_names = (
        [n for n, m in box_head.named_children() if isinstance(m, nn.Linear)] if box_head else []
    )
    converted = {}
    for key, value in state.items():
        new_key = _rename(key, fc_names)
        if new_key.endswith(".num_batches_tracked") and new_key not in own:
            continue  # a BatchNorm counter where the model has a FrozenBatchNorm2d
        converted[new_key] = value
    _coco_rows(converted, own)
    return converted
