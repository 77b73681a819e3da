"""SNIPER inference: cross-scale merging (soft-NMS), multi-scale inference, the predictor."""

from .multiscale import MultiScaleInference, tile_boxes
from .predictor import SniperPredictor
from .soft_nms import merge_detections, soft_nms_class

__all__ = [
    "MultiScaleInference",
    "SniperPredictor",
    "merge_detections",
    "soft_nms_class",
    "tile_boxes",
]
