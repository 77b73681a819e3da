"""Rendering of one synthetic multi-scale digits image (background, layout, compositing).

An image is a pure function of ``(seed, canvas)``. The seed is split with
``np.random.SeedSequence(seed).spawn(4)`` into independent streams for the background
texture, the layout (which glyphs, where, how large), the glyph colours and the sensor
noise, so the layout does not depend on the background (``render_scene`` with a flat
background yields exactly the boxes of ``render_image``).

Layout, per 1024x1024 of canvas (counts scale linearly with ``canvas / 1024``):

* 2-6 medium/large digits, size ``sqrt(w * h)`` log-uniform in [32, 384] px;
* 1-3 tight clusters of 8-30 tiny/small digits, size 6-28 px, plus 0-3 small letters
  mixed into each cluster;
* 2-8 distractor letters (never annotated) of any size in [6, 256] px anywhere.

About 30% of glyphs are rotated by up to +-25 degrees, some are slightly defocused. No two
glyphs (annotated or not) overlap: boxes are at least ``GAP`` px apart. Each glyph's colour
contrasts with the mean of the background under it (dark on light or light on dark).

Instance masks (``render_instances``): a digit's mask is exactly the set of pixels its glyph
was painted on (its alpha > 0, i.e. >= ``ALPHA_THRESHOLD``), kept as a box-sized patch. Glyphs
are painted in placement order, but since no two glyph boxes overlap (``GAP``) no pixel is
painted twice: the masks of an image are disjoint and no painting-order rule is needed.
"""

from __future__ import annotations

import math
from functools import cache
from typing import NamedTuple

import cv2
import numpy as np

from .synthetic_glyphs import FONT_FILES, glyph_alpha

__all__ = [
    "BACKGROUND_IMAGES",
    "GAP",
    "SYNTHETIC_CLASSES",
    "RenderedImage",
    "render_image",
    "render_instances",
    "render_scene",
]

SYNTHETIC_CLASSES: tuple[str, ...] = tuple("0123456789")

#: scikit-image sample images (shipped inside the wheel, loaded offline) used as textures.
#: ``page`` and ``text`` are excluded on purpose: they contain real digits.
BACKGROUND_IMAGES: tuple[str, ...] = (
    "astronaut", "brick", "camera", "chelsea", "coffee", "coins", "grass", "gravel",
    "hubble_deep_field", "immunohistochemistry", "moon", "retina", "rocket",
)  # fmt: skip

#: Minimum free space (px) between any two glyph boxes.
GAP = 2

# Letters that do not look like digits at small sizes (no O/o/I/l/i/S/s/Z/z/B/b/G/g/q/D/d).
_LETTERS = "ACEFHJKLMNPRTUVWXYacefhkmnrtuvwxy"
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_ROTATE_PROB = 0.3
_MAX_ANGLE = 25.0


@cache
def _background_source(name: str) -> np.ndarray:
    """uint8 (H, W, 3) RGB sample image from ``skimage.data`` (cached per process)."""
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)())
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    image = np.ascontiguousarray(image[:, :, :3], dtype=np.uint8)
    image.flags.writeable = False
    return image


def _texture(rng: np.random.Generator, canvas: int) -> np.ndarray:
    """float32 (canvas, canvas, 3): a rescaled, rotated, mirror-tiled sample image."""
    src = _background_source(BACKGROUND_IMAGES[rng.integers(len(BACKGROUND_IMAGES))])
    scale = math.exp(rng.uniform(math.log(0.6), math.log(2.5)))
    h, w = src.shape[:2]
    ch, cw = min(h, math.ceil(canvas / scale) + 1), min(w, math.ceil(canvas / scale) + 1)
    y0, x0 = rng.integers(h - ch + 1), rng.integers(w - cw + 1)
    src = src[y0 : y0 + ch, x0 : x0 + cw]
    interp = cv2.INTER_LINEAR if scale > 1.0 else cv2.INTER_AREA
    src = cv2.resize(src, (max(1, round(cw * scale)), max(1, round(ch * scale))),
                     interpolation=interp)  # fmt: skip
    src = np.rot90(src, k=int(rng.integers(4)))
    # a 2x2 mirrored block tiles seamlessly
    tile = np.concatenate([src, src[:, ::-1]], axis=1)
    tile = np.concatenate([tile, tile[::-1]], axis=0)
    th, tw = tile.shape[:2]
    oy, ox = int(rng.integers(th)), int(rng.integers(tw))
    reps = (math.ceil((canvas + oy) / th), math.ceil((canvas + ox) / tw), 1)
    return np.tile(tile, reps)[oy : oy + canvas, ox : ox + canvas].astype(np.float32)


def _background(rng: np.random.Generator, canvas: int) -> np.ndarray:
    """float32 (canvas, canvas, 3) RGB in [0, 255]: textured, low-contrast, blurred."""
    bg = _texture(rng, canvas)
    if rng.random() < 0.4:
        mix = rng.uniform(0.3, 0.7)
        bg = cv2.addWeighted(bg, mix, _texture(rng, canvas), 1.0 - mix, 0.0)
    if rng.random() < 0.3:
        bg[:] = (bg @ _LUMA)[:, :, None]
    mean = bg.reshape(-1, 3).mean(axis=0)
    contrast = rng.uniform(0.3, 0.7)
    offset = (1.0 - contrast) * mean + rng.uniform(-40.0, 40.0)
    bg = bg * np.float32(contrast) + offset.astype(np.float32)
    theta, amplitude = rng.uniform(0.0, 2.0 * math.pi), rng.uniform(0.0, 40.0)
    ramp = np.linspace(-0.5, 0.5, canvas, dtype=np.float32) * np.float32(amplitude)
    bg += (ramp[None, :] * math.cos(theta) + ramp[:, None] * math.sin(theta))[:, :, None]
    sigma = rng.uniform(0.0, 2.0)
    if sigma > 0.4:
        bg = cv2.GaussianBlur(bg, (0, 0), sigma)
    return np.clip(bg, 0.0, 255.0, out=bg)


class _Layout:
    """Non-overlapping placement of glyph masks on a square canvas."""

    def __init__(self, canvas: int) -> None:
        self.canvas = canvas
        self.boxes = np.zeros((0, 4), dtype=np.int64)  # XYXY, exclusive right/bottom
        self.glyphs: list[tuple[int, int, np.ndarray, int]] = []  # (x, y, alpha, label)

    def place(
        self,
        rng: np.random.Generator,
        alpha: np.ndarray,
        label: int,
        region: tuple[int, int, int, int] | None = None,
        tries: int = 48,
    ) -> bool:
        """Put ``alpha`` at a random free position whose box lies inside ``region``."""
        h, w = alpha.shape
        x1r, y1r, x2r, y2r = region or (0, 0, self.canvas, self.canvas)
        x1r, y1r = max(x1r, 0), max(y1r, 0)
        x2r, y2r = min(x2r, self.canvas) - w, min(y2r, self.canvas) - h
        if x2r < x1r or y2r < y1r:
            return False
        xs = rng.integers(x1r, x2r + 1, size=tries)
        ys = rng.integers(y1r, y2r + 1, size=tries)
        b = self.boxes
        hit = (
            (xs[:, None] < b[None, :, 2] + GAP) & (xs[:, None] + w + GAP > b[None, :, 0])
            & (ys[:, None] < b[None, :, 3] + GAP) & (ys[:, None] + h + GAP > b[None, :, 1])
        ).any(axis=1)  # fmt: skip
        free = np.flatnonzero(~hit)
        if free.size == 0:
            return False
        x, y = int(xs[free[0]]), int(ys[free[0]])
        self.boxes = np.concatenate([b, np.array([[x, y, x + w, y + h]], dtype=np.int64)])
        self.glyphs.append((x, y, alpha, label))
        return True


def _glyph_style(rng: np.random.Generator, size: float) -> tuple[int, float, float]:
    """Random (font index, rotation in degrees, defocus sigma in px) for a glyph."""
    font = int(rng.integers(len(FONT_FILES)))
    angle = rng.uniform(-_MAX_ANGLE, _MAX_ANGLE) if rng.random() < _ROTATE_PROB else 0.0
    blur = rng.uniform(0.3, 0.9) * min(1.0, size / 16.0) if rng.random() < 0.15 else 0.0
    return font, angle, blur


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def _place_large(rng: np.random.Generator, layout: _Layout, count: int) -> None:
    max_size = min(384.0, 0.375 * layout.canvas)
    sizes = sorted((_log_uniform(rng, 32.0, max_size) for _ in range(count)), reverse=True)
    for size in sizes:
        label = int(rng.integers(len(SYNTHETIC_CLASSES)))
        font, angle, blur = _glyph_style(rng, size)
        while size >= 32.0:
            alpha = glyph_alpha(font, SYNTHETIC_CLASSES[label], size, angle, blur)
            if layout.place(rng, alpha, label, tries=64):
                break
            size *= 0.8


def _cluster_region(
    rng: np.random.Generator, layout: _Layout, side: int
) -> tuple[int, int, int, int]:
    """A side x side square, preferably free of glyphs, as (x1, y1, x2, y2)."""
    side = min(side, layout.canvas)
    xs = rng.integers(0, layout.canvas - side + 1, size=32)
    ys = rng.integers(0, layout.canvas - side + 1, size=32)
    b = layout.boxes
    ow = np.minimum(xs[:, None] + side, b[None, :, 2]) - np.maximum(xs[:, None], b[None, :, 0])
    oh = np.minimum(ys[:, None] + side, b[None, :, 3]) - np.maximum(ys[:, None], b[None, :, 1])
    overlap = (np.clip(ow, 0, None) * np.clip(oh, 0, None)).sum(axis=1)
    best = int(np.argmin(overlap))
    return int(xs[best]), int(ys[best]), int(xs[best]) + side, int(ys[best]) + side


def _place_cluster(rng: np.random.Generator, layout: _Layout) -> None:
    count = int(rng.integers(8, 31))
    base = _log_uniform(rng, 6.0, 28.0)
    cell = (0.8 * base + GAP + 1) * (1.3 * base + GAP + 1)  # digit box + gap, aspect ~0.6
    side = math.ceil(math.sqrt(count * cell / 0.35))
    x1, y1, x2, y2 = _cluster_region(rng, layout, side)
    num_letters = int(rng.integers(0, 4))
    kinds = [True] * count + [False] * num_letters  # True: annotated digit
    for is_digit in kinds:
        size = float(np.clip(base * math.exp(rng.normal(0.0, 0.15)), 6.0, 28.0))
        label = int(rng.integers(len(SYNTHETIC_CLASSES))) if is_digit else -1
        char = SYNTHETIC_CLASSES[label] if is_digit else _LETTERS[rng.integers(len(_LETTERS))]
        alpha = glyph_alpha(*_with_style(rng, char, size))
        grow = 0
        while not layout.place(rng, alpha, label, (x1 - grow, y1 - grow, x2 + grow, y2 + grow)):
            grow += max(4, side // 8)
            if grow > side:
                break


def _with_style(
    rng: np.random.Generator, char: str, size: float
) -> tuple[int, str, float, float, float]:
    """Arguments for ``glyph_alpha``: (font, char, size, angle, blur) with a random style."""
    font, angle, blur = _glyph_style(rng, size)
    return font, char, size, angle, blur


def _place_distractors(rng: np.random.Generator, layout: _Layout, count: int) -> None:
    for _ in range(count):
        size = _log_uniform(rng, 6.0, min(256.0, 0.25 * layout.canvas))
        char = _LETTERS[rng.integers(len(_LETTERS))]
        layout.place(rng, glyph_alpha(*_with_style(rng, char, size)), -1)


def _layout(rng: np.random.Generator, canvas: int) -> _Layout:
    density = canvas / 1024.0
    layout = _Layout(canvas)
    _place_large(rng, layout, max(1, round(int(rng.integers(2, 7)) * density)))
    for _ in range(max(1, round(int(rng.integers(1, 4)) * density))):
        _place_cluster(rng, layout)
    _place_distractors(rng, layout, max(1, round(int(rng.integers(2, 9)) * density)))
    return layout


def _draw(image: np.ndarray, layout: _Layout, rng: np.random.Generator) -> None:
    """Alpha-blend every glyph into ``image`` (float32 HxWx3) with a contrasting colour."""
    for x, y, alpha, _ in layout.glyphs:
        h, w = alpha.shape
        roi = image[y : y + h, x : x + w]
        u = rng.random(6)
        mean = roi.reshape(-1, 3).mean(axis=0)
        luma = float(mean @ _LUMA)
        sign = -1.0 if luma > 128.0 else 1.0
        if 90.0 < luma < 166.0 and u[1] < 0.5:
            sign = -sign
        jitter = (u[2:5].astype(np.float32) - 0.5) * 50.0
        delta = 60.0 + 90.0 * u[0]
        colour = np.clip(mean + sign * delta + jitter, 0.0, 255.0)
        if abs(float(colour @ _LUMA) - luma) < 50.0:  # clipped: go the other way
            colour = np.clip(mean - sign * delta + jitter, 0.0, 255.0)
        weight = (alpha * np.float32(0.8 + 0.2 * u[5]))[:, :, None]
        roi += (colour.astype(np.float32) - roi) * weight


class RenderedImage(NamedTuple):
    """One rendered image with its annotated digits (``N`` of them), in image px.

    Attributes:
        image: uint8 (canvas, canvas, 3) RGB.
        boxes: float32 (N, 4) XYXY, exclusive right/bottom edge, tight around each digit's
            painted pixels (integer-valued).
        classes: int64 (N,) in 0..9, index into ``SYNTHETIC_CLASSES``.
        masks: N bool arrays; ``masks[i]`` has shape ``(y2 - y1, x2 - x1)`` of ``boxes[i]``
            and marks the pixels of the box that digit ``i``'s glyph was painted on; its
            first/last rows and columns each hold a set pixel. Masks of an image are disjoint.
    """

    image: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    masks: tuple[np.ndarray, ...]


def render_instances(seed: int, canvas: int, flat_background: float | None = None) -> RenderedImage:
    """Render one image with its digits' boxes, classes and exact instance masks.

    Args:
        seed: non-negative integer; the image is a pure function of (seed, canvas).
        canvas: side of the square image in px (1024 or 2048 for the standard splits).
        flat_background: if given, a constant grey level in [0, 255] replaces the textured
            background and no noise is added (for tests); boxes, classes and masks are
            unchanged.

    Returns:
        A ``RenderedImage``; masks are box-sized patches, never full-image arrays.
    """
    if canvas < 128:
        raise ValueError(f"canvas must be at least 128 px, got {canvas}")
    bg_ss, layout_ss, colour_ss, noise_ss = np.random.SeedSequence(seed).spawn(4)
    layout = _layout(np.random.default_rng(layout_ss), canvas)
    if flat_background is None:
        image = _background(np.random.default_rng(bg_ss), canvas)
    else:
        image = np.full((canvas, canvas, 3), flat_background, dtype=np.float32)
    _draw(image, layout, np.random.default_rng(colour_ss))
    if flat_background is None:
        noise_rng = np.random.default_rng(noise_ss)
        sigma = np.float32(noise_rng.uniform(1.5, 6.0))
        image += noise_rng.standard_normal((canvas, canvas, 1), dtype=np.float32) * sigma
    image = np.clip(image + 0.5, 0.0, 255.0, out=image).astype(np.uint8)
    keep = np.array([label >= 0 for *_, label in layout.glyphs], dtype=bool)
    boxes = layout.boxes[keep].astype(np.float32).reshape(-1, 4)
    classes = np.array([g[3] for g in layout.glyphs if g[3] >= 0], dtype=np.int64)
    masks = tuple(alpha > 0 for _, _, alpha, label in layout.glyphs if label >= 0)
    return RenderedImage(image, boxes, classes, masks)


def render_scene(
    seed: int, canvas: int, flat_background: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one image; optionally on a flat grey background without noise.

    Args:
        seed: non-negative integer; the image is a pure function of (seed, canvas).
        canvas: side of the square image in px (1024 or 2048 for the standard splits).
        flat_background: if given, a constant grey level in [0, 255] replaces the textured
            background and no noise is added (for tests); boxes and classes are unchanged.

    Returns:
        image: uint8 (canvas, canvas, 3) RGB.
        boxes: float32 (N, 4) XYXY in image px, exclusive right/bottom edge, tight around
            each annotated digit's rendered pixels.
        classes: int64 (N,) in 0..9, index into ``SYNTHETIC_CLASSES``.
    """
    image, boxes, classes, _ = render_instances(seed, canvas, flat_background)
    return image, boxes, classes


def render_image(seed: int, canvas: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render synthetic image ``seed``: uint8 (H, W, 3) RGB, float32 (N, 4) XYXY boxes in
    image px (exclusive right/bottom, tight around each digit), int64 (N,) classes 0..9."""
    return render_scene(seed, canvas)
