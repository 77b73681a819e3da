"""Negative SNIPER chips (docs/design.md section 4): cover the proposals outside positives."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from chipping import _checks
from chipping._backend import backend_module
from chipping._grid import DEFAULT_SCALES, DEFAULT_VALID_RANGES, _prepare, _seeds
from chipping.plan_types import ChipPlan
from chipping.scales import ScaleSpec, factors_for_sizes


def _group_positives(
    positive: ChipPlan, n: int, factors: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positive chips grouped by image, checked against the images' ``factors`` (N, S)."""
    if not isinstance(positive, ChipPlan):
        raise ValueError(f"positive must be a ChipPlan, got {type(positive).__name__}")
    if len(positive) and (positive.image_index.min() < 0 or positive.image_index.max() >= n):
        raise ValueError(
            f"positive.image_index must lie in [0, {n}), got values in "
            f"[{positive.image_index.min()}, {positive.image_index.max()}]"
        )
    num_scales = factors.shape[1]
    if len(positive) and positive.scale_index.max() >= num_scales:
        raise ValueError(
            f"positive has scale_index {int(positive.scale_index.max())} but only "
            f"{num_scales} scales were given"
        )
    want = factors[positive.image_index, positive.scale_index]
    off = ~np.isclose(positive.factors, want, rtol=1e-9, atol=0.0)
    if off.any():
        k = int(np.flatnonzero(off)[0])
        raise ValueError(
            f"positive chip {k} (image {int(positive.image_index[k])}, scale "
            f"{int(positive.scale_index[k])}) was planned at factor "
            f"{float(positive.factors[k])!r}, but these scales give that image factor "
            f"{float(want[k])!r}: plan the positives with the same scales and image sizes"
        )
    order = np.argsort(positive.image_index, kind="stable")
    splits = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(positive.image_index, minlength=n)[:n], out=splits[1:])
    return (
        np.ascontiguousarray(positive.scale_index[order]),
        np.ascontiguousarray(positive.chips_scaled[order]),
        splits,
    )


def plan_negative_chips_batch(
    proposals: Sequence[np.ndarray] | np.ndarray,
    image_sizes: np.ndarray | Sequence[tuple[int, int]],
    positive: ChipPlan,
    scales: Sequence[ScaleSpec] = DEFAULT_SCALES,
    valid_ranges: Sequence[Sequence[float]] = DEFAULT_VALID_RANGES,
    chip_size: int = 512,
    stride: int = 32,
    *,
    min_proposals: Sequence[int] = (25, 10, 10),
    proposal_splits: np.ndarray | None = None,
    jitter: bool = False,
    seed: int = 0,
    seeds: np.ndarray | None = None,
    num_threads: int = 0,
    backend: str = "compiled",
) -> ChipPlan:
    """Negative SNIPER chips for many images: cover what the RPN fires on outside positives.

    Per image and scale: the proposals whose size is in the scale's range and that are not
    fully inside a positive chip of that scale are greedily covered by grid chips (as the
    positive cover); a chip is kept while it newly covers more than ``min_proposals[scale]``
    of them. ``positive`` must be planned with the same scales. Images without positives
    still get negative chips.

    Returns:
        A ``ChipPlan``; ``counts`` holds the proposals each chip newly covered.
    """
    sizes, scale_rows, ranges, chip, step = _prepare(
        image_sizes, scales, valid_ranges, chip_size, stride
    )
    n = len(sizes)
    flat, splits = _checks.flatten_boxes_in_images(proposals, proposal_splits, sizes, "proposals")
    if (
        isinstance(min_proposals, (str, bytes))
        or not isinstance(min_proposals, (Sequence, np.ndarray))
        or len(min_proposals) != len(scale_rows)
    ):
        raise ValueError(
            f"min_proposals = {min_proposals!r}: need one count per scale ({len(scale_rows)})"
        )
    mins = np.array(
        [_checks.check_int(m, f"min_proposals[{i}]", 0) for i, m in enumerate(min_proposals)],
        dtype=np.int64,
    )
    factors = factors_for_sizes(scale_rows, sizes)
    pos_scale, pos_chips, pos_splits = _group_positives(positive, n, factors)
    raw = backend_module(backend).plan_negative_batch(
        flat,
        splits,
        pos_scale,
        pos_chips,
        pos_splits,
        sizes,
        scale_rows,
        ranges,
        mins,
        chip,
        step,
        _checks.check_bool(jitter, "jitter"),
        _seeds(seed, seeds, n),
        _checks.check_threads(num_threads),
    )
    return ChipPlan.from_raw(raw, ranges)


def plan_negative_chips(
    proposals: np.ndarray,
    image_size: tuple[int, int],
    positive: ChipPlan,
    scales: Sequence[ScaleSpec] = DEFAULT_SCALES,
    valid_ranges: Sequence[Sequence[float]] = DEFAULT_VALID_RANGES,
    chip_size: int = 512,
    stride: int = 32,
    *,
    min_proposals: Sequence[int] = (25, 10, 10),
    jitter: bool = False,
    seed: int = 0,
    backend: str = "compiled",
) -> ChipPlan:
    """Negative chips of one image; ``positive`` holds this image's positive chips (a plan of
    one image, whatever its ``image_index``, planned with the same scales and image size)."""
    size = _checks.check_image_size(image_size)
    if isinstance(positive, ChipPlan) and len(positive):
        images = np.unique(positive.image_index)
        if len(images) > 1:
            raise ValueError(
                f"positive holds the chips of {len(images)} images (image_index "
                f"{images[:5].tolist()}{'...' if len(images) > 5 else ''}); give this image's "
                f"chips (positive.for_image(i)) or use plan_negative_chips_batch"
            )
        positive = ChipPlan._trusted(
            image_index=np.zeros_like(positive.image_index),
            scale_index=positive.scale_index,
            chips_scaled=positive.chips_scaled,
            factors=positive.factors,
            counts=positive.counts,
            valid_ranges=positive.valid_ranges,
        )
    return plan_negative_chips_batch(
        [proposals],
        [size],
        positive,
        scales,
        valid_ranges,
        chip_size,
        stride,
        min_proposals=min_proposals,
        jitter=jitter,
        seeds=np.array([_checks.check_int(seed, "seed", 0, (1 << 64) - 1)], dtype=np.uint64),
        num_threads=1,
        backend=backend,
    )
