"""Configuration: detectron2-style `get_cfg()` + `add_sniper_config(cfg)` on fvcore's CfgNode.

Defaults and the one-line comment of every key live in `sniper/config_defaults.py`.
Unknown keys are errors that name the key, both in YAML files (also through `_BASE_`) and
in command-line `KEY VALUE` overrides.

Typical use::

    cfg = setup_cfg("configs/sniper/synthetic_mobilenet.yaml", ["SOLVER.MAX_ITER", "100"])
"""

from __future__ import annotations

import ast
import io
import sys
import tokenize
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fvcore.common.config import CfgNode as _FvCfgNode

from chipping.scales import parse_ranges, scale_specs
from sniper import config_defaults

__all__ = [
    "CfgNode",
    "add_sniper_config",
    "get_cfg",
    "key_comments",
    "load_config_or_exit",
    "parse_scale_list",
    "parse_valid_ranges",
    "setup_cfg",
    "validate_cfg",
]

Scale = float | tuple[float, float]

# Norms of the FPN and box head convs (MODEL.FPN.NORM, MODEL.ROI_BOX_HEAD.NORM); the layers are
# made by `sniper.modeling.norms.head_norm_layer`.
HEAD_NORMS = ("", "BN")


class CfgNode(_FvCfgNode):
    """fvcore CfgNode whose command-line overrides raise KeyError naming an unknown key.

    yacs reports unknown keys in `merge_from_list` with an `AssertionError` (stripped under
    `python -O`); this subclass raises `KeyError("Non-existent config key: A.B")`, the same
    error `merge_from_file` raises for unknown keys in YAML files.
    """

    def merge_from_list(self, cfg_list: list[Any]) -> CfgNode:
        """Merge `[KEY, VALUE, KEY, VALUE, ...]` (VALUEs as strings, literal-evaluated)."""
        if len(cfg_list) % 2 != 0:
            raise ValueError(f"override list has odd length {len(cfg_list)}: {cfg_list}")
        for full_key in cfg_list[0::2]:
            node: Any = self
            for sub in str(full_key).split("."):
                if not isinstance(node, _FvCfgNode) or sub not in node:
                    raise KeyError(f"Non-existent config key: {full_key}")
                node = node[sub]
        super().merge_from_list(cfg_list)
        return self


def get_cfg() -> CfgNode:
    """Return a fresh config with the detectron2-style keys (MODEL, INPUT, SOLVER, ...).

    Call `add_sniper_config(cfg)` on it before building a SNIPER model.
    """
    return config_defaults.base_defaults(CfgNode())


def add_sniper_config(cfg: CfgNode) -> CfgNode:
    """Add the `SNIPER` node (chips, label assignment, multi-scale test) to `cfg` in place."""
    config_defaults.sniper_defaults(cfg)
    return cfg


def setup_cfg(config_file: str, opts: list[str]) -> CfgNode:
    """get_cfg + add_sniper_config + merge YAML (if given) + merge overrides + validate + freeze.

    Args:
        config_file: YAML path ("" for defaults only); may use `_BASE_` inheritance.
        opts: flat `[KEY, VALUE, ...]` overrides as on detectron2 command lines.

    Raises:
        KeyError: naming an unknown key in the file, one of its bases or `opts`.
        ValueError: naming an invalid key/value (see `validate_cfg`).
    """
    cfg = add_sniper_config(get_cfg())
    if config_file:
        cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    validate_cfg(cfg)
    cfg.freeze()
    return cfg


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
        raise ValueError(f"config key {key} = {value!r}: {why}")


def _check_parse(cfg: CfgNode, key: str, parser: Any) -> list[Any]:
    value = _get(cfg, key)
    try:
        return parser(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"config key {key} = {value!r}: {err}") from err


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
        m.BACKBONE.NORM in ("FrozenBN", "BN", "SyncBN", "GN"),
        "MODEL.BACKBONE.NORM",
        m.BACKBONE.NORM,
        "must be FrozenBN, BN, SyncBN or GN",
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
    ):
        _check(value in HEAD_NORMS, key, value, 'must be "" (none) or "BN"')
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
    """Check cross-key consistency and value ranges.

    Raises:
        ValueError: "config key KEY = VALUE: reason" for the first offending key.
    """
    _validate_model(cfg)
    _validate_solver_input(cfg)
    _validate_datasets(cfg)
    if "SNIPER" in cfg:
        _validate_sniper(cfg)
    _validate_caps(cfg)


def _dotted(node: ast.expr) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or not parts:
        return None
    return ".".join(reversed(parts))


def key_comments(source_file: str | None = None) -> dict[str, str]:
    """Map every dotted key assigned in the defaults source to its trailing comment.

    Parses `config_defaults.py` (or `source_file`): an assignment `_C.A.B = ...  # text`
    yields `{"A.B": "text"}`; the comment may sit on any line of a multi-line assignment.
    """
    path = Path(source_file or config_defaults.__file__)
    text = path.read_text(encoding="utf-8")
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    result: dict[str, str] = {}
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            key = _dotted(node.targets[0])
            if key is None:
                continue
            end = node.end_lineno or node.lineno
            lines = [comments[n] for n in range(node.lineno, end + 1) if n in comments]
            result[key] = lines[0] if lines else ""
    return result


def load_config_or_exit(
    config_file: str,
    opts: Sequence[str],
    setup: Callable[[str, list[str]], _FvCfgNode] | None = None,
) -> _FvCfgNode:
    """``setup(config_file, opts)`` (default `setup_cfg`), or exit with status 2 and a one-line
    message naming the bad key / value / file (no traceback), as argparse does for bad flags.

    Args:
        config_file: YAML path ("" for defaults only).
        opts: flat ``[KEY, VALUE, ...]`` overrides.
        setup: the loader (e.g. `autofocus.config.setup_cfg`); KeyError, ValueError and
            FileNotFoundError it raises become the exit.
    """
    loader = setup_cfg if setup is None else setup
    try:
        return loader(config_file, list(opts))
    except (KeyError, ValueError, FileNotFoundError) as err:
        message = err.args[0] if err.args else repr(err)
        print(f"error: bad config: {message}", file=sys.stderr)
        raise SystemExit(2) from None
