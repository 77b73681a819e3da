"""Config validation: the scale and range parsers of config values and `validate_cfg`.

Every check raises ``ValueError("config key KEY = VALUE: reason")`` for the first offending
key. The parsers are those of `chipping.scales` (``scale_specs``, ``parse_ranges``), so the
config accepts exactly what the planner and the inference engines accept. Imports no torch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from chipping.scales import parse_ranges, scale_specs
from sniper.cli_errors import ConfigError
from sniper.config_detectron import detectron_input_warnings
from sniper.config_ranges import validate_numbers

__all__ = ["HEAD_NORMS", "parse_scale_list", "parse_valid_ranges", "validate_cfg"]

logger = logging.getLogger(__name__)

Scale = float | tuple[float, float]
CfgNode = Any  # an fvcore CfgNode with the keys of `sniper.config_defaults`

# Norms of the FPN and box head convs (MODEL.FPN.NORM, MODEL.ROI_BOX_HEAD.NORM); the layers are
# made by `sniper.modeling.norms.head_norm_layer`.
HEAD_NORMS = ("", "BN", "SN", "SN_INLN")


def parse_scale_list(cfg_value: Sequence[Any]) -> list[Scale]:
    """Parse a scale list: each entry a factor or a ``[short, long]`` pair (px; ``long = -1``:
    no cap), as ``chipping.scales.scale_specs``.

    Returns floats for factors and ``(short, long)`` float tuples for pairs.

    Raises:
        ValueError: naming the offending entry (non-positive, non-finite, malformed).
    """
    return scale_specs(list(cfg_value))


def parse_valid_ranges(cfg_value: Sequence[Any]) -> list[tuple[float, float]]:
    """Parse ``[lo, hi]`` size ranges (image px; -1 = open end) into half-open ``(lo, hi)``
    with 0 / inf ends, as ``chipping.scales.parse_ranges``.

    Raises:
        ValueError: naming the offending entry.
    """
    value = [list(r) if isinstance(r, list | tuple) else r for r in cfg_value]
    return [(float(lo), float(hi)) for lo, hi in parse_ranges(value)]


def _check(ok: bool, key: str, value: Any, why: str) -> None:
    if not ok:
        raise ConfigError(f"config key {key} = {value!r}: {why}", key=key)


def _check_parse(cfg: CfgNode, key: str, parser: Any) -> list[Any]:
    value = _get(cfg, key)
    try:
        return parser(value)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"config key {key} = {value!r}: {err}", key=key) from err


def _get(cfg: CfgNode, key: str) -> Any:
    node: Any = cfg
    for sub in key.split("."):
        node = node[sub]
    return node


def _validate_sniper(cfg: CfgNode) -> None:
    s = "SNIPER."
    train = _check_parse(cfg, s + "TRAIN_SCALES", parse_scale_list)
    _check(len(train) > 0, s + "TRAIN_SCALES", cfg.SNIPER.TRAIN_SCALES, "needs >= 1 scale")
    ranges = _check_parse(cfg, s + "VALID_RANGES", parse_valid_ranges)
    _check(
        len(ranges) == len(train),
        s + "VALID_RANGES",
        cfg.SNIPER.VALID_RANGES,
        f"needs one range per TRAIN_SCALES entry ({len(train)})",
    )
    test = _check_parse(cfg, s + "TEST_SCALES", parse_scale_list)
    _check(len(test) > 0, s + "TEST_SCALES", cfg.SNIPER.TEST_SCALES, "needs >= 1 scale")
    test_ranges = _check_parse(cfg, s + "TEST_VALID_RANGES", parse_valid_ranges)
    _check(
        len(test_ranges) == len(test),
        s + "TEST_VALID_RANGES",
        cfg.SNIPER.TEST_VALID_RANGES,
        f"needs one range per TEST_SCALES entry ({len(test)})",
    )
    neg = cfg.SNIPER.NEG_MIN_PROPOSALS
    _check(
        len(neg) == len(train) and all(int(n) >= 0 for n in neg),
        s + "NEG_MIN_PROPOSALS",
        neg,
        f"needs {len(train)} counts >= 0, one per train scale",
    )
    _check(cfg.SNIPER.CHIP_SIZE > 0, s + "CHIP_SIZE", cfg.SNIPER.CHIP_SIZE, "must be > 0")
    _check(
        0 < cfg.SNIPER.CHIP_STRIDE <= cfg.SNIPER.CHIP_SIZE,
        s + "CHIP_STRIDE",
        cfg.SNIPER.CHIP_STRIDE,
        "must be in (0, CHIP_SIZE]",
    )
    for key in ("NEG_CHIPS_PER_IMAGE", "NEG_RPN_EPOCHS", "MIN_BOX_SIZE", "DETECTIONS_PER_IMAGE"):
        _check(cfg.SNIPER[key] >= 0, s + key, cfg.SNIPER[key], "must be >= 0")
    for key in ("RPN_IGNORE_IOU", "RPN_POS_IOU", "RPN_NEG_IOU", "ROI_IGNORE_IOU", "NMS_IOU"):
        _check(0.0 <= cfg.SNIPER[key] <= 1.0, s + key, cfg.SNIPER[key], "must be in [0, 1]")
    _check(
        cfg.SNIPER.RPN_NEG_IOU <= cfg.SNIPER.RPN_POS_IOU,
        s + "RPN_NEG_IOU",
        cfg.SNIPER.RPN_NEG_IOU,
        "must be <= SNIPER.RPN_POS_IOU",
    )
    _check(
        cfg.SNIPER.TEST_NMS in ("soft", "nms"),
        s + "TEST_NMS",
        cfg.SNIPER.TEST_NMS,
        'must be "soft" or "nms"',
    )
    _check(
        cfg.SNIPER.SOFT_NMS_SIGMA > 0,
        s + "SOFT_NMS_SIGMA",
        cfg.SNIPER.SOFT_NMS_SIGMA,
        "must be > 0",
    )


def _validate_model(cfg: CfgNode) -> None:
    m = cfg.MODEL
    _check(m.NUM_CLASSES >= 1, "MODEL.NUM_CLASSES", m.NUM_CLASSES, "must be >= 1")
    _check(len(m.PIXEL_MEAN) == 3, "MODEL.PIXEL_MEAN", m.PIXEL_MEAN, "needs 3 values")
    _check(
        len(m.PIXEL_STD) == 3 and all(v > 0 for v in m.PIXEL_STD),
        "MODEL.PIXEL_STD",
        m.PIXEL_STD,
        "needs 3 values > 0",
    )
    _check(
        m.BACKBONE.NORM in ("FrozenBN", "BN", "SyncBN", "GN", "SN", "SN_INLN"),
        "MODEL.BACKBONE.NORM",
        m.BACKBONE.NORM,
        "must be FrozenBN, BN, SyncBN, GN, SN or SN_INLN",
    )
    _check(
        0 <= m.BACKBONE.FREEZE_AT <= 5,
        "MODEL.BACKBONE.FREEZE_AT",
        m.BACKBONE.FREEZE_AT,
        "must be in [0, 5]",
    )
    _check(
        m.FPN.MIN_LEVEL in (2, 3, 4), "MODEL.FPN.MIN_LEVEL", m.FPN.MIN_LEVEL, "must be 2, 3 or 4"
    )
    _check(m.FPN.OUT_CHANNELS > 0, "MODEL.FPN.OUT_CHANNELS", m.FPN.OUT_CHANNELS, "must be > 0")
    levels = 6 - m.FPN.MIN_LEVEL + int(m.FPN.USE_P6)
    _check(
        len(m.ANCHOR_SIZES) == levels,
        "MODEL.ANCHOR_SIZES",
        m.ANCHOR_SIZES,
        f"needs one list per pyramid level ({levels})",
    )
    _check(
        len(m.ASPECT_RATIOS) in (1, levels),
        "MODEL.ASPECT_RATIOS",
        m.ASPECT_RATIOS,
        f"needs 1 list or one per pyramid level ({levels})",
    )
    for key, value in (
        ("MODEL.FPN.NORM", m.FPN.NORM),
        ("MODEL.ROI_BOX_HEAD.NORM", m.ROI_BOX_HEAD.NORM),
        ("MODEL.ROI_MASK_HEAD.NORM", m.ROI_MASK_HEAD.NORM),
    ):
        _check(value in HEAD_NORMS, key, value, 'must be "" (none), "BN", "SN" or "SN_INLN"')
    _check(m.RPN.CONV_DEPTH >= 1, "MODEL.RPN.CONV_DEPTH", m.RPN.CONV_DEPTH, "must be >= 1")
    _check(
        m.ROI_BOX_HEAD.NUM_CONV >= 0,
        "MODEL.ROI_BOX_HEAD.NUM_CONV",
        m.ROI_BOX_HEAD.NUM_CONV,
        "must be >= 0",
    )
    _check(
        m.ROI_BOX_HEAD.CONV_DIM >= 1,
        "MODEL.ROI_BOX_HEAD.CONV_DIM",
        m.ROI_BOX_HEAD.CONV_DIM,
        "must be >= 1",
    )
    _check(
        m.ROI_BOX_HEAD.NUM_FC >= 1,
        "MODEL.ROI_BOX_HEAD.NUM_FC",
        m.ROI_BOX_HEAD.NUM_FC,
        "must be >= 1",
    )
    _check(
        len(m.ROI_BOX_HEAD.BBOX_REG_WEIGHTS) == 4,
        "MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS",
        m.ROI_BOX_HEAD.BBOX_REG_WEIGHTS,
        "needs 4 values",
    )
    for key in ("FG_IOU", "BG_IOU", "POSITIVE_FRACTION", "NMS_THRESH_TEST"):
        val = m.ROI_HEADS[key]
        _check(0.0 <= val <= 1.0, f"MODEL.ROI_HEADS.{key}", val, "must be in [0, 1]")
    _check(
        m.ROI_HEADS.BG_IOU <= m.ROI_HEADS.FG_IOU,
        "MODEL.ROI_HEADS.BG_IOU",
        m.ROI_HEADS.BG_IOU,
        "must be <= MODEL.ROI_HEADS.FG_IOU",
    )
    for key in ("NMS_THRESH", "POSITIVE_FRACTION"):
        _check(0.0 <= m.RPN[key] <= 1.0, f"MODEL.RPN.{key}", m.RPN[key], "must be in [0, 1]")


def _validate_solver_input(cfg: CfgNode) -> None:
    _check(
        cfg.INPUT.FORMAT in ("RGB", "BGR"),
        "INPUT.FORMAT",
        cfg.INPUT.FORMAT,
        'must be "RGB" or "BGR"',
    )
    _check(
        cfg.INPUT.RANDOM_FLIP in ("horizontal", "none"),
        "INPUT.RANDOM_FLIP",
        cfg.INPUT.RANDOM_FLIP,
        'must be "horizontal" or "none"',
    )
    sol = cfg.SOLVER
    _check(sol.IMS_PER_BATCH >= 1, "SOLVER.IMS_PER_BATCH", sol.IMS_PER_BATCH, "must be >= 1")
    _check(sol.ITER_SIZE >= 1, "SOLVER.ITER_SIZE", sol.ITER_SIZE, "must be >= 1")
    for key in ("REFERENCE_WORLD_SIZE", "REFERENCE_BATCH_SIZE"):
        _check(sol[key] >= 0, f"SOLVER.{key}", sol[key], "must be >= 0 (0 = off / default)")
    if sol.REFERENCE_WORLD_SIZE > 0:
        _check(
            sol.IMS_PER_BATCH % sol.REFERENCE_WORLD_SIZE == 0,
            "SOLVER.IMS_PER_BATCH",
            sol.IMS_PER_BATCH,
            f"must be divisible by SOLVER.REFERENCE_WORLD_SIZE ({sol.REFERENCE_WORLD_SIZE}): "
            "it is the batch of that many processes",
        )
    _check(sol.BASE_LR > 0, "SOLVER.BASE_LR", sol.BASE_LR, "must be > 0")
    _check(list(sol.STEPS) == sorted(sol.STEPS), "SOLVER.STEPS", sol.STEPS, "must be increasing")
    _check(
        sol.AMP.DTYPE in ("float16", "bfloat16"),
        "SOLVER.AMP.DTYPE",
        sol.AMP.DTYPE,
        'must be "float16" or "bfloat16"',
    )
    _check(
        sol.CLIP_GRADIENTS.CLIP_TYPE in ("norm", "value"),
        "SOLVER.CLIP_GRADIENTS.CLIP_TYPE",
        sol.CLIP_GRADIENTS.CLIP_TYPE,
        'must be "norm" or "value"',
    )


def _validate_datasets(cfg: CfgNode) -> None:
    key, entries = "DATASETS.REGISTER_COCO", cfg.DATASETS.REGISTER_COCO
    names: list[str] = []
    for entry in entries:
        _check(
            isinstance(entry, list | tuple)
            and len(entry) == 3
            and all(isinstance(v, str) and v for v in entry),
            key,
            entries,
            f"entry {entry!r} must be [name, json_file, image_root] (three non-empty strings)",
        )
        _check(entry[0] not in names, key, entries, f"dataset '{entry[0]}' is given twice")
        names.append(entry[0])


def _validate_caps(cfg: CfgNode) -> None:
    """Every detection cap along the test path is at least the scoring cap.

    Otherwise an image with more objects than the smallest cap has its recall bounded
    whatever the detector does (docs/design.md section 6, "Dense scenes").
    """
    key = "TEST.MAX_DETS_PER_IMAGE"
    cap = cfg.TEST.MAX_DETS_PER_IMAGE
    _check(type(cap) is int and cap >= 1, key, cap, "must be an integer >= 1")
    caps = [
        ("MODEL.RPN.POST_NMS_TOPK_TEST", "proposals per network input"),
        ("MODEL.ROI_HEADS.DETECTIONS_PER_IMAGE", "detections per network input"),
    ]
    if "SNIPER" in cfg:
        caps.append(("SNIPER.DETECTIONS_PER_IMAGE", "detections per image after merging"))
    for name, what in caps:
        value = _get(cfg, name)
        unlimited = name == "SNIPER.DETECTIONS_PER_IMAGE" and value <= 0  # <= 0 keeps all
        _check(
            unlimited or value >= cap,
            name,
            value,
            f"{what} must be >= {key} ({cap}), the detections scored per image; "
            f"raise {name} or lower {key}",
        )


def validate_cfg(cfg: CfgNode) -> None:
    """Check cross-key consistency and value ranges; log `detectron_input_warnings`.

    Raises:
        ConfigError: "config key KEY = VALUE: reason" for the first offending key (a
            ValueError; ``err.key`` names the key).
    """
    validate_numbers(cfg)
    _validate_model(cfg)
    for warning in detectron_input_warnings(cfg):
        logger.warning("%s", warning)
    _validate_solver_input(cfg)
    _validate_datasets(cfg)
    if "SNIPER" in cfg:
        _validate_sniper(cfg)
    _validate_caps(cfg)
