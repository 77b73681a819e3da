"""What a choice of scales and valid ranges does to a dataset, measured with the chip planner.

``measure_scales`` plans the positive chips of every image (``chipping.plan_positive_chips_batch``,
no jitter, the training rule of docs/design.md section 4) and assigns the boxes to them
(``chipping.assign_boxes_batch``, ``min_inside`` 0.5, ``MIN_BOX_SIZE`` 2 chip px), and
counts: boxes valid at each scale and at none, boxes that are a positive of no chip (valid
nowhere, or too large for a chip at every scale where they are valid), positive chips per
image and the pixels they hold against whole images at the same scales. ``format_report``
turns the statistics and the measures into the advisor's text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from chipping import assign_boxes_batch, plan_positive_chips_batch
from chipping.scales import ScaleSpec, factors_for_sizes, in_range, parse_scales, scaled_length
from sniper.tools.scale_advice import AdviceParams, DatasetBoxes, ScaleAdvice

__all__ = ["SIZE_PERCENTILES", "ScaleMeasures", "format_report", "measure_scales", "summary_line"]

SIZE_PERCENTILES = (0, 1, 5, 10, 25, 50, 75, 90, 95, 99, 100)


@dataclass(frozen=True)
class ScaleMeasures:
    """Consequences of scales + valid ranges on one dataset (counts over all its images).

    Attributes:
        valid_per_scale: int64 ``(S,)`` boxes whose size is in each scale's range.
        valid_none: boxes valid at no scale.
        positive_none: boxes that are a valid box of no positive chip.
        chips_per_scale: int64 ``(S,)`` positive chips planned at each scale.
        chip_pixels: chips x chip_size**2 (network-input px of one epoch of positives).
        image_pixels_per_scale: int64 ``(S,)`` canvas px of every whole image at each scale.
        num_boxes, num_images: totals.
    """

    valid_per_scale: np.ndarray
    valid_none: int
    positive_none: int
    chips_per_scale: np.ndarray
    chip_pixels: int
    image_pixels_per_scale: np.ndarray
    num_boxes: int
    num_images: int


def _canvas_pixels(image_sizes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """int64 ``(S,)`` sum over images of the canvas area at each scale (``scaled_size``)."""
    out = np.zeros(factors.shape[1], dtype=np.int64)
    for (h, w), row in zip(image_sizes.tolist(), factors.tolist(), strict=True):
        for s, f in enumerate(row):
            out[s] += scaled_length(h, f) * scaled_length(w, f)
    return out


def measure_scales(
    data: DatasetBoxes,
    scales: Sequence[ScaleSpec],
    valid_ranges: Sequence[tuple[float, float]],
    chip_size: int = 512,
    stride: int = 32,
) -> ScaleMeasures:
    """Plan and assign the positive chips of ``data`` (module docstring).

    Args:
        scales: factors or ``(short, long)`` pairs; ``valid_ranges``: ``(lo, hi)`` image px
            per scale (0 / inf or -1 for open ends).
    """
    ranges = [[lo, -1 if math.isinf(hi) else hi] for lo, hi in valid_ranges]
    plan = plan_positive_chips_batch(
        data.boxes, data.image_sizes, list(scales), ranges, chip_size, stride,
        box_splits=data.box_splits,
    )  # fmt: skip
    assignment = assign_boxes_batch(plan, data.boxes, box_splits=data.box_splits)
    per_valid = np.repeat(plan.image_index, np.diff(assignment.valid_splits))
    positive = np.zeros(len(data.boxes), dtype=bool)
    positive[data.box_splits[per_valid] + assignment.valid_index] = True
    sizes = data.sizes
    valid = np.stack([in_range(sizes, lo, hi) for lo, hi in plan.valid_ranges])
    factors = factors_for_sizes(parse_scales(list(scales)), data.image_sizes)
    num_scales = len(plan.valid_ranges)
    return ScaleMeasures(
        valid_per_scale=valid.sum(axis=1).astype(np.int64),
        valid_none=int((~valid.any(axis=0)).sum()),
        positive_none=int((~positive).sum()),
        chips_per_scale=np.bincount(plan.scale_index, minlength=num_scales).astype(np.int64),
        chip_pixels=len(plan) * chip_size * chip_size,
        image_pixels_per_scale=_canvas_pixels(data.image_sizes, factors),
        num_boxes=len(data.boxes),
        num_images=len(data),
    )


def _pct(count: int, total: int) -> str:
    return f"{100.0 * count / max(total, 1):.1f}%"


def _range_text(lo: float, hi: float) -> str:
    return f"[{lo:.1f}, {'inf' if math.isinf(hi) else f'{hi:.1f}'})"


def _mpx(pixels: float) -> str:
    return f"{pixels / 1e6:.2f} Mpx"


def summary_line(m: ScaleMeasures) -> str:
    """One line: boxes valid at no scale, positives of no chip, chips and pixels per image."""
    n = max(m.num_images, 1)
    whole = int(m.image_pixels_per_scale.sum())
    return (
        f"valid at no scale {_pct(m.valid_none, m.num_boxes)}, positive in no chip "
        f"{_pct(m.positive_none, m.num_boxes)}, {m.chips_per_scale.sum() / n:.2f} positive "
        f"chips/image, chip px / whole-image px {m.chip_pixels / max(whole, 1):.3f}"
    )


def _statistics_lines(name: str, data: DatasetBoxes) -> list[str]:
    h, w = data.image_sizes[:, 0], data.image_sizes[:, 1]
    sizes = data.sizes
    head = "".join(f"{'p' + str(p):>8}" for p in SIZE_PERCENTILES)
    values = "".join(f"{np.percentile(sizes, p):8.1f}" for p in SIZE_PERCENTILES)
    return [
        f"dataset {name}: {len(data)} images, {len(sizes)} boxes "
        f"({len(sizes) / len(data):.1f} per image; crowd regions excluded)",
        f"image height px: min {h.min()}, median {np.median(h):g}, max {h.max()}; "
        f"width px: min {w.min()}, median {np.median(w):g}, max {w.max()}",
        "box size sqrt(w*h), image px, percentiles:",
        head,
        values,
    ]


def _rule_line(params: AdviceParams, advice: ScaleAdvice) -> str:
    lo, hi = params.band
    (p_lo, p_hi), (s_lo, s_hi) = params.percentiles, advice.size_percentiles
    fit = (params.chip_size - params.chip_stride) / advice.largest_box_side
    line = (
        f"rule: band [{lo:.1f}, {hi:.1f}) chip px; p{p_lo:g} = {s_lo:.1f} px -> {lo / s_lo:.4g}x, "
        f"p{p_hi:g} = {s_hi:.1f} px -> {hi / s_hi:.4g}x, largest box side "
        f"{advice.largest_box_side:.0f} px fits a chip up to {fit:.4g}x; finest factor cap "
        f"{advice.cap:.4g} (--max-side {params.max_side:g} px for the median image)"
    )
    if advice.capped:
        need = params.max_side * (lo / s_lo) / advice.cap
        line += (
            f"\ncap reached: the p{p_lo:g} boxes reach {s_lo * advice.train_scales[0]:.1f} chip "
            f"px at the finest scale, under the band; --max-side {need:.0f} would bring them to L"
        )
    return line


def format_report(
    name: str,
    data: DatasetBoxes,
    params: AdviceParams,
    advice: ScaleAdvice,
    measures: ScaleMeasures,
) -> str:
    """The advisor's text: statistics, rule, per-scale table, totals (no YAML); no final
    newline."""
    m, n = measures, max(measures.num_images, 1)
    lines = [*_statistics_lines(name, data), _rule_line(params, advice), ""]
    lines.append(
        f"{'scale':>5} {'factor':>8}  {'valid range, image px':<22} {'chip px':<14} "
        f"{'test range, image px':<22} {'boxes valid':>12} {'chips/img':>9} {'whole px/img':>12}"
    )
    for s, f in enumerate(advice.train_scales):
        lo, hi = advice.valid_ranges[s]
        lines.append(
            f"{s:>5} {f:>8g}  {_range_text(lo, hi):<22} {_range_text(lo * f, hi * f):<14} "
            f"{_range_text(*advice.test_valid_ranges[s]):<22} "
            f"{_pct(m.valid_per_scale[s], m.num_boxes):>12} {m.chips_per_scale[s] / n:>9.2f} "
            f"{_mpx(m.image_pixels_per_scale[s] / n):>12}"
        )
    whole = int(m.image_pixels_per_scale.sum())
    lines += [
        "",
        f"boxes valid at no scale: {m.valid_none} ({_pct(m.valid_none, m.num_boxes)}); "
        f"positive in no chip (valid nowhere or larger than a chip where valid): "
        f"{m.positive_none} ({_pct(m.positive_none, m.num_boxes)})",
        f"positive chips per image: {m.chips_per_scale.sum() / n:.2f} "
        f"({params.chip_size} x {params.chip_size}); training px per image "
        f"{_mpx(m.chip_pixels / n)} vs whole images at the same scales {_mpx(whole / n)} "
        f"(ratio {m.chip_pixels / max(whole, 1):.3f}); negative chips add "
        f"NEG_CHIPS_PER_IMAGE x {params.chip_size}^2 px per image",
    ]
    return "\n".join(lines)
