"""The parameters of the AutoFocus cascade (docs/design.md section 5) and their config reader."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from chipping.scales import parse_ranges, parse_scales, scale_factor, scaled_size
from sniper.config import parse_scale_list

__all__ = ["CascadeParams", "cascade_params_from_cfg", "full_pyramid_pixels"]

ScaleSpec = float | tuple[float, float]


@dataclass(frozen=True)
class CascadeParams:
    """Scales coarse to fine and what happens between them.

    Attributes:
        scales: S scales, each a factor or a `(short, long)` pair, coarse to fine.
        valid_ranges: S `(lo, hi)` half-open ranges `[lo, hi)` of detection size
            `sqrt(w * h)` kept at each scale (image px; -1 on input = open end, stored as
            0 / inf).
        thresholds: S - 1 FocusPixel probability thresholds t, one per transition s -> s+1.
        dilations: S - 1 square dilations d (cells).
        min_sizes: S - 1 minimum FocusChip sides k (cells).
        border_delta: detections closer than this to an inner FocusChip edge are dropped
            (image px).
    """

    scales: tuple[ScaleSpec, ...]
    valid_ranges: tuple[tuple[float, float], ...]
    thresholds: tuple[float, ...]
    dilations: tuple[int, ...]
    min_sizes: tuple[int, ...]
    border_delta: float = 10.0

    def __post_init__(self) -> None:
        scales = tuple(
            s if isinstance(s, int | float) else (float(s[0]), float(s[1])) for s in self.scales
        )
        parse_scales(list(scales))  # raises ValueError naming the bad entry
        ranges = parse_ranges([list(r) for r in self.valid_ranges], len(scales))
        transitions = len(scales) - 1
        for name in ("thresholds", "dilations", "min_sizes"):
            if len(getattr(self, name)) != transitions:
                raise ValueError(
                    f"{name} needs {transitions} entries (one per transition), "
                    f"got {list(getattr(self, name))}"
                )
        if any(not 0.0 <= float(t) <= 1.0 or math.isnan(float(t)) for t in self.thresholds):
            raise ValueError(f"thresholds must lie in [0, 1], got {list(self.thresholds)}")
        if any(int(v) < 0 for v in (*self.dilations, *self.min_sizes)):
            raise ValueError("dilations and min_sizes must be >= 0 cells")
        if not float(self.border_delta) >= 0:
            raise ValueError(f"border_delta must be >= 0, got {self.border_delta}")
        object.__setattr__(self, "scales", scales)
        object.__setattr__(self, "valid_ranges", tuple((float(lo), float(hi)) for lo, hi in ranges))
        object.__setattr__(self, "thresholds", tuple(float(t) for t in self.thresholds))
        object.__setattr__(self, "dilations", tuple(int(d) for d in self.dilations))
        object.__setattr__(self, "min_sizes", tuple(int(k) for k in self.min_sizes))
        object.__setattr__(self, "border_delta", float(self.border_delta))

    @property
    def num_scales(self) -> int:
        """S, the number of scales."""
        return len(self.scales)

    def with_threshold(self, threshold: float) -> CascadeParams:
        """A copy whose every transition uses threshold `threshold`."""
        return CascadeParams(
            self.scales,
            self.valid_ranges,
            (float(threshold),) * len(self.thresholds),
            self.dilations,
            self.min_sizes,
            self.border_delta,
        )


def cascade_params_from_cfg(cfg: Any) -> CascadeParams:
    """From AUTOFOCUS.SCALES / VALID_RANGES / THRESHOLDS / DILATIONS / MIN_SIZES /
    BORDER_DELTA."""
    af = cfg.AUTOFOCUS
    return CascadeParams(
        scales=tuple(parse_scale_list(af.SCALES)),
        valid_ranges=tuple(tuple(r) for r in af.VALID_RANGES),
        thresholds=tuple(af.THRESHOLDS),
        dilations=tuple(af.DILATIONS),
        min_sizes=tuple(af.MIN_SIZES),
        border_delta=af.BORDER_DELTA,
    )


def full_pyramid_pixels(image_size: tuple[int, int], scales: tuple[ScaleSpec, ...]) -> list[int]:
    """Pixels of the whole image `(height, width)` at every scale: `H_s * W_s` per scale."""
    out = []
    for scale in scales:
        h, w = scaled_size(image_size, scale_factor(scale, image_size))
        out.append(h * w)
    return out
