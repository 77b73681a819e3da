"""Normalization layers of the trunk: conversion by name and stage freezing.

Trunks are built with plain `nn.BatchNorm2d` (so ImageNet weights load), then converted by
`convert_norm(module, name)` with a converter from `NORM_REGISTRY`:

- "FrozenBN": `torchvision.ops.FrozenBatchNorm2d` (fixed statistics and affine).
- "BN": trained BatchNorm with per-GPU statistics, the SNIPER setting (large chip batches).
- "SyncBN": `nn.SyncBatchNorm`, statistics across DDP processes (plain BN in one process).
- "GN": `nn.GroupNorm` with gcd(32, C) groups (MobileNetV2 has 16- and 24-channel layers).
- "SN": Switchable Normalization (`sniper.modeling.switchable_norm.SwitchNorm2d`, IN + LN +
  BN), initialised from the BatchNorm: its affine and running statistics, importance
  weights equal. Batch statistics are per GPU, as "BN" (no synchronized variant: SN's IN and
  LN branches are what serves small per-GPU batches; "SyncBN" is the synchronized answer).
- "SN_INLN": SN without the batch branch (IN + LN), the paper's "(8, 1)" setting.

Registered names are the converter function names, which are the config values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import torch
from fvcore.common.registry import Registry
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from .switchable_norm import SwitchNorm2d

__all__ = [
    "NORM_REGISTRY",
    "convert_norm",
    "freeze_children",
    "head_norm_layer",
    "recompute_batch_average",
    "to_frozen_bn",
]

NORM_REGISTRY = Registry("NORM")
NORM_REGISTRY.__doc__ = "Norm converters: fn(module) -> module with its BatchNorm2d replaced."

_BN_TYPES = (nn.BatchNorm2d, nn.SyncBatchNorm)
_FREEZABLE = (*_BN_TYPES, SwitchNorm2d)


def _replace(
    module: nn.Module, match: Callable[[nn.Module], bool], make: Callable[[nn.Module], nn.Module]
) -> nn.Module:
    """Recursively replace every submodule for which `match` holds by `make(submodule)`."""
    if match(module):
        return make(module)
    for name, child in module.named_children():
        new_child = _replace(child, match, make)
        if new_child is not child:
            setattr(module, name, new_child)
    return module


def _frozen_from_bn(bn: nn.Module) -> FrozenBatchNorm2d:
    """FrozenBatchNorm2d from a BatchNorm2d / SyncBatchNorm, or from a SwitchNorm2d (its
    running statistics and affine: a frozen stage is plain frozen BN whatever the norm)."""
    assert isinstance(bn, _FREEZABLE)
    frozen = FrozenBatchNorm2d(bn.num_features, eps=bn.eps)
    if isinstance(bn, SwitchNorm2d) or bn.affine:
        frozen.weight.copy_(bn.weight.detach())
        frozen.bias.copy_(bn.bias.detach())
    if bn.running_mean is not None and bn.running_var is not None:
        frozen.running_mean.copy_(bn.running_mean)
        frozen.running_var.copy_(bn.running_var)
    return frozen


def _group_norm_from_bn(bn: nn.Module) -> nn.GroupNorm:
    assert isinstance(bn, _BN_TYPES)
    channels = bn.num_features
    return nn.GroupNorm(math.gcd(32, channels), channels, eps=bn.eps, affine=True)


def to_frozen_bn(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d/SyncBatchNorm (and SwitchNorm2d) in `module` by a
    FrozenBatchNorm2d that keeps its running statistics and affine parameters. Returns the
    (possibly new) module."""
    return _replace(module, lambda m: isinstance(m, _FREEZABLE), _frozen_from_bn)


@NORM_REGISTRY.register()
def FrozenBN(module: nn.Module) -> nn.Module:  # noqa: N802 (name = config value)
    """FrozenBatchNorm2d everywhere: ImageNet statistics stay fixed."""
    return to_frozen_bn(module)


@NORM_REGISTRY.register()
def BN(module: nn.Module) -> nn.Module:  # noqa: N802 (name = config value)
    """Keep trained BatchNorm2d (statistics of the chips on each GPU)."""
    return module


@NORM_REGISTRY.register()
def SyncBN(module: nn.Module) -> nn.Module:  # noqa: N802 (name = config value)
    """nn.SyncBatchNorm; synchronizes only inside an initialized multi-process group."""
    return nn.SyncBatchNorm.convert_sync_batchnorm(module)


@NORM_REGISTRY.register()
def GN(module: nn.Module) -> nn.Module:  # noqa: N802 (name = config value)
    """GroupNorm(gcd(32, C), C) in place of every BatchNorm (affine re-initialized)."""
    return _replace(module, lambda m: isinstance(m, _BN_TYPES), _group_norm_from_bn)


@NORM_REGISTRY.register()
def SN(module: nn.Module) -> nn.Module:  # noqa: N802 (name = config value)
    """SwitchNorm2d (IN + LN + BN) from every BatchNorm: affine and statistics kept."""
    return _replace(module, lambda m: isinstance(m, _BN_TYPES), SwitchNorm2d.from_batch_norm)


@NORM_REGISTRY.register()
def SN_INLN(module: nn.Module) -> nn.Module:  # noqa: N802 (name = config value)
    """SwitchNorm2d without the batch branch (IN + LN) from every BatchNorm (affine kept)."""
    return _replace(
        module,
        lambda m: isinstance(m, _BN_TYPES),
        partial(SwitchNorm2d.from_batch_norm, using_bn=False),
    )


def recompute_batch_average(
    model: nn.Module, batches: Iterable[Any], forward: Callable[[nn.Module, Any], Any]
) -> int:
    """The paper's "batch average": reset the running statistics of every `SwitchNorm2d`
    with a batch branch in `model` to the average over `batches` (``forward(model, batch)``
    each, in training mode, without gradients); the model's mode is restored.

    Returns:
        The number of batches averaged.

    Raises:
        ValueError: `model` has no SN layer with a batch branch, or `batches` is empty.
    """
    layers = [m for m in model.modules() if isinstance(m, SwitchNorm2d) and m.using_bn]
    if not layers:
        raise ValueError("recompute_batch_average: the model has no SwitchNorm2d with BN")
    was_training = model.training
    for layer in layers:
        layer.begin_batch_average()
    model.train()
    try:
        with torch.no_grad():
            for batch in batches:
                forward(model, batch)
    finally:
        model.train(was_training)
    if layers[0]._average is None or layers[0]._average[0] == 0:
        for layer in layers:
            layer._average = None
        raise ValueError("recompute_batch_average: no batch was given")
    return min(layer.end_batch_average() for layer in layers)


def convert_norm(module: nn.Module, norm: str) -> nn.Module:
    """Convert the BatchNorm2d layers of `module` to the norm named `norm` (see module doc).

    Raises:
        KeyError: if `norm` is not registered (the message lists the name).
    """
    return NORM_REGISTRY.get(norm)(module)


def freeze_children(parent: nn.Module, names: Iterable[str]) -> None:
    """Freeze the children `names` of `parent`: parameters stop requiring grad and their
    BatchNorm layers become FrozenBatchNorm2d (detectron2's frozen-stage behaviour)."""
    for name in names:
        child = to_frozen_bn(getattr(parent, name))
        for param in child.parameters():
            param.requires_grad_(False)
        setattr(parent, name, child)


def head_norm_layer(name: str) -> Callable[..., nn.Module] | None:
    """The norm layer class of the FPN and box head convs (MODEL.FPN.NORM,
    MODEL.ROI_BOX_HEAD.NORM): "" -> None (no norm, convs with bias), "BN" -> nn.BatchNorm2d
    (convs without bias), as torchvision's `_v2` detectors build them; "SN" / "SN_INLN" ->
    `SwitchNorm2d` with / without its batch branch.

    Raises:
        ValueError: any other name.
    """
    if name == "":
        return None
    if name == "BN":
        return nn.BatchNorm2d
    if name == "SN":
        return SwitchNorm2d
    if name == "SN_INLN":
        return partial(SwitchNorm2d, using_bn=False)
    raise ValueError(f'head norm must be "" (none), "BN", "SN" or "SN_INLN", got {name!r}')
