"""The detector: no-resize transform, backbones with FPN, ignore-aware RPN and RoI heads."""

from .backbone import BACKBONE_REGISTRY, FPNBackbone, build_backbone
from .build import build_model
from .detector import META_ARCH_REGISTRY, SniperRCNN, check_targets
from .norms import NORM_REGISTRY, convert_norm
from .roi_heads import RangeAwareRoIHeads, build_roi_heads
from .rpn import IgnoreAwareRPN, build_rpn
from .transform import NoResizeTransform
from .weights import fetch_state_dict, load_trunk_weights, offline_weights_path

__all__ = [
    "BACKBONE_REGISTRY",
    "META_ARCH_REGISTRY",
    "NORM_REGISTRY",
    "FPNBackbone",
    "IgnoreAwareRPN",
    "NoResizeTransform",
    "RangeAwareRoIHeads",
    "SniperRCNN",
    "build_backbone",
    "build_model",
    "build_roi_heads",
    "build_rpn",
    "check_targets",
    "convert_norm",
    "fetch_state_dict",
    "load_trunk_weights",
    "offline_weights_path",
]
