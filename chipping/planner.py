"""Public, typed API of the chip planner (docs/design.md sections 4, 5). numpy in, numpy out.

Frames: boxes and proposals are float32 XYXY in original-image pixels (exclusive right/bottom
edge); chips are integer XYXY on the *canvas* of their scale (the image resized by the scale's
factor; ``ChipPlan.chips`` gives them in image pixels); assigned boxes are in chip pixels.

Every function takes ``backend="compiled"`` (the C++ extension, default) or ``"reference"``
(the pure-numpy twin in ``chipping._reference``); both give identical results.
"""

from __future__ import annotations

from chipping._grid import DEFAULT_SCALES as DEFAULT_SCALES
from chipping._grid import DEFAULT_VALID_RANGES as DEFAULT_VALID_RANGES
from chipping.assignment import assign_boxes, assign_boxes_batch
from chipping.focus import focus_chips, focus_chips_batch, focus_chips_to_image
from chipping.negative_chips import plan_negative_chips, plan_negative_chips_batch
from chipping.plan_types import ChipAssignment, ChipPlan
from chipping.positive_chips import plan_positive_chips, plan_positive_chips_batch
from chipping.scales import image_seed, parse_scales, scale_factor, scaled_size

__all__ = [
    "ChipAssignment",
    "ChipPlan",
    "assign_boxes",
    "assign_boxes_batch",
    "focus_chips",
    "focus_chips_batch",
    "focus_chips_to_image",
    "image_seed",
    "parse_scales",
    "plan_negative_chips",
    "plan_negative_chips_batch",
    "plan_positive_chips",
    "plan_positive_chips_batch",
    "scale_factor",
    "scaled_size",
]
