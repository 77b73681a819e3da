"""Anti-aliased glyph masks for the synthetic digits dataset.

Glyphs are rendered with PIL from the DejaVu fonts that ship with matplotlib, once per
(font, character, font-size bucket) and cached per process. A glyph instance of a given
size and rotation is then derived from the cached master by rotating it at master
resolution and area-downsampling it to the requested size, so small glyphs get proper
anti-aliasing. Every returned alpha mask is *tight*: alpha below ``ALPHA_THRESHOLD`` is set
to exactly zero and the mask is cropped so that its first/last row and column hold a
non-zero pixel. The box of a drawn glyph is therefore exactly the extent of its mask.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "ALPHA_THRESHOLD",
    "FONT_FILES",
    "font_path",
    "glyph_alpha",
]

#: DejaVu faces bundled with matplotlib (``matplotlib.get_data_path()/fonts/ttf``).
FONT_FILES: tuple[str, ...] = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
)

#: Alpha values below this are cut to zero; the glyph box is the extent of alpha > 0.
ALPHA_THRESHOLD = 0.2

# Font sizes (px em) at which master glyphs are rendered. A glyph of target size s is
# derived from the smallest bucket >= _OVERSAMPLE * s (ink size is ~0.6-0.75 em, so the
# master is always at least ~1.5x larger than the target and is only ever downsampled).
_FONT_BUCKETS = (16, 32, 64, 128, 256, 512, 1024)
_OVERSAMPLE = 2.5


def font_path(font_index: int) -> str:
    """Absolute path of ``FONT_FILES[font_index]`` inside matplotlib's data directory."""
    import matplotlib

    return os.path.join(matplotlib.get_data_path(), "fonts", "ttf", FONT_FILES[font_index])


@lru_cache(maxsize=64)
def _font(font_index: int, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(font_path(font_index), size)


def _tight_crop(mask: np.ndarray) -> np.ndarray:
    """Crop a 2-D mask to the bounds of its non-zero pixels (unchanged if all zero)."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return mask
    return mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


@lru_cache(maxsize=4096)
def _master(font_index: int, char: str, bucket: int) -> np.ndarray:
    """uint8 (h, w) coverage of ``char`` at font size ``bucket``, cropped to its ink."""
    font = _font(font_index, bucket)
    x0, y0, x1, y1 = font.getbbox(char)
    pad = bucket // 4 + 2  # room for italic overhang that getbbox does not report
    image = Image.new("L", (x1 - x0 + 2 * pad, y1 - y0 + 2 * pad), 0)
    ImageDraw.Draw(image).text((pad - x0, pad - y0), char, fill=255, font=font)
    mask = _tight_crop(np.asarray(image, dtype=np.uint8)).copy()
    if not mask.any():
        raise ValueError(f"font {FONT_FILES[font_index]} renders no ink for {char!r}")
    mask.flags.writeable = False
    return mask


def _rotate(mask: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rotate a uint8 mask counter-clockwise by ``angle_deg`` on an expanded canvas."""
    h, w = mask.shape
    rad = math.radians(angle_deg)
    cos, sin = abs(math.cos(rad)), abs(math.sin(rad))
    out_w = int(math.ceil(w * cos + h * sin)) + 2
    out_h = int(math.ceil(w * sin + h * cos)) + 2
    matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle_deg, 1.0)
    matrix[0, 2] += (out_w - w) / 2.0
    matrix[1, 2] += (out_h - h) / 2.0
    rotated = cv2.warpAffine(mask, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR, borderValue=0)
    return _tight_crop(rotated)


def glyph_alpha(
    font_index: int, char: str, size: float, angle_deg: float = 0.0, blur_sigma: float = 0.0
) -> np.ndarray:
    """Tight anti-aliased coverage mask of one glyph instance.

    Args:
        font_index: index into ``FONT_FILES``.
        char: a single character.
        size: target size in px, ``sqrt(w * h)`` of the returned mask's extent (after
            rotation); the result matches it to within rounding (about one pixel).
        angle_deg: counter-clockwise rotation in degrees, applied before resizing.
        blur_sigma: optional Gaussian defocus (px, at the target size) applied to the
            coverage before thresholding.

    Returns:
        float32 array (h, w) with values in {0} U [ALPHA_THRESHOLD, 1]; its first and last
        rows and columns each contain a non-zero value, so a glyph drawn with its top-left
        corner at (x, y) has the exact box [x, y, x + w, y + h) (exclusive right/bottom).
    """
    if len(char) != 1:
        raise ValueError(f"expected a single character, got {char!r}")
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    need = _OVERSAMPLE * size
    bucket = next((b for b in _FONT_BUCKETS if b >= need), _FONT_BUCKETS[-1])
    mask = _master(font_index, char, bucket)
    if angle_deg != 0.0:
        mask = _rotate(np.ascontiguousarray(mask), angle_deg)
    alpha = _resize_and_cut(mask, size, blur_sigma)
    # Thresholding trims faint edges (most visibly at tiny sizes): correct the scale once.
    actual = math.sqrt(alpha.shape[0] * alpha.shape[1])
    if abs(actual - size) > 0.5:
        alpha = _resize_and_cut(mask, size * size / actual, blur_sigma)
    return alpha


def _resize_and_cut(mask: np.ndarray, size: float, blur_sigma: float) -> np.ndarray:
    """Area-resize a uint8 master to ``size``, optionally blur, threshold, crop tight."""
    h0, w0 = mask.shape
    scale = size / math.sqrt(h0 * w0)
    out_w = max(1, round(w0 * scale))
    out_h = max(1, round(h0 * scale))
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    alpha = cv2.resize(mask, (out_w, out_h), interpolation=interp).astype(np.float32) / 255.0
    if blur_sigma > 0.0:
        pad = int(math.ceil(2.0 * blur_sigma))
        alpha = np.pad(alpha, pad)
        alpha = cv2.GaussianBlur(alpha, (0, 0), blur_sigma, borderType=cv2.BORDER_CONSTANT)
    peak = float(alpha.max())
    if peak < 2.0 * ALPHA_THRESHOLD:  # faint (tiny or heavily blurred) glyph: renormalize
        alpha *= 1.0 / max(peak, 1e-6)
    alpha[alpha < ALPHA_THRESHOLD] = 0.0
    return np.ascontiguousarray(_tight_crop(alpha))
