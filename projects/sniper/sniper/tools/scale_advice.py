"""Scales and valid ranges for a dataset, from the sizes of its boxes (the scale advisor's rule).

**The rule.** SNIPER trains each scale only on the objects whose size, once resized, falls in
the band of sizes the detector handles best (docs/design.md section 4; the SNIP/SNIPER
argument: objects far smaller or larger than that band, at a given scale, are a domain the
network and its anchors cover badly, so they are ignored there and trained at another scale).
With a *band* ``[L, H)`` in chip px and box sizes ``s = sqrt(w * h)`` in image px:

1. ``s_lo``, ``s_hi`` are the ``percentiles`` [5, 95] of the (non-crowd) box sizes and
   ``m`` the longest box side ``max(w, h)``. ``f_small = L / s_lo`` brings the small boxes
   to the bottom of the band; ``f_large = min(H / s_hi, C / m)`` brings the large boxes to
   its top, and no further than the factor at which the largest box still fits in a chip of
   ``C = chip_size`` px whatever the grid offset, ``(C - chip_stride) / m`` (a box larger
   than a chip is a positive of no chip).
2. The finest factor is ``f_1 = min(max(f_small, f_large), cap)``, where
   ``cap = max_side / (median long image side)``: the finest canvas is at most ``max_side``
   [2000] px long for a typical image (the paper's finest scale is (1400, 2000)). The
   coarsest factor is ``f_S = min(f_small, f_large, f_1)``.
3. The factors are a geometric ladder from ``f_1`` down to ``f_S``, finest first:
   ``f_i = f_1 * (f_S / f_1) ** ((i - 1) / (S - 1))`` (one scale: ``sqrt(f_1 * f_S)``, the
   middle of the two). The number of scales ``S`` is given, or (``num_scales = 0``) the
   smallest with adjacent factors at most ``sqrt(H / L)`` apart: then every size between the
   two extremes is valid at two scales, as most sizes are in the paper's setting. ``S = 1``
   when ``f_small <= f_large`` (one factor brings the whole spread into the band).
4. Valid range of scale ``i``: ``[L / f_i, H / f_i)`` image px, with the finest scale's
   lower end and the coarsest scale's upper end opened (``-1``), so that the smallest and
   the largest objects are still trained at some scale.
5. Test scales are the train scales; ``TEST_VALID_RANGES`` widen every closed end by
   ``test_widen`` [1.2] (``hi * w``, ``lo / w``), as the paper widens 150 to 180 at test
   time. The AutoFocus cascade runs the same scales coarse to fine (``AUTOFOCUS.SCALES``)
   with the test ranges (``AUTOFOCUS.VALID_RANGES``).
6. AutoFocus label sizes (chip px, docs/design.md section 5): ``b = POS_MAX_SIZE = L``:
   an object under the band at a scale is too small for it, which is what the next, finer
   scale is for, so its FocusPixels are positive; ``a`` and ``c`` keep the paper's ratios to
   ``b`` (5 / 64 and 90 / 64). ``NEG_MIN_PROPOSALS`` and the cascade's THRESHOLDS /
   DILATIONS / MIN_SIZES are not derived from the data: the shipped defaults, shortened or
   extended (last value repeated) to one entry per scale / transition.

**Default band** ``[L, H) = [53.3, 250)`` chip px: the band the paper's COCO setting puts the
objects of its middle scale in, the only one with both ends closed: ``VALID_RANGES``
``(32, 150)`` image px at factor 1.667 (800 / 480, COCO's short side). It lies well inside
the range the default anchors (32-512 chip px) match with IoU >= 0.5, ``[32 / sqrt 2,
512 * sqrt 2)``, leaving room for elongated boxes, and objects up to ``H`` (about half a
512 chip) fit in a chip with context. A detector whose anchors are ``k`` times the default
ones (e.g. 16-256 px) covers a band ``k`` times this one (``--band 26.7 125``). On
COCO-like statistics (640 x 480 images, 5% of the boxes under 8 px, 95% under 330 px;
tested) the rule gives factors 3.125 / 1.539 / 0.7576 (the finest one set by the cap) and
ranges [0, 80), [34.7, 162.4), [70.4, inf), against the paper's 3.0 / 1.667 / 0.8 and
[0, 80), [32, 150), [120, inf): about the same scales, with more overlap at the coarsest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from chipping.scales import box_sizes

__all__ = ["AdviceParams", "DatasetBoxes", "ScaleAdvice", "advice_yaml", "suggest_scales"]

DEFAULT_BAND = (32 * 5 / 3, 150 * 5 / 3)
# The paper's AutoFocus label sizes (a, b, c) = (5, 64, 90) chip px, as ratios to b.
FOCUS_RATIOS = (5 / 64, 1.0, 90 / 64)
# Shipped defaults that the rule does not derive (one entry per scale / transition).
NEG_MIN_PROPOSALS = (25, 10, 10)
FOCUS_THRESHOLDS, FOCUS_DILATIONS, FOCUS_MIN_SIZES = (0.02, 0.2), (3, 3), (16, 20)


@dataclass(frozen=True)
class DatasetBoxes:
    """The boxes and image sizes of a dataset, in CSR form.

    Attributes:
        boxes: float32 ``(B, 4)`` XYXY image px (non-crowd boxes; crowd regions are ignore
            regions, never positives, so they do not count).
        box_splits: int64 ``(N + 1,)``: image ``i`` owns ``boxes[box_splits[i]:box_splits[i+1]]``.
        image_sizes: int64 ``(N, 2)`` ``(height, width)`` px.
    """

    boxes: np.ndarray
    box_splits: np.ndarray
    image_sizes: np.ndarray

    @staticmethod
    def from_records(records: Sequence[dict], name: str) -> DatasetBoxes:
        """From dataset records (``boxes``, ``height``, ``width``; see ``sniper.data.coco``).

        Raises:
            ValueError: naming ``name``, when there are no images or no boxes of positive size.
        """
        if len(records) == 0:
            raise ValueError(f"{name}: the dataset has no images")
        parts = [np.asarray(r["boxes"], dtype=np.float32).reshape(-1, 4) for r in records]
        splits = np.zeros(len(parts) + 1, dtype=np.int64)
        np.cumsum([len(p) for p in parts], out=splits[1:])
        sizes = np.array([(int(r["height"]), int(r["width"])) for r in records], dtype=np.int64)
        data = DatasetBoxes(np.concatenate(parts), splits, sizes)
        if not (data.sizes > 0).any():
            raise ValueError(
                f"{name}: no boxes of positive size in {len(records)} images "
                f"(crowd regions do not count); nothing to suggest scales from"
            )
        return data

    @property
    def sizes(self) -> np.ndarray:
        """float64 ``(B,)`` box sizes ``sqrt(w * h)``, image px."""
        return box_sizes(self.boxes)

    def __len__(self) -> int:
        return int(self.image_sizes.shape[0])


@dataclass(frozen=True)
class AdviceParams:
    """Inputs of the rule (module docstring); every field is checked on construction.

    Attributes:
        chip_size: training chip side (chip px); chip_stride: grid step (chip px).
        band: ``(L, H)`` chip px, ``0 < L < H <= chip_size``.
        percentiles: ``(p_lo, p_hi)`` of the box sizes, ``0 <= p_lo <= p_hi <= 100``.
        max_side: long side of the finest canvas for the median image (px), > 0.
        num_scales: number of scales, 0 = automatic.
        test_widen: factor >= 1 widening the closed ends of the test ranges.
    """

    chip_size: int = 512
    chip_stride: int = 32
    band: tuple[float, float] = DEFAULT_BAND
    percentiles: tuple[float, float] = (5.0, 95.0)
    max_side: float = 2000.0
    num_scales: int = 0
    test_widen: float = 1.2

    def __post_init__(self) -> None:
        lo, hi = (float(v) for v in self.band)
        p_lo, p_hi = (float(v) for v in self.percentiles)
        checks = (
            ("chip_size", self.chip_size > 0, "must be > 0"),
            ("chip_stride", 0 < self.chip_stride < self.chip_size, "must be in (0, chip_size)"),
            ("band", 0 < lo < hi <= self.chip_size, "need 0 < L < H <= chip_size"),
            ("percentiles", 0 <= p_lo <= p_hi <= 100, "need 0 <= lo <= hi <= 100"),
            ("max_side", math.isfinite(self.max_side) and self.max_side > 0, "must be > 0"),
            ("num_scales", 0 <= self.num_scales <= 12, "must be in [0, 12] (0 = automatic)"),
            ("test_widen", math.isfinite(self.test_widen) and self.test_widen >= 1, "must be >= 1"),
        )
        for field, ok, why in checks:
            if not ok:
                raise ValueError(f"{field} = {getattr(self, field)!r}: {why}")


@dataclass(frozen=True)
class ScaleAdvice:
    """The suggestion. Ranges are ``(lo, hi)`` image px with 0 / inf open ends, finest first
    (AutoFocus: coarsest first); factors rounded to 4 significant digits, range ends to 0.1.

    Attributes:
        train_scales, valid_ranges, test_scales, test_valid_ranges: the SNIPER keys.
        focus_scales, focus_ranges: ``AUTOFOCUS.SCALES`` / ``VALID_RANGES``.
        focus_sizes: ``(a, b, c)`` = POS_MIN_SIZE, POS_MAX_SIZE, IGNORE_MAX_SIZE (chip px).
        size_percentiles: ``(s_lo, s_hi)`` image px; ``largest_box_side``: ``m``;
        cap: the finest factor allowed; capped: whether the cap lowered the finest factor.
    """

    train_scales: tuple[float, ...]
    valid_ranges: tuple[tuple[float, float], ...]
    test_scales: tuple[float, ...]
    test_valid_ranges: tuple[tuple[float, float], ...]
    focus_scales: tuple[float, ...]
    focus_ranges: tuple[tuple[float, float], ...]
    focus_sizes: tuple[float, float, float]
    size_percentiles: tuple[float, float]
    largest_box_side: float
    cap: float
    capped: bool


def _round_factor(f: float) -> float:
    return float(f"{f:.4g}")


def _ladder(finest: float, coarsest: float, band: tuple[float, float], num: int) -> list[float]:
    """Factors finest first (rule steps 2-3)."""
    ratio = finest / coarsest
    if num == 0:
        step = math.sqrt(band[1] / band[0])
        num = 1 if ratio <= 1 else 1 + math.ceil(math.log(ratio) / math.log(step) - 1e-9)
    if num == 1:
        return [math.sqrt(finest * coarsest)]
    return [finest * ratio ** (-i / (num - 1)) for i in range(num)]


def _ranges(factors: Sequence[float], lo: float, hi: float) -> list[tuple[float, float]]:
    """``[lo / f, hi / f)`` rounded to 0.1, outer ends opened (rule step 4)."""
    out = [(round(lo / f, 1), round(hi / f, 1)) for f in factors]
    out[0] = (0.0, out[0][1])
    out[-1] = (out[-1][0], math.inf)
    return out


def _widen(ranges: Sequence[tuple[float, float]], w: float) -> list[tuple[float, float]]:
    return [(round(lo / w, 1), hi if math.isinf(hi) else round(hi * w, 1)) for lo, hi in ranges]


def suggest_scales(data: DatasetBoxes, params: AdviceParams | None = None) -> ScaleAdvice:
    """Scales and valid ranges for ``data`` by the rule of the module docstring."""
    params = params or AdviceParams()
    lo, hi = (float(v) for v in params.band)
    sizes = data.sizes[data.sizes > 0]
    if sizes.size == 0:
        raise ValueError("data: no boxes of positive size; nothing to suggest scales from")
    s_lo, s_hi = (float(np.percentile(sizes, p)) for p in params.percentiles)
    extent = data.boxes[:, 2:] - data.boxes[:, :2]
    largest = float(extent.max())
    f_small, f_large = lo / s_lo, min(hi / s_hi, (params.chip_size - params.chip_stride) / largest)
    cap = params.max_side / float(np.median(data.image_sizes.max(axis=1)))
    finest = min(max(f_small, f_large), cap)
    coarsest = min(f_small, f_large, finest)
    num = params.num_scales
    if num == 0 and f_small <= f_large:
        num = 1
    factors = [_round_factor(f) for f in _ladder(finest, coarsest, (lo, hi), num)]
    if len(set(factors)) != len(factors):
        raise ValueError(
            f"num_scales = {num}: the factors {factors} repeat after rounding; ask for fewer scales"
        )
    ranges = _ranges(factors, lo, hi)
    test_ranges = _widen(ranges, params.test_widen)
    a, b, c = (round(lo * r, 1) for r in FOCUS_RATIOS)
    return ScaleAdvice(
        train_scales=tuple(factors),
        valid_ranges=tuple(ranges),
        test_scales=tuple(factors),
        test_valid_ranges=tuple(test_ranges),
        focus_scales=tuple(reversed(factors)),
        focus_ranges=tuple(reversed(test_ranges)),
        focus_sizes=(a, b, c),
        size_percentiles=(s_lo, s_hi),
        largest_box_side=largest,
        cap=cap,
        capped=max(f_small, f_large) > cap,
    )


def _fit(values: Sequence, n: int) -> list:
    """The first ``n`` of ``values``, the last one repeated when more are needed."""
    return [values[min(i, len(values) - 1)] for i in range(n)]


def _num(v: float) -> str:
    """A YAML number without exponent (PyYAML reads ``1e+06`` as a string)."""
    return np.format_float_positional(float(v), trim="-") if isinstance(v, float) else str(v)


def _yaml_ranges(ranges: Sequence[tuple[float, float]]) -> str:
    def end(v: float, open_value: float) -> str:
        return "-1" if v == open_value else _num(v)

    return "[" + ", ".join(f"[{end(lo, 0.0)}, {end(hi, math.inf)}]" for lo, hi in ranges) + "]"


def _yaml_list(values: Sequence) -> str:
    return "[" + ", ".join(_num(v) for v in values) + "]"


def advice_yaml(advice: ScaleAdvice, autofocus: bool = True) -> str:
    """A YAML block of the SNIPER keys (plus the AUTOFOCUS node when ``autofocus``) that
    ``sniper.config.setup_cfg`` (``autofocus.config.setup_cfg`` with the AUTOFOCUS node)
    accepts; ends with a newline."""
    n = len(advice.train_scales)
    a, b, c = advice.focus_sizes
    lines = [
        "SNIPER:",
        f"  TRAIN_SCALES: {_yaml_list(advice.train_scales)}",
        f"  VALID_RANGES: {_yaml_ranges(advice.valid_ranges)}",
        f"  TEST_SCALES: {_yaml_list(advice.test_scales)}",
        f"  TEST_VALID_RANGES: {_yaml_ranges(advice.test_valid_ranges)}",
        f"  NEG_MIN_PROPOSALS: {_yaml_list(_fit(NEG_MIN_PROPOSALS, n))}  # shipped default",
    ]
    if autofocus:
        lines += [
            "AUTOFOCUS:",
            f"  SCALES: {_yaml_list(advice.focus_scales)}",
            f"  VALID_RANGES: {_yaml_ranges(advice.focus_ranges)}",
            f"  POS_MIN_SIZE: {a:.1f}",
            f"  POS_MAX_SIZE: {b:.1f}",
            f"  IGNORE_MAX_SIZE: {c:.1f}",
            f"  THRESHOLDS: {_yaml_list(_fit(FOCUS_THRESHOLDS, n - 1))}  # shipped default",
            f"  DILATIONS: {_yaml_list(_fit(FOCUS_DILATIONS, n - 1))}  # shipped default",
            f"  MIN_SIZES: {_yaml_list(_fit(FOCUS_MIN_SIZES, n - 1))}  # shipped default",
        ]
    return "\n".join(lines) + "\n"
