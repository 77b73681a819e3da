"""Default values of every `AUTOFOCUS` config key, one assignment per line with a comment.

As in `sniper.config_defaults`, every leaf assignment carries a one-line comment giving its
meaning and unit; `autofocus.config.key_comments()` reads them back from this file's source
and the tests check that no key lacks one. Keep each assignment on a single line (or put the
comment on its first line).

Frames: "chip px" = pixels of a network input (a training chip, or a crop at its test scale);
"image px" = pixels of the original image; "cells" = cells of the FocusPixel map (one cell =
`stride` chip px, the stride of `AUTOFOCUS.FEATURE`: 16 for "p4"). Scales are a float factor
on the original image or a [short, long] pair (docs/design.md section 4). docs/design.md section 5
names the label sizes a, b, c and the transition parameters (t, d, k).
"""

from __future__ import annotations

from fvcore.common.config import CfgNode


def autofocus_defaults(cfg: CfgNode) -> CfgNode:
    """Add the `AUTOFOCUS` node (docs/design.md section 5) to `cfg` and return it."""
    CN = type(cfg)
    cfg.AUTOFOCUS = CN()  # FocusPixel head, its labels and the coarse-to-fine cascade
    cfg.AUTOFOCUS.POS_MIN_SIZE = 5.0  # a: boxes of size <= a make their cells ignore (chip px)
    cfg.AUTOFOCUS.POS_MAX_SIZE = 64.0  # b: boxes of size in (a, b) make cells positive (chip px)
    cfg.AUTOFOCUS.IGNORE_MAX_SIZE = 90.0  # c: sizes in [b, c) -> ignore, >= c: no effect (chip px)
    cfg.AUTOFOCUS.FEATURE = "p4"  # FPN level the FocusPixel head reads ("p4" = stride 16 chip px)
    cfg.AUTOFOCUS.HEAD_CHANNELS = 256  # width of the head's conv3x3 and conv1x1 layers (channels)
    cfg.AUTOFOCUS.LOSS_WEIGHT = 1.0  # multiplier of loss_focus in the training loss (factor)
    cfg.AUTOFOCUS.FREEZE_DETECTOR = False  # train only the head; MODEL.WEIGHTS' detector frozen
    cfg.AUTOFOCUS.SCALES = [[512, 512], [800, 1280], [1400, 2000]]  # cascade, coarse->fine
    cfg.AUTOFOCUS.VALID_RANGES = [[75, -1], [32, 180], [-1, 75]]  # kept det size/scale (image px)
    cfg.AUTOFOCUS.THRESHOLDS = [0.02, 0.2]  # t per transition: FocusPixel prob >= t is on (prob)
    cfg.AUTOFOCUS.DILATIONS = [3, 3]  # d per transition: square dilation of the on-set (cells)
    cfg.AUTOFOCUS.MIN_SIZES = [16, 20]  # k per transition: min FocusChip side (cells)
    cfg.AUTOFOCUS.BORDER_DELTA = 10.0  # drop dets this close to an inner FocusChip edge (image px)
    cfg.AUTOFOCUS.MAX_PIXELS_PER_BATCH = 8000000  # padded pixel budget of one model call (px)
    return cfg
