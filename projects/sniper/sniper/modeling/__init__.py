"""The detector: no-resize transform, backbones with FPN, ignore-aware RPN and RoI heads."""
