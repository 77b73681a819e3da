"""Scales, box sizes, valid ranges and seeds: the one shared vocabulary of the project.

A *scale* is either a factor on the original image (``3.0``) or a ``(short_target, long_cap)``
pair: the image is resized so its short side becomes ``short_target`` unless its long side would
then exceed ``long_cap`` (``-1`` = no cap). "Long side 512" is the pair ``(512, 512)``.

A *valid range* ``(lo, hi)`` is a half-open interval ``[lo, hi)`` of box sizes ``sqrt(w * h)``
in original-image pixels; ``-1`` marks an open end.

The *size* of an XYXY box is ``sqrt(w * h)`` (``box_sizes``; negative extents count as 0), and
``in_range`` is the one half-open range test. Every package uses these (the model's torch twin
is ``sniper.modeling.matching.box_sizes`` / ``in_range_mask``; the compiled planner's C++ twin
is ``box_size`` in ``csrc/geometry.h``).

Image sizes are ``(height, width)`` in pixels, as torchvision and detectron2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from chipping._numbers import MAX_UINT64, check_int, check_real, is_number

ScaleSpec = float | tuple[float, float]

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
# Largest canvas side (int32 corners with headroom); also the largest image side.
MAX_CANVAS_SIDE = 1 << 28
# Tolerance of the truncation of ``length * factor`` (canvas px) for the rounding of the product.
CANVAS_EPS = 1e-9
_is_number = is_number


def parse_scales(scales: Sequence[ScaleSpec]) -> np.ndarray:
    """Normalizes scale specs into a float64 ``(S, 3)`` array of rows ``(is_pair, a, b)``.

    Raises:
        ValueError: naming the offending entry, for an empty list, a non-positive or non-finite
            factor, or a malformed pair.
    """
    if isinstance(scales, (str, bytes)) or not isinstance(scales, Sequence) or len(scales) == 0:
        raise ValueError(
            f"scales must be a non-empty list of factors or (short, long) pairs, got {scales!r}"
        )
    rows = []
    for i, s in enumerate(scales):
        if _is_number(s):
            if not (_finite(s) and float(s) > 0):
                raise ValueError(f"scales[{i}] = {s!r}: a factor must be finite and > 0")
            rows.append((0.0, float(s), 0.0))
        elif isinstance(s, Sequence) and len(s) == 2 and all(_is_number(v) for v in s):
            if not (_finite(s[0]) and _finite(s[1])):
                raise ValueError(f"scales[{i}] = {s!r}: a (short, long) pair must be finite")
            short, long_cap = float(s[0]), float(s[1])
            if not (math.isfinite(short) and short > 0):
                raise ValueError(f"scales[{i}] = {s!r}: short-side target must be finite and > 0")
            if not (long_cap == -1 or (math.isfinite(long_cap) and long_cap > 0)):
                raise ValueError(f"scales[{i}] = {s!r}: long-side cap must be > 0 or -1 (none)")
            rows.append((1.0, short, long_cap))
        else:
            raise ValueError(f"scales[{i}] = {s!r}: expected a factor or a (short, long) pair")
    return np.asarray(rows, dtype=np.float64)


def _finite(x: object) -> bool:
    try:
        return math.isfinite(float(x))
    except OverflowError:  # an int too large for a float
        return False


def scale_specs(scales: Sequence[ScaleSpec]) -> list[ScaleSpec]:
    """Validated scale specs in their Python form: ``float`` factors and ``(short, long)``
    float pairs (``long = -1``: no cap). Raises ``ValueError`` as ``parse_scales``."""
    rows = parse_scales(scales)
    return [float(a) if is_pair == 0 else (float(a), float(b)) for is_pair, a, b in rows]


def box_sizes(boxes: np.ndarray) -> np.ndarray:
    """float64 ``(N,)`` size ``sqrt(w * h)`` of float ``(N, 4)`` XYXY boxes (any one frame);
    a negative width or height counts as 0."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w = np.maximum(b[:, 2] - b[:, 0], 0.0)
    h = np.maximum(b[:, 3] - b[:, 1], 0.0)
    return np.sqrt(w * h)


def in_range(sizes: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """bool mask of ``sizes`` in the half-open range ``[lo, hi)`` (``hi`` may be inf)."""
    sizes = np.asarray(sizes)
    return (sizes >= lo) & (sizes < hi)


def _factor_from_row(row: np.ndarray, height: int, width: int) -> float:
    if row[0] == 0.0:
        return float(row[1])
    f = float(row[1]) / float(min(height, width))
    if row[2] > 0:
        f = min(f, float(row[2]) / float(max(height, width)))
    return f


def factors_for_sizes(scale_rows: np.ndarray, image_sizes: np.ndarray) -> np.ndarray:
    """float64 ``(N, S)`` factor of every scale row for every ``(height, width)`` image."""
    h = image_sizes[:, 0:1].astype(np.float64)
    w = image_sizes[:, 1:2].astype(np.float64)
    is_pair, a, b = scale_rows[:, 0], scale_rows[:, 1], scale_rows[:, 2]
    by_short = a / np.minimum(h, w)
    with np.errstate(divide="ignore", invalid="ignore"):
        by_long = np.where(b > 0, b / np.maximum(h, w), np.inf)
    return np.where(is_pair > 0, np.minimum(by_short, by_long), a + 0 * h)


def scale_factor(scale: ScaleSpec, image_size: tuple[int, int]) -> float:
    """Resize factor of ``scale`` for an image of ``(height, width)`` pixels."""
    height, width = _check_image_size(image_size)
    return _factor_from_row(parse_scales([scale])[0], height, width)


def scaled_length(length: int, factor: float) -> int:
    """Canvas length of an image side at ``factor``: ``length * factor`` truncated (as the
    original SNIPER), at least 1 pixel. The product may exceed the truncated length by up to
    ``CANVAS_EPS`` (float rounding: ``480 * (800 / 480)`` is 800), so a canvas, and every chip
    on it, never reaches past the image edge in image px (``canvas / factor <= length``; a side
    under one canvas px still gets 1 px). docs/design.md section 3."""
    return max(1, int(math.floor(float(length) * factor + CANVAS_EPS)))


def scaled_size(image_size: tuple[int, int], factor: float) -> tuple[int, int]:
    """Canvas ``(height, width)`` (int px) of an image of ``image_size`` (height, width) resized
    by ``factor`` (``scaled_length`` of each side).

    Raises:
        ValueError: a bad ``image_size``, a ``factor`` not finite and > 0, or a canvas side
            above ``MAX_CANVAS_SIDE``.
    """
    height, width = _check_image_size(image_size)
    f = check_real(factor, "factor", 0.0, open_min=True)
    if max(height, width) * f > MAX_CANVAS_SIDE:
        raise ValueError(
            f"factor = {factor!r} gives image_size {image_size!r} a canvas side above "
            f"{MAX_CANVAS_SIDE} px"
        )
    return scaled_length(height, f), scaled_length(width, f)


def parse_ranges(
    valid_ranges: Sequence[Sequence[float]],
    num_scales: int | None = None,
    name: str = "valid_ranges",
) -> np.ndarray:
    """Normalizes valid ranges into a float64 ``(S, 2)`` array ``[lo, hi)``; -1 -> 0 / +inf.

    ``num_scales`` (if given) is the number of entries required.
    """
    if isinstance(valid_ranges, (str, bytes)) or not isinstance(valid_ranges, Sequence):
        raise ValueError(f"{name} must be a list of (lo, hi) pairs, got {valid_ranges!r}")
    if num_scales is None:
        num_scales = len(valid_ranges)
    if len(valid_ranges) != num_scales:
        raise ValueError(
            f"{name} has {len(valid_ranges)} entries but there are {num_scales} "
            f"scales; give one (lo, hi) per scale"
        )
    out = np.empty((num_scales, 2), dtype=np.float64)
    for i, r in enumerate(valid_ranges):
        if not (
            isinstance(r, Sequence)
            and not isinstance(r, (str, bytes))
            and len(r) == 2
            and all(_is_number(v) for v in r)
        ):
            raise ValueError(f"{name}[{i}] = {r!r}: expected a (lo, hi) pair of numbers")
        lo, hi = (check_real(v, f"{name}[{i}]", allow_inf=True) for v in r)
        lo = 0.0 if lo == -1 else lo
        hi = math.inf if hi == -1 else hi
        if not (math.isfinite(lo) and lo >= 0) or math.isnan(hi) or hi <= lo:
            raise ValueError(f"{name}[{i}] = {r!r}: need 0 <= lo < hi (-1 = open end)")
        out[i] = (lo, hi)
    return out


def mix64(z: int) -> int:
    """splitmix64 finalizer on a 64-bit integer (same as the compiled planner)."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def image_seed(seed: int, index: int) -> int:
    """Seed of image ``index`` in a batch planned with ``seed``.

    ``plan_positive_chips(..., seed=image_seed(s, i))`` plans image ``i`` exactly as
    ``plan_positive_chips_batch(..., seed=s)`` does.
    """
    s = check_int(seed, "seed", 0, MAX_UINT64)
    i = check_int(index, "index", 0, MAX_UINT64)
    return mix64((s + (i + 1) * GOLDEN) & MASK64)


def image_seeds(seed: int, num_images: int) -> np.ndarray:
    """``image_seed(seed, i)`` for ``i in range(num_images)`` as uint64, vectorized."""
    with np.errstate(over="ignore"):
        z = np.uint64(int(seed) & MASK64) + (
            np.arange(1, num_images + 1, dtype=np.uint64) * np.uint64(GOLDEN)
        )
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _check_image_size(image_size: object, name: str = "image_size") -> tuple[int, int]:
    """``(height, width)`` as ints in ``[1, MAX_CANVAS_SIDE]``; anything else a ValueError."""
    if type(image_size) is tuple and len(image_size) == 2:  # the common case, fast
        height, width = image_size
        if (
            type(height) is int
            and type(width) is int
            and 0 < height <= MAX_CANVAS_SIDE
            and 0 < width <= MAX_CANVAS_SIDE
        ):
            return height, width
    ok = (
        isinstance(image_size, (Sequence, np.ndarray))
        and not isinstance(image_size, (str, bytes))
        and len(image_size) == 2
    )
    if not ok or not all(_is_number(v) and _finite(v) for v in image_size):
        raise ValueError(f"{name} must be (height, width) integers, got {image_size!r}")
    if not all(float(v).is_integer() for v in image_size):
        raise ValueError(f"{name} must be (height, width) integers, got {image_size!r}")
    height, width = int(image_size[0]), int(image_size[1])
    if height <= 0 or width <= 0:
        raise ValueError(f"{name} = {image_size!r}: height and width must be > 0")
    if max(height, width) > MAX_CANVAS_SIDE:
        raise ValueError(f"{name} = {image_size!r}: a side above {MAX_CANVAS_SIDE} px")
    return height, width
