"""Shared generators for planner tests: COCO-like random images with boxes."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st


def random_boxes(
    rng: np.random.Generator, height: int, width: int, n: int, min_size: float = 1.0
) -> np.ndarray:
    """n float32 XYXY boxes inside (height, width), sizes log-uniform from min_size px."""
    hi = max(min_size * 1.01, 0.95 * min(height, width))
    s = np.exp(rng.uniform(np.log(min_size), np.log(hi), n))
    ar = np.exp(rng.uniform(-0.8, 0.8, n))
    bw = np.minimum(s * np.sqrt(ar), width)
    bh = np.minimum(s / np.sqrt(ar), height)
    x1 = rng.uniform(0, width - bw)
    y1 = rng.uniform(0, height - bh)
    boxes = np.stack([x1, y1, x1 + bw, y1 + bh], axis=1).astype(np.float32)
    return np.clip(boxes, 0, [width, height, width, height]).astype(np.float32)


@st.composite
def images_with_boxes(draw, max_images: int = 4, max_side: int = 900, max_boxes: int = 25):
    """(list of boxes arrays, (N, 2) sizes) for a few random images."""
    n = draw(st.integers(1, max_images))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    sizes, boxes = [], []
    for _ in range(n):
        h, w = int(rng.integers(16, max_side)), int(rng.integers(16, max_side))
        sizes.append((h, w))
        boxes.append(random_boxes(rng, h, w, int(rng.integers(0, max_boxes + 1))))
    return boxes, np.array(sizes, dtype=np.int64)


scale_lists = st.lists(
    st.one_of(
        st.floats(0.2, 3.5),
        st.tuples(st.integers(64, 1400), st.one_of(st.just(-1), st.integers(64, 2000))),
    ),
    min_size=1,
    max_size=3,
)


@st.composite
def plan_settings(draw):
    """Random (scales, valid_ranges, chip_size, stride, jitter, seed)."""
    scales = draw(scale_lists)
    ranges = []
    for _ in scales:
        lo = draw(st.one_of(st.just(-1), st.floats(0, 150)))
        hi = draw(st.one_of(st.just(-1), st.floats(max(lo, 0) + 1, 400)))
        ranges.append((lo, hi))
    chip = draw(st.sampled_from([64, 128, 200, 256, 512]))
    stride = draw(st.sampled_from([s for s in (8, 16, 32, 48, 64) if s <= chip]))
    return scales, ranges, chip, stride, draw(st.booleans()), draw(st.integers(0, 2**64 - 1))
