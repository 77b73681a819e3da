"""`META_ARCH_REGISTRY` and `build_model(cfg)`: the detector named by MODEL.META_ARCHITECTURE.

The meta-architectures of `sniper.modeling` (`SniperRCNN`, `SniperRPN`) register themselves
where they are defined; the package imports them all, as detectron2's `meta_arch` does.
"""

from __future__ import annotations

import logging

import torch
from fvcore.common.config import CfgNode
from fvcore.common.registry import Registry
from torch import nn

__all__ = ["META_ARCH_REGISTRY", "build_model"]

META_ARCH_REGISTRY = Registry("META_ARCH")
META_ARCH_REGISTRY.__doc__ = (
    "Detector classes with a `from_config(cfg)` classmethod; MODEL.META_ARCHITECTURE names one."
)

logger = logging.getLogger(__name__)


def build_model(cfg: CfgNode) -> nn.Module:
    """Build `META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE).from_config(cfg)` and move it
    to `cfg.MODEL.DEVICE`. The config needs `add_sniper_config` (SNIPER.* keys).

    The model starts in training mode: `model(images, targets)` returns a loss dict;
    after `model.eval()`, `model(images)` returns per-image detections in input pixels
    (see `sniper.modeling.detector`).
    """
    model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE).from_config(cfg)
    model.to(torch.device(cfg.MODEL.DEVICE))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    logger.info("built %s: %d parameters (%d trainable)", type(model).__name__, total, trainable)
    return model
