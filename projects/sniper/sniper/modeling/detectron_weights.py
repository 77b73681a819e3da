"""Detectron ``.pkl`` blobs -> state dicts of our trunks and detectors, and their conventions.

Names follow `sniper.modeling.detectron_names`; files are read by
`sniper.modeling.detectron_pkl`. What a blob becomes:

- weights and biases of convs and fc layers: copied (Caffe2 and torch share the layouts:
  conv (C_out, C_in, kh, kw), fc (out, in), fc6's input flattened (C, H, W) as torch does);
- ``conv1_w``: its input channels reversed. Detectron's networks take **BGR** images minus
  the BGR mean [102.9801, 115.9465, 122.7717], std 1; our `NoResizeTransform` always hands
  the network RGB (INPUT.FORMAT only says what the caller passes), so the stem is flipped
  once on load and the model wants ``MODEL.PIXEL_MEAN`` = the same mean in RGB order
  (`sniper.config_detectron.DETECTRON_PIXEL_MEAN`) and ``MODEL.PIXEL_STD = [1, 1, 1]``:
  `model_warnings` and the config check (`sniper.config_detectron`) warn otherwise;
- ``_bn_s`` / ``_bn_b`` (Caffe2 AffineChannel, y = s * x + b, no statistics): the norm
  layer's ``weight = s``, ``bias = b``, ``running_mean = 0``, ``running_var = 1 - eps``, so
  that ``running_var + eps == 1`` exactly in float32 (checked) and a FrozenBatchNorm2d
  computes exactly ``s * x + b`` (nothing is folded into the convs). A trained norm ("BN",
  "SyncBN", "SN") starts from the same affine and statistics (logged): in eval mode "BN"
  computes ``s * x + b`` too, in training it normalizes by batch statistics. GroupNorm has
  no statistics to make it an affine map: those blobs are reported as unused (logged);
- Detectron's ResNets put the stride of a stage's first block in its 1x1 conv (branch2a,
  MSRA); torchvision puts it in the 3x3: `stride_warnings` says to set
  ``MODEL.BACKBONE.STRIDE_IN_1X1 True``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from sniper.config_detectron import detectron_pixel_problem

from .detectron_names import (
    AFFINE_BIAS,
    AFFINE_SCALE,
    CONV1,
    BlobTarget,
    DetectorLayout,
    detector_target,
    trunk_target,
)
from .detectron_pkl import DetectronFile
from .switchable_norm import SwitchNorm2d

__all__ = [
    "DetectronState",
    "convert_detectron_blobs",
    "detector_blob_target",
    "detector_layout",
    "model_warnings",
    "stride_warnings",
    "trunk_target",
]

logger = logging.getLogger(__name__)

_NORMS_WITH_STATS = (nn.BatchNorm2d, nn.SyncBatchNorm, SwitchNorm2d)


@dataclass
class DetectronState:
    """The result of `convert_detectron_blobs`.

    state: our keys -> tensors to load; sources: our key -> the blob it came from; unused:
    blobs with no target in the model, sorted; mismatched: ``(blob, key, blob shape, model
    shape)`` of blobs whose target has another shape (not in `state`), sorted.
    """

    state: dict[str, Tensor] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    unused: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, str, tuple[int, ...], tuple[int, ...]]] = field(
        default_factory=list
    )

    def put(self, key: str, value: Tensor, blob: str) -> None:
        """Add ``key``; a second blob for the same key is a ValueError naming both."""
        if key in self.sources and self.sources[key] != blob:
            raise ValueError(
                f"Detectron blobs {self.sources[key]!r} and {blob!r} both map to {key}: the "
                "file holds two copies of one layer"
            )
        self.state[key] = value
        self.sources[key] = blob


def detector_layout(model: nn.Module) -> DetectorLayout:
    """The `DetectorLayout` of a `SniperRCNN` / `SniperRPN` (FPN levels, box head layers)."""
    backbone = getattr(model, "backbone", None)
    names = getattr(backbone, "pooler_level_names", None) or ["p2"]
    box_head = getattr(getattr(model, "roi_heads", None), "box_head", None)
    children = list(box_head.named_children()) if box_head is not None else []
    fc_names = tuple(n for n, m in children if isinstance(m, nn.Linear))
    conv_names = tuple(
        n for n, m in children if isinstance(m, nn.Sequential) and isinstance(m[0], nn.Conv2d)
    )
    return DetectorLayout(int(names[0][1:]), fc_names, conv_names)


def _tensor(array: np.ndarray, like: Tensor) -> Tensor:
    return torch.from_numpy(np.array(array, copy=True)).to(dtype=like.dtype)


def _put_affine(
    out: DetectronState,
    blob: str,
    array: np.ndarray,
    target: BlobTarget,
    module: nn.Module,
    own: dict[str, Tensor],
) -> None:
    """weight (scale) or bias of the norm `module` at prefix `target.key`; with the scale,
    its statistics running_mean = 0, running_var = 1 - eps when it has them."""
    leaf = "weight" if target.kind == AFFINE_SCALE else "bias"
    key = f"{target.key}.{leaf}"
    if isinstance(module, nn.GroupNorm) or key not in own:
        out.unused.append(blob)
        return
    if tuple(array.shape) != tuple(own[key].shape):
        out.mismatched.append((blob, key, tuple(array.shape), tuple(own[key].shape)))
        return
    out.put(key, _tensor(array, own[key]), blob)
    mean_key, var_key = f"{target.key}.running_mean", f"{target.key}.running_var"
    if target.kind == AFFINE_SCALE and mean_key in own and var_key in own:
        eps = float(getattr(module, "eps", 1e-5))
        var = torch.full_like(own[var_key], 1.0 - eps)
        if not bool(((var + eps) == 1).all()):
            logger.warning("%s: running_var + eps != 1 in float32 (eps %g)", target.key, eps)
        out.put(mean_key, torch.zeros_like(own[mean_key]), blob)
        out.put(var_key, var, blob)


def convert_detectron_blobs(
    file: DetectronFile,
    module: nn.Module,
    target: Callable[[str], BlobTarget | None],
) -> DetectronState:
    """Map the blobs of `file` onto `module`'s state dict (module doc gives the rules).

    Args:
        file: the blobs read by `sniper.modeling.detectron_pkl.read_detectron_pkl`.
        module: a torchvision ResNet classifier (trunk) or a detector.
        target: blob name -> `BlobTarget` in `module`'s names (`trunk_target`, or
            `detector_target` with the model's layout).

    Returns:
        The `DetectronState` (nothing is loaded into `module`).

    Raises:
        ValueError: two blobs for one tensor; ``conv1_w`` without 3 input channels.
    """
    own = module.state_dict()
    modules = dict(module.named_modules())
    out = DetectronState()
    for blob in sorted(file.blobs):
        array = file.blobs[blob]
        where = target(blob)
        if where is None:
            out.unused.append(blob)
        elif where.kind in (AFFINE_SCALE, AFFINE_BIAS):
            norm = modules.get(where.key)
            if norm is None:
                out.unused.append(blob)
            else:
                _put_affine(out, blob, array, where, norm, own)
        elif where.key not in own:
            out.unused.append(blob)
        elif tuple(array.shape) != tuple(own[where.key].shape):
            out.mismatched.append(
                (blob, where.key, tuple(array.shape), tuple(own[where.key].shape))
            )
        else:
            value = _tensor(array, own[where.key])
            if where.kind == CONV1:
                value = value.flip(1)  # BGR -> RGB input channels
            out.put(where.key, value, blob)
    out.unused.sort()
    out.mismatched.sort()
    _log_norms(modules, out)
    return out


def _log_norms(modules: dict[str, nn.Module], out: DetectronState) -> None:
    """One line for the norm layers that are not frozen affine maps after loading."""
    trained = sorted(
        {
            type(modules[k.rsplit(".", 1)[0]]).__name__
            for k in out.state
            if k.endswith(".running_var")
            and isinstance(modules.get(k.rsplit(".", 1)[0]), _NORMS_WITH_STATS)
        }
    )
    if trained:
        logger.info(
            "Detectron AffineChannel (s, b) -> %s with weight=s, bias=b, running_mean=0, "
            "running_var=1-eps: s*x+b in eval mode; training normalizes by batch statistics",
            "/".join(trained),
        )
    if any(isinstance(m, nn.GroupNorm) for m in modules.values()) and any(
        b.endswith(("_bn_s", "_bn_b")) for b in out.unused
    ):
        logger.warning(
            "Detectron _bn_s/_bn_b blobs have no GroupNorm equivalent: the GroupNorm layers keep "
            "their initialization (those blobs are reported as unused)"
        )


def detector_blob_target(model: nn.Module) -> Callable[[str], BlobTarget | None]:
    """blob -> target in `model` (`detector_target` with `detector_layout(model)`)."""
    layout = detector_layout(model)
    return lambda blob: detector_target(blob, layout)


def model_warnings(model: nn.Module) -> list[str]:
    """Why the detector `model` does not see its input as a Detectron network did: its
    transform's pixel mean / std (`sniper.config_detectron.detectron_pixel_problem`) and
    its trunk's strides (`stride_warnings`); [] when both match."""
    problems = []
    transform = getattr(model, "transform", None)
    if transform is not None and hasattr(transform, "pixel_mean"):
        mean = transform.pixel_mean.flatten().tolist()
        std = transform.pixel_std.flatten().tolist()
        problems.append(detectron_pixel_problem(mean, std))
    body = getattr(getattr(model, "backbone", None), "body", None)
    if body is not None:
        problems += stride_warnings(body)
    return [p for p in problems if p]


def stride_warnings(trunk: nn.Module) -> list[str]:
    """Why a torchvision ResNet `trunk` (anything with ``layer2[0].conv1``) does not place its
    strides as Detectron's MSRA ResNets ([] when it does)."""
    layer2 = getattr(trunk, "layer2", None)
    if layer2 is None or tuple(layer2[0].conv1.stride) == (2, 2):
        return []
    return [
        "Detectron's ResNets stride in the 1x1 conv of each stage's first block (branch2a); "
        "this trunk strides in the 3x3: set MODEL.BACKBONE.STRIDE_IN_1X1 True"
    ]
