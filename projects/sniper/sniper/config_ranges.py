"""Value ranges of the numeric config keys, and the checks every config passes first.

`validate_numbers(cfg)` (run by `sniper.config_validation.validate_cfg` before the
cross-key checks) refuses: a float that is not finite anywhere in the config (NaN, inf,
also inside lists), a number outside its key's range in `RANGES` (negative or zero counts,
IoUs outside [0, 1], ...), anchor sizes, aspect ratios and box-regression weights that are
not > 0, SOLVER.STEPS that are not iterations >= 1, dataset names that are not non-empty
strings, and a MODEL.DEVICE that is not "cpu", "cuda" or "cuda:N". Whether the device
exists is checked by the entry points (`sniper.engine.preflight`), which may import torch;
this module does not. A SOLVER.STEPS entry beyond SOLVER.MAX_ITER is only logged, as
detectron2 does: that step never happens (common when MAX_ITER is shortened for a test).
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any

from sniper.cli_errors import ConfigError

__all__ = ["DEVICE_PATTERN", "RANGES", "validate_numbers"]

logger = logging.getLogger(__name__)

INF = math.inf
_AT_LEAST_1 = (1, True, INF, False)  # counts, sizes: [1, inf)
_AT_LEAST_0 = (0, True, INF, False)  # [0, inf)
_POSITIVE = (0.0, False, INF, False)  # (0, inf)
_UNIT = (0.0, True, 1.0, True)  # scores, fractions: [0, 1]
_UNIT_OPEN = (0.0, True, 1.0, False)  # [0, 1)
# key -> (low, low included, high, high included); absent keys (e.g. no SNIPER node) skip.
RANGES: dict[str, tuple[float, bool, float, bool]] = {
    "MODEL.NUM_CLASSES": _AT_LEAST_1,
    "MODEL.FPN.OUT_CHANNELS": _AT_LEAST_1,
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN": _AT_LEAST_1,
    "MODEL.RPN.PRE_NMS_TOPK_TEST": _AT_LEAST_1,
    "MODEL.RPN.POST_NMS_TOPK_TRAIN": _AT_LEAST_1,
    "MODEL.RPN.POST_NMS_TOPK_TEST": _AT_LEAST_1,
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE": _AT_LEAST_1,
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": _AT_LEAST_1,
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST": _UNIT,
    "MODEL.ROI_HEADS.DETECTIONS_PER_IMAGE": _AT_LEAST_1,
    "MODEL.ROI_BOX_HEAD.FC_DIM": _AT_LEAST_1,
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION": _AT_LEAST_1,
    "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO": _AT_LEAST_0,
    "MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION": _AT_LEAST_1,
    "MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO": _AT_LEAST_0,
    "MODEL.ROI_MASK_HEAD.NUM_CONV": _AT_LEAST_0,
    "MODEL.ROI_MASK_HEAD.CONV_DIM": _AT_LEAST_1,
    "DATALOADER.NUM_WORKERS": _AT_LEAST_0,
    "SOLVER.BASE_LR": _POSITIVE,
    "SOLVER.MOMENTUM": _UNIT_OPEN,
    "SOLVER.WEIGHT_DECAY": _AT_LEAST_0,
    "SOLVER.SN_IMPORTANCE_WEIGHT_DECAY": _AT_LEAST_0,
    "SOLVER.SN_IMPORTANCE_LR_FACTOR": _POSITIVE,
    "SOLVER.IMS_PER_BATCH": _AT_LEAST_1,
    "SOLVER.MAX_ITER": _AT_LEAST_1,
    "SOLVER.GAMMA": _POSITIVE,
    "SOLVER.WARMUP_ITERS": _AT_LEAST_0,
    "SOLVER.WARMUP_FACTOR": _UNIT,
    "SOLVER.CHECKPOINT_PERIOD": _AT_LEAST_1,
    "SOLVER.CLIP_GRADIENTS.CLIP_VALUE": _POSITIVE,
    "TEST.EVAL_PERIOD": _AT_LEAST_0,
    "TEST.SN_BATCH_AVERAGE_ITERS": _AT_LEAST_0,
    "SNIPER.MIN_BOX_SIZE": _AT_LEAST_0,
    "SNIPER.SOFT_NMS_MIN_SCORE": _UNIT,
    "AUTOFOCUS.BORDER_DELTA": _AT_LEAST_0,
}
# keys whose (nested) list entries must all be > 0
POSITIVE_LISTS = (
    "MODEL.ANCHOR_SIZES",
    "MODEL.ASPECT_RATIOS",
    "MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS",
)
DEVICE_PATTERN = re.compile(r"cpu|cuda(:[0-9]+)?")


def _fail(key: str, value: Any, why: str) -> None:
    raise ConfigError(f"config key {key} = {value!r}: {why}", key=key)


def _lookup(cfg: Any, key: str) -> tuple[bool, Any]:
    node = cfg
    for sub in key.split("."):
        if not hasattr(node, "keys") or sub not in node:
            return False, None
        node = node[sub]
    return True, node


def _interval(lo: float, lo_in: bool, hi: float, hi_in: bool) -> str:
    if hi == INF:
        return f"must be {'>=' if lo_in else '>'} {lo}"
    return f"must be in {'[' if lo_in else '('}{lo}, {hi}{']' if hi_in else ')'}"


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, list | tuple):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


def _check_finite(node: Any, prefix: str = "") -> None:
    for name, value in node.items():
        key = prefix + name
        if hasattr(value, "items"):
            _check_finite(value, key + ".")
        elif any(isinstance(v, float) and not math.isfinite(v) for v in _leaves(value)):
            _fail(key, value, "must be finite (no NaN or inf)")


def _check_ranges(cfg: Any) -> None:
    for key, (lo, lo_in, hi, hi_in) in RANGES.items():
        present, value = _lookup(cfg, key)
        if not present:
            continue
        low_ok = value >= lo if lo_in else value > lo
        high_ok = value <= hi if hi_in else value < hi
        if not (low_ok and high_ok):
            _fail(key, value, _interval(lo, lo_in, hi, hi_in))
    for key in POSITIVE_LISTS:
        present, value = _lookup(cfg, key)
        if present and not all(v > 0 for v in _leaves(value)):
            _fail(key, value, "every entry must be > 0")


_WARNED_STEPS: set[tuple[tuple[int, ...], int]] = set()


def _check_steps(cfg: Any) -> None:
    steps, max_iter = cfg.SOLVER.STEPS, cfg.SOLVER.MAX_ITER
    for step in steps:
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            _fail("SOLVER.STEPS", steps, "entries must be iterations (integers >= 1)")
    late = [s for s in steps if s > max_iter]
    if late and (tuple(steps), max_iter) not in _WARNED_STEPS:  # once per process
        _WARNED_STEPS.add((tuple(steps), max_iter))
        logger.warning(
            "SOLVER.STEPS %s: %s are beyond SOLVER.MAX_ITER = %d and never happen",
            list(steps),
            late,
            max_iter,
        )


def _check_names(cfg: Any) -> None:
    for key in ("DATASETS.TRAIN", "DATASETS.TEST"):
        value = _lookup(cfg, key)[1]
        if not all(isinstance(v, str) and v for v in value):
            _fail(key, value, "entries must be dataset names (non-empty strings)")
    device = cfg.MODEL.DEVICE
    if not DEVICE_PATTERN.fullmatch(device):
        _fail("MODEL.DEVICE", device, 'must be "cpu", "cuda" or "cuda:N"')


def validate_numbers(cfg: Any) -> None:
    """Finite floats, value ranges, steps, dataset names and the device's form (module doc).

    Raises:
        ConfigError: "config key KEY = VALUE: reason" for the first offending key.
    """
    _check_finite(cfg)
    _check_ranges(cfg)
    _check_steps(cfg)
    _check_names(cfg)
