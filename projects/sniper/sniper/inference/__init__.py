"""SNIPER inference: cross-scale merging (soft-NMS), multi-scale inference, the predictor,
compact masks (patch + box, RLE)."""

from .mask_patches import paste_patch, patch_to_rle, patches_to_rle
from .multiscale import MultiScaleInference, tile_boxes
from .predictor import SniperPredictor
from .soft_nms import merge_detections, merge_indices, soft_nms_class

__all__ = [
    "MultiScaleInference",
    "SniperPredictor",
    "merge_detections",
    "merge_indices",
    "paste_patch",
    "patch_to_rle",
    "patches_to_rle",
    "soft_nms_class",
    "tile_boxes",
]
