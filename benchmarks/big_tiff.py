"""Synthetic big images with known boxes, written as tiled pyramidal BigTIFFs.

An image of ``side`` px is a grid of square *cells* of ``cell`` px. A few cells
(``scenes``, at seeded random places) hold a synthetic digits scene
(``sniper.data.synthetic_render.render_scene`` at 1024 px, enlarged by ``cell / 1024``
with bilinear interpolation: its digits grow with it); every other cell is a smooth random
background without objects. The ground truth is the scenes' digit boxes, scaled and offset
into the image (image px, XYXY). The file is a BigTIFF of 512 px zlib tiles with reduced
levels (``1/2, 1/4, ...`` by area averaging, down to ``min_level`` px), written tile by tile:
no array of the image's size is ever held (a row of cells at most).

    python benchmarks/big_tiff.py --side 32768 --output /tmp/big32k.tif
"""

from __future__ import annotations

import argparse
import json
import os
from collections import OrderedDict
from collections.abc import Iterator

import cv2
import numpy as np

TILE = 512


class BigScene:
    """The pixels and boxes of one synthetic big image (module doc).

    Args:
        side: image side (px), a multiple of ``cell``.
        cell: cell side (px), a multiple of 1024.
        scenes: how many cells hold a digits scene.
        seed: seeds the scene places, the scenes and the backgrounds.
    """

    def __init__(self, side: int, cell: int = 4096, scenes: int = 4, seed: int = 0) -> None:
        if side % cell or cell % 1024:
            raise ValueError(f"side {side} must be a multiple of cell {cell}, cell of 1024")
        self.side, self.cell, self.seed = side, cell, seed
        self.grid = side // cell
        rng = np.random.default_rng(seed)
        count = min(scenes, self.grid * self.grid)
        picks = rng.choice(self.grid * self.grid, count, replace=False)
        self.scene_cells = {int(p): 1000 * seed + k for k, p in enumerate(sorted(picks))}
        self._cells: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._cache_cells = max(2 * self.grid, 4)

    def ground_truth(self) -> tuple[np.ndarray, np.ndarray]:
        """``(boxes float32 (N, 4) XYXY image px, classes int64 (N,) 0..9)``."""
        from sniper.data.synthetic_render import render_scene

        boxes, classes = [np.zeros((0, 4), np.float32)], [np.zeros((0,), np.int64)]
        k = self.cell / 1024
        for index, seed in self.scene_cells.items():
            _, b, c = render_scene(seed, 1024)
            ox, oy = (index % self.grid) * self.cell, (index // self.grid) * self.cell
            boxes.append((b * k + np.array([ox, oy, ox, oy])).astype(np.float32))
            classes.append(c.astype(np.int64))
        return np.concatenate(boxes), np.concatenate(classes)

    def _cell(self, level: int, cy: int, cx: int) -> np.ndarray:
        key = (level, cy * self.grid + cx)
        hit = self._cells.get(key)
        if hit is not None:
            self._cells.move_to_end(key)
            return hit
        n = self.cell >> level
        if level == 0:
            index = cy * self.grid + cx
            if index in self.scene_cells:
                from sniper.data.synthetic_render import render_scene

                image = render_scene(self.scene_cells[index], 1024)[0]
                out = cv2.resize(image, (n, n), interpolation=cv2.INTER_LINEAR)
            else:
                rng = np.random.default_rng((self.seed, index))
                low = rng.uniform(60, 200, (8, 8, 3)).astype(np.float32)
                out = cv2.resize(low, (n, n), interpolation=cv2.INTER_CUBIC)
                out = np.clip(out, 0, 255).astype(np.uint8)
        else:
            out = cv2.resize(self._cell(0, cy, cx), (n, n), interpolation=cv2.INTER_AREA)
        self._cells[key] = out
        while len(self._cells) > self._cache_cells:
            self._cells.popitem(last=False)
        return out

    def region(self, level: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """uint8 ``(y1 - y0, x1 - x0, 3)`` of level ``level`` (side ``side >> level``)."""
        n = self.cell >> level
        out = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
        for cy in range(y0 // n, (y1 - 1) // n + 1):
            for cx in range(x0 // n, (x1 - 1) // n + 1):
                c = self._cell(level, cy, cx)
                ya, yb = max(y0, cy * n), min(y1, (cy + 1) * n)
                xa, xb = max(x0, cx * n), min(x1, (cx + 1) * n)
                out[ya - y0 : yb - y0, xa - x0 : xb - x0] = c[
                    ya - cy * n : yb - cy * n, xa - cx * n : xb - cx * n
                ]
        return out

    def tiles(self, level: int) -> Iterator[np.ndarray]:
        """The level's 512 px tiles, row-major (edge tiles padded with zeros)."""
        size = self.side >> level
        for y in range(0, size, TILE):
            for x in range(0, size, TILE):
                tile = np.zeros((TILE, TILE, 3), np.uint8)
                part = self.region(level, x, y, min(size, x + TILE), min(size, y + TILE))
                tile[: part.shape[0], : part.shape[1]] = part
                yield tile

    def levels(self, min_level: int = 1024) -> list[int]:
        """Levels written: 0 and every halving whose side is at least ``min_level`` px and
        whose cells are at least 1 px."""
        out, level = [0], 1
        while (self.side >> level) >= min_level and (self.cell >> level) >= 1:
            out.append(level)
            level += 1
        return out

    def write(self, path: str, min_level: int = 1024) -> None:
        """The pyramidal BigTIFF at ``path`` (written to ``path + '.tmp'``, then renamed)."""
        import tifffile

        levels = self.levels(min_level)
        tmp = path + ".tmp"
        with tifffile.TiffWriter(tmp, bigtiff=True) as tif:
            for i, level in enumerate(levels):
                size = self.side >> level
                tif.write(
                    self.tiles(level),
                    shape=(size, size, 3),
                    dtype=np.uint8,
                    tile=(TILE, TILE),
                    photometric="rgb",
                    compression="zlib",
                    compressionargs={"level": 1},
                    subifds=len(levels) - 1 if i == 0 else None,
                    subfiletype=1 if i else 0,
                )
        os.replace(tmp, path)


def write_big_tiff(path: str, side: int, cell: int = 4096, scenes: int = 4, seed: int = 0) -> dict:
    """Write the image (unless ``path`` and its ``.json`` exist) and its ground truth json
    ``path + '.json'`` (``{"side", "cell", "boxes", "classes"}``); returns that dict."""
    meta_path = path + ".json"
    scene = BigScene(side, cell, scenes, seed)
    boxes, classes = scene.ground_truth()
    meta = {
        "side": side,
        "cell": cell,
        "scenes": scenes,
        "seed": seed,
        "boxes": boxes.tolist(),
        "classes": classes.tolist(),
    }
    if os.path.exists(path) and os.path.exists(meta_path):
        with open(meta_path) as f:
            if json.load(f) == meta:
                return meta
    scene.write(path)
    with open(meta_path + ".tmp", "w") as f:
        json.dump(meta, f)
    os.replace(meta_path + ".tmp", meta_path)
    return meta


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--side", type=int, required=True)
    parser.add_argument("--cell", type=int, default=4096)
    parser.add_argument("--scenes", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    meta = write_big_tiff(args.output, args.side, args.cell, args.scenes, args.seed)
    print(f"{args.output}: {args.side} px, {len(meta['boxes'])} boxes")


if __name__ == "__main__":
    main()
