"""Drawing instance masks: decoding each RLE on its box (`sniper.rle_window`, what
`sniper.visualization_dets.draw_detections` does) against decoding it to the full image
(`pycocotools.mask.decode`, then blend and outline on the image-sized mask).

A gray ``--size`` x ``--size`` image with ``--instances`` disks of radius 8..40 px (COCO RLE,
encoded from their box-sized patches by `sniper.data.patch_rle.patch_to_rle`). Both
contenders draw the masks only (fill at 0.5 and outline, in the same order): the window one
with `sniper.visualization_dets._draw_mask`, the per-mask step of `draw_detections`. For
each: seconds to draw all masks and the peak of numpy / Python allocations while drawing
(``tracemalloc``; the output image excluded), printed side by side with the ratios and the
machine. The two drawings are checked to be identical.

    python benchmarks/bench_mask_drawing.py [--size 4000] [--instances 300]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import tracemalloc
from collections.abc import Callable

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from sniper.data.patch_rle import patch_to_rle
from sniper.visualization_dets import _draw_mask, class_color


def _scene(size: int, n: int, seed: int = 0) -> tuple[np.ndarray, list[dict], np.ndarray]:
    """(image, RLEs, boxes XYXY image px) of ``n`` random disks."""
    rng = np.random.default_rng(seed)
    rles, boxes = [], []
    for _ in range(n):
        r = int(rng.integers(8, 41))
        x, y = (int(v) for v in rng.integers(0, size - 2 * r, 2))
        yy, xx = np.mgrid[: 2 * r, : 2 * r]
        patch = (xx + 0.5 - r) ** 2 + (yy + 0.5 - r) ** 2 <= r * r
        rles.append(patch_to_rle(patch, x, y, size, size))
        boxes.append([x, y, x + 2 * r, y + 2 * r])
    return np.full((size, size, 3), 90, np.uint8), rles, np.asarray(boxes, np.float32)


def _thickness(image: np.ndarray) -> int:
    return max(1, int(round(max(image.shape[:2]) / 600)))  # as draw_detections


def _draw_window(image: np.ndarray, rles: list[dict], classes: np.ndarray) -> np.ndarray:
    """Every mask decoded on its bounding box only (`draw_detections`' mask step)."""
    out = image.copy()
    for rle, cls in zip(rles, classes, strict=True):
        _draw_mask(out, rle, class_color(int(cls)), 0.5, _thickness(image))
    return out


def _draw_full(image: np.ndarray, rles: list[dict], classes: np.ndarray) -> np.ndarray:
    """The contender: every mask decoded to an (H, W) array, blended and outlined there."""
    out = image.copy()
    thick = _thickness(image)
    for rle, cls in zip(rles, classes, strict=True):
        full = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
        m = full.astype(bool)
        color = class_color(int(cls))
        out[m] = np.round(out[m] * 0.5 + np.asarray(color, np.float32) * 0.5).astype(np.uint8)
        contours, _ = cv2.findContours(full, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, color, thick)
    return out


def _measure(fn: Callable[[], np.ndarray], image_bytes: int) -> tuple[float, float, np.ndarray]:
    """(seconds, peak MiB of allocations beyond the output image, result)."""
    tracemalloc.start()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return seconds, max(0, peak - image_bytes) / 2**20, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=4000, help="image side in px")
    parser.add_argument("--instances", type=int, default=300, help="number of masks")
    args = parser.parse_args()
    if args.size < 100 or args.instances < 1:
        parser.error("--size must be >= 100 and --instances >= 1")
    image, rles, _ = _scene(args.size, args.instances)
    classes = np.arange(len(rles)) % 7
    t_win, m_win, a = _measure(lambda: _draw_window(image, rles, classes), image.nbytes)
    t_full, m_full, b = _measure(lambda: _draw_full(image, rles, classes), image.nbytes)
    same = float(np.mean((a == b).all(-1)))
    print(
        f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
        f"python {platform.python_version()}, numpy {np.__version__}"
    )
    print(f"image {args.size}x{args.size}, {args.instances} masks; equal pixels: {same:.6f}")
    print(f"{'contender':<28}{'seconds':>10}{'peak MiB':>12}")
    print(f"{'window decode (rle_window)':<28}{t_win:>10.3f}{m_win:>12.1f}")
    print(f"{'full-image decode':<28}{t_full:>10.3f}{m_full:>12.1f}")
    ratio_mem = m_full / max(m_win, 1e-6)
    print(f"full / window: time x{t_full / t_win:.1f}, peak memory x{ratio_mem:.1f}")


if __name__ == "__main__":
    main()
