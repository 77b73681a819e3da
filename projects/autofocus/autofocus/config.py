"""Configuration: `add_autofocus_config(cfg)` on top of sniper's `get_cfg` + `add_sniper_config`.

Defaults and the one-line comment of every key live in `autofocus/config_defaults.py`.
Typical use::

    cfg = setup_cfg("configs/autofocus/synthetic_mobilenet.yaml", ["MODEL.WEIGHTS", "m.pth"])
    params = cascade_params_from_cfg(cfg)   # see autofocus.cascade
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fvcore.common.config import CfgNode

from autofocus import config_defaults
from sniper.config import (
    ConfigError,
    add_sniper_config,
    parse_scale_list,
    parse_valid_ranges,
    resolve_cfg,
    validate_cfg,
)
from sniper.config import key_comments as _sniper_key_comments
from sniper.config import load_config_or_exit as _sniper_load_config_or_exit

__all__ = [
    "add_autofocus_config",
    "key_comments",
    "load_config_or_exit",
    "setup_cfg",
    "validate_autofocus",
]


def add_autofocus_config(cfg: CfgNode) -> CfgNode:
    """Add the `AUTOFOCUS` node (FocusPixel labels and head, cascade) to `cfg` in place."""
    config_defaults.autofocus_defaults(cfg)
    return cfg


def key_comments() -> dict[str, str]:
    """Map every dotted `AUTOFOCUS` key to the trailing comment of its default assignment."""
    return _sniper_key_comments(config_defaults.__file__)


def _fail(key: str, value: Any, why: str) -> None:
    raise ConfigError(f"config key AUTOFOCUS.{key} = {value!r}: {why}", key=f"AUTOFOCUS.{key}")


def _check_transitions(af: CfgNode, num_scales: int) -> None:
    for key in ("THRESHOLDS", "DILATIONS", "MIN_SIZES"):
        if len(af[key]) != num_scales - 1:
            _fail(key, af[key], f"needs one entry per scale transition ({num_scales - 1})")
    for t in af.THRESHOLDS:
        if not 0.0 <= float(t) <= 1.0:
            _fail("THRESHOLDS", af.THRESHOLDS, "each threshold must be in [0, 1]")
    for key in ("DILATIONS", "MIN_SIZES"):
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in af[key]):
            _fail(key, af[key], "entries must be integers >= 0 (cells)")


def _check_freeze_detector(cfg: CfgNode) -> None:
    """A retrofit (AUTOFOCUS.FREEZE_DETECTOR) needs the trained detector it freezes."""
    if not cfg.AUTOFOCUS.FREEZE_DETECTOR:
        return
    if not cfg.MODEL.WEIGHTS:
        _fail(
            "FREEZE_DETECTOR",
            True,
            "needs MODEL.WEIGHTS = a trained SNIPER detector checkpoint (it is empty: the "
            "frozen detector would stay random)",
        )
    if cfg.MODEL.META_ARCHITECTURE != "AutoFocusRCNN":
        _fail(
            "FREEZE_DETECTOR",
            True,
            f"retrofits AutoFocusRCNN only, not MODEL.META_ARCHITECTURE = "
            f"{cfg.MODEL.META_ARCHITECTURE!r}",
        )


def validate_autofocus(cfg: CfgNode) -> None:
    """Check the `AUTOFOCUS` node.

    Raises:
        ConfigError: "config key AUTOFOCUS.KEY = VALUE: reason" for the first offending key
            (a ValueError).
    """
    af = cfg.AUTOFOCUS
    a, b, c = float(af.POS_MIN_SIZE), float(af.POS_MAX_SIZE), float(af.IGNORE_MAX_SIZE)
    if not 0.0 <= a < b <= c:
        _fail(
            "POS_MAX_SIZE",
            af.POS_MAX_SIZE,
            f"need 0 <= POS_MIN_SIZE ({a}) < POS_MAX_SIZE ({b}) <= IGNORE_MAX_SIZE ({c})",
        )
    levels = {f"p{lvl}" for lvl in range(cfg.MODEL.FPN.MIN_LEVEL, 6)}
    if af.FEATURE not in levels:
        _fail("FEATURE", af.FEATURE, f"must be one of the FPN levels {sorted(levels)}")
    if af.HEAD_CHANNELS <= 0:
        _fail("HEAD_CHANNELS", af.HEAD_CHANNELS, "must be > 0")
    if af.LOSS_WEIGHT < 0:
        _fail("LOSS_WEIGHT", af.LOSS_WEIGHT, "must be >= 0")
    try:
        scales = parse_scale_list(af.SCALES)
        ranges = parse_valid_ranges(af.VALID_RANGES)
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"config key AUTOFOCUS.SCALES / VALID_RANGES: {err}", key="AUTOFOCUS.SCALES"
        ) from err
    if not scales:
        _fail("SCALES", af.SCALES, "needs >= 1 scale")
    if len(ranges) != len(scales):
        _fail("VALID_RANGES", af.VALID_RANGES, f"needs one range per scale ({len(scales)})")
    _check_transitions(af, len(scales))
    _check_freeze_detector(cfg)
    if af.BORDER_DELTA < 0:
        _fail("BORDER_DELTA", af.BORDER_DELTA, "must be >= 0")
    if af.MAX_PIXELS_PER_BATCH <= 0:
        _fail("MAX_PIXELS_PER_BATCH", af.MAX_PIXELS_PER_BATCH, "must be > 0")


def setup_cfg(config_file: str, opts: Sequence[str]) -> CfgNode:
    """get_cfg + add_sniper_config + add_autofocus_config + YAML + overrides + validate + freeze.

    Args:
        config_file: YAML path ("" for defaults only); may use `_BASE_` inheritance.
        opts: flat `[KEY, VALUE, ...]` overrides as on detectron2 command lines.

    Raises:
        KeyError: naming an unknown key in the file, one of its bases or `opts`.
        ValueError: naming an invalid key/value.
    """
    return resolve_cfg(
        config_file,
        opts,
        add_defaults=(add_sniper_config, add_autofocus_config),
        validators=(validate_cfg, validate_autofocus),
    )


def load_config_or_exit(config_file: str, opts: Sequence[str]) -> CfgNode:
    """`setup_cfg`, or exit with status 2 and a one-line message naming the bad key / value /
    file (no traceback), as `sniper.config.load_config_or_exit` does."""
    return _sniper_load_config_or_exit(config_file, list(opts), setup=setup_cfg)
