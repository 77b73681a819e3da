"""The detectors: no-resize transform, backbones with FPN, ignore-aware RPN and RoI heads.

Meta-architectures (MODEL.META_ARCHITECTURE, in `META_ARCH_REGISTRY`): `SniperRCNN` (the
detector) and `SniperRPN` (its proposal network, for negative chip mining).
"""

from .backbone import BACKBONE_REGISTRY, FPNBackbone, build_backbone
from .build import META_ARCH_REGISTRY, build_model
from .detector import SniperRCNN, check_targets
from .norms import NORM_REGISTRY, convert_norm
from .proposal_network import SniperRPN
from .roi_heads import RangeAwareRoIHeads, build_roi_heads
from .rpn import IgnoreAwareRPN, build_rpn
from .state_dict import LoadReport, load_model_state, load_model_weights, read_checkpoint
from .torchvision_detection import convert_torchvision_state, fetch_torchvision_detection
from .transform import NoResizeTransform
from .weights import fetch_state_dict, load_trunk_weights, offline_weights_path

__all__ = [
    "BACKBONE_REGISTRY",
    "META_ARCH_REGISTRY",
    "NORM_REGISTRY",
    "FPNBackbone",
    "IgnoreAwareRPN",
    "LoadReport",
    "NoResizeTransform",
    "RangeAwareRoIHeads",
    "SniperRCNN",
    "SniperRPN",
    "build_backbone",
    "build_model",
    "build_roi_heads",
    "build_rpn",
    "check_targets",
    "convert_norm",
    "convert_torchvision_state",
    "fetch_state_dict",
    "fetch_torchvision_detection",
    "load_model_state",
    "load_model_weights",
    "load_trunk_weights",
    "offline_weights_path",
    "read_checkpoint",
]
