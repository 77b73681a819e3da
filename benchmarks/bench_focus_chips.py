"""FocusChips speed on adversarial maps: the old quadratic merge and the new one, in one run.

Maps (float32, threshold 0.5): every other cell set (``m[::2, ::2] = 1``), a checkerboard,
stripes every other column, a full map, anti-diagonals ``(x + y) % 3 == 0`` (nested boxes)
and random maps; each with dilations 1, 3 and the map size, and minimum sizes 1, 2, 16 and
the map size. ``new`` is the whole compiled ``chipping.focus_chips`` call (one thread),
worst over the parameters. ``old`` is the previous all-pairs merge alone (the copy below,
numpy-vectorised, so faster than a pure loop), timed on the every-other-cell rectangles
(1x1 cells grown to ``min_size``: 2 touches, 3 chain-merges) where it finishes within
``--old-limit`` rectangles; it is skipped, never estimated, above that.

    python benchmarks/bench_focus_chips.py [--sizes 600 1000 2048 4096] [--old-limit 100000]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from chipping import planner


def old_merge(rects: np.ndarray) -> np.ndarray:
    """The previous merge (chipping/csrc/focus_chips.cpp before the rewrite), vectorised per
    row i: merge the first overlapping j > i into i, restart after i; repeat until stable."""
    r = [np.asarray(c, dtype=np.int64) for c in rects.T]
    alive = np.ones(len(rects), bool)
    changed = True
    while changed:
        changed = False
        for i in range(len(rects)):
            if not alive[i]:
                continue
            while True:
                ov = (
                    alive[i + 1 :]
                    & (np.minimum(r[2][i + 1 :], r[2][i]) > np.maximum(r[0][i + 1 :], r[0][i]))
                    & (np.minimum(r[3][i + 1 :], r[3][i]) > np.maximum(r[1][i + 1 :], r[1][i]))
                )
                hit = np.flatnonzero(ov)
                if not len(hit):
                    break
                j = i + 1 + hit[0]
                for k, f in ((0, min), (1, min), (2, max), (3, max)):
                    r[k][i] = f(r[k][i], r[k][j])
                alive[j] = False
                changed = True
    return np.stack(r, axis=1)[alive]


def grown_cells(n: int, min_size: int) -> np.ndarray:
    """The rectangles of the every-other-cell map before merging: cell c grown to min_size."""
    c = np.arange(0, n, 2)
    lo = np.clip(c - (min_size - 1) // 2, 0, n - min_size)
    ys, xs = np.meshgrid(lo, lo, indexing="ij")
    return np.stack([xs, ys, xs + min_size, ys + min_size], axis=-1).reshape(-1, 4)


def maps(n: int, rng: np.random.Generator):
    yy, xx = np.mgrid[:n, :n]
    every = np.zeros((n, n), np.float32)
    every[::2, ::2] = 1
    yield "every-other", every
    yield "checker", ((yy + xx) % 2).astype(np.float32)
    yield "stripes", (xx % 2 == 0).astype(np.float32)
    yield "full", np.ones((n, n), np.float32)
    yield "diagonals", ((yy + xx) % 3 == 0).astype(np.float32)
    for d in (0.01, 0.1, 0.5):
        yield f"random {d}", (rng.random((n, n)) < d).astype(np.float32)


def timed(fn, *args) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[600, 1000, 2048, 4096])
    ap.add_argument("--old-limit", type=int, default=100_000, help="most rects for the old merge")
    args = ap.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}; one thread; wall seconds"
    )
    rng = np.random.default_rng(0)
    print("\nevery-other-cell map, merge of the grown cells: old all-pairs vs new whole call")
    print(f"{'size':>6} {'min':>4} {'rects':>9} {'out':>9} {'old s':>9} {'new s':>8} {'ratio':>8}")
    for n in args.sizes:
        prob = np.zeros((n, n), np.float32)
        prob[::2, ::2] = 1
        for min_size in (2, 3):
            rects = grown_cells(n, min_size)
            t_new, new = timed(planner.focus_chips, prob, 0.5, 1, min_size)
            if len(rects) <= args.old_limit:
                t_old, old = timed(old_merge, rects)
                old = old[np.lexsort((old[:, 2], old[:, 3], old[:, 0], old[:, 1]))]
                assert np.array_equal(old, new), "old and new merges disagree"
                old_s, ratio = f"{t_old:9.3f}", f"{t_old / t_new:7.0f}x"
            else:
                old_s, ratio = f"{'skipped':>9}", f"{'-':>8}"
            print(
                f"{n:6d} {min_size:4d} {len(rects):9d} {len(new):9d} {old_s} {t_new:8.3f} {ratio}"
            )
    print("\nnew, worst over dilation (1, 3, n) x min_size (1, 2, 16, n), whole call")
    print(f"{'size':>6} {'map':>12} {'worst s':>8} {'at (d, k)':>14}")
    for n in args.sizes:
        worst = 0.0
        for name, prob in maps(n, rng):
            slowest, at = 0.0, None
            for dilation in (1, 3, n):
                for min_size in (1, 2, 16, n):
                    t, _ = timed(planner.focus_chips, prob, 0.5, dilation, min_size)
                    if t > slowest:
                        slowest, at = t, (dilation, min_size)
            worst = max(worst, slowest)
            print(f"{n:6d} {name:>12} {slowest:8.3f} {str(at):>14}")
        print(f"{n:6d} {'all':>12} {worst:8.3f}")


if __name__ == "__main__":
    main()
