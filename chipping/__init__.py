"""Chip planner for SNIPER and AutoFocus: numpy in, numpy out, never imports torch.

The compiled extension ``chipping._planner`` does the work; ``chipping._reference`` is
its slow, readable pure-numpy twin used as the test oracle.
"""

from chipping.planner import (  # noqa: F401
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

__all__ = [name for name in dir() if not name.startswith("_")]
