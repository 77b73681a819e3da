"""Normalization layers of the trunk: conversion by name and stage freezing.

Trunks are built with plain `nn.BatchNorm2d` (so ImageNet weights load), then converted by
`convert_norm(module, name)` with a converter from `NORM_REGISTRY`:

- "FrozenBN": `torchvision.ops.FrozenBatchNorm2d` (fixed statistics and affine).
- "BN": trained BatchNorm with per-GPU statistics, the SNIPER setting (large chip batches).
- "SyncBN": `nn.SyncBatchNorm`, statistics across DDP processes (plain BN in one process).
- "GN": `nn.GroupNorm` with gcd(32, C) groups (MobileNetV2 has 16- and 24-channel layers).

Registered names are the converter function names, which are the config values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from fvcore.common.registry import Registry
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

__all__ = ["NORM_REGISTRY", "convert_norm", "freeze_children", "head_norm_layer", "to_frozen_bn"]

NORM_REGISTRY = Registry("NORM")
NORM_REGISTRY.__doc__ = "Norm converters: fn(module) -> module with its BatchNorm2d replaced."

_BN_TYPES = (nn.BatchNorm2d, nn.SyncBatchNorm)


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
    assert isinstance(bn, _BN_TYPES)
    frozen = FrozenBatchNorm2d(bn.num_features, eps=bn.eps)
    if bn.affine:
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
    """Replace every BatchNorm2d/SyncBatchNorm in `module` by a FrozenBatchNorm2d that keeps
    its running statistics and affine parameters. Returns the (possibly new) module."""
    return _replace(module, lambda m: isinstance(m, _BN_TYPES), _frozen_from_bn)


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
    (convs without bias), as torchvision's `_v2` detectors build them.

    Raises:
        ValueError: any other name.
    """
    if name == "":
        return None
    if name == "BN":
        return nn.BatchNorm2d
    raise ValueError(f'head norm must be "" (none) or "BN", got {name!r}')
