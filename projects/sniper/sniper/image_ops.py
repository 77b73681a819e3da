"""Image operations shared by training data, inference and AutoFocus (a leaf module).

* ``read_image``: an image file as uint8 ``(H, W, 3)`` in RGB or BGR order, or
  ``ImageReadError`` naming the file.
* ``check_image``: the one check of an in-memory image given to an inference engine or a
  predictor: a numpy ``(H, W, 3)`` uint8 array with ``H, W > 0``.
* ``cut_chip``: the project's one resize rule. A chip (network input) is a window of the
  *canvas*, the image resized by the chip's factor ``f`` to ``chipping.scaled_size``. For
  ``f < 1`` the canvas is made with ``cv2.resize(..., INTER_AREA)`` (anti-aliased shrinking)
  and the window is cropped from it; for ``f >= 1`` only the window is computed, by bilinear
  ``cv2.warpAffine`` with the pixel-centre mapping ``canvas = f * (image + 0.5) - 0.5`` (what
  ``cv2.resize`` does), so a 3x scale never materializes the whole 3x canvas.

Imports nothing of the project but ``chipping.scales``.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from chipping.scales import scaled_length

__all__ = ["ImageReadError", "check_image", "cut_chip", "read_image"]


class ImageReadError(OSError):
    """An image file is missing, unreadable or not an image."""


def read_image(path: str, fmt: str = "RGB") -> np.ndarray:
    """Reads ``path`` as uint8 ``(H, W, 3)`` in ``fmt`` ("RGB" or "BGR") channel order.

    Raises:
        ImageReadError: naming ``path`` when it is missing, unreadable or not an image.
        ValueError: for an unknown ``fmt``.
    """
    if fmt not in ("RGB", "BGR"):
        raise ValueError(f"image format must be 'RGB' or 'BGR', got {fmt!r}")
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise ImageReadError(f"cannot read image {path!r}: missing, unreadable or corrupt")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if fmt == "RGB" else image


def check_image(image: object, index: int = 0) -> np.ndarray:
    """``image`` as a C-contiguous uint8 ``(H, W, 3)`` array.

    Raises:
        ValueError: naming image ``index`` and what is wrong (type, shape or dtype).
    """
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image {index}: expected a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise ValueError(
            f"image {index}: expected shape (H, W, 3) with H, W > 0, got {image.shape}"
        )
    if image.dtype != np.uint8:
        raise ValueError(f"image {index}: expected dtype uint8 (0-255), got {image.dtype}")
    return np.ascontiguousarray(image)


def cut_chip(
    image: np.ndarray, canvas_box: Sequence[int], factor: float, canvas_cache: dict | None = None
) -> np.ndarray:
    """The canvas window ``canvas_box`` (int XYXY, canvas px) of ``image`` at ``factor``.

    Args:
        image: uint8 or float32 ``(H, W, 3)``.
        canvas_box: the window on the canvas of ``image`` resized by ``factor``.
        factor: resize factor (> 0).
        canvas_cache: optional dict reused across windows of the same image (holds shrunken
            canvases keyed by factor).

    Returns:
        ``(y2 - y1, x2 - x1, 3)`` array of the image's dtype.
    """
    x1, y1, x2, y2 = (int(v) for v in canvas_box)
    h, w = image.shape[:2]
    if factor < 1.0:
        key = float(factor)
        canvas = None if canvas_cache is None else canvas_cache.get(key)
        if canvas is None:
            size = (scaled_length(w, factor), scaled_length(h, factor))
            canvas = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            if canvas_cache is not None:
                canvas_cache[key] = canvas
        return np.ascontiguousarray(canvas[y1:y2, x1:x2])
    shift = 0.5 * (factor - 1.0)
    m = np.array([[factor, 0.0, shift - x1], [0.0, factor, shift - y1]], np.float64)
    return cv2.warpAffine(
        image, m, (x2 - x1, y2 - y1), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
