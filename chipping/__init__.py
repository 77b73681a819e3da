"""Chip planner for SNIPER and AutoFocus: numpy in, numpy out, never imports torch.

The compiled extension ``chipping._planner`` does the work; ``chipping._reference`` is
its slow, readable pure-numpy twin used as the test oracle. The public names below are those
of ``chipping.planner``; the rules they implement are in docs/design.md (sections 4 and 5).
"""

from chipping.planner import (
    ChipAssignment,
    ChipPlan,
    assign_boxes,
    assign_boxes_batch,
    focus_chips,
    focus_chips_batch,
    focus_chips_to_image,
    image_seed,
    parse_scales,
    plan_negative_chips,
    plan_negative_chips_batch,
    plan_positive_chips,
    plan_positive_chips_batch,
    scale_factor,
    scaled_size,
)

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
