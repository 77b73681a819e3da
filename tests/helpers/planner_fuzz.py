"""Fuzzer of the public planner API: random and adversarial calls of every public function.

Every call must return, or raise a ``ValueError`` whose text names the argument it was about
(the name is known for each adversarial case); any other exception, a crash of the process or
a call over ``--max-seconds`` of CPU time (all threads) is a failure. Run as a script (one
batch per process):

    python tests/helpers/planner_fuzz.py --seed 0 --calls 20000

prints one JSON line ``{"calls": N, "failures": [...], "slowest": s}`` and exits with status 1
when there is a failure. ``tests/chipping/test_fuzz.py`` runs batches in subprocesses, so a
segfault or an abort is seen as a non-zero or signal exit.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable

import numpy as np

from chipping import planner

BAD_NUMBERS = [
    None,
    "3",
    b"1",
    True,
    False,
    np.bool_(True),
    math.nan,
    math.inf,
    -math.inf,
    -1,
    0,
    2**31,
    2**63,
    2**64,
    10**400,
    -(2**63),
    1e300,
    -1e-300,
    0.5,
    np.float32(np.nan),
    np.int64(-5),
    np.uint64(2**64 - 1),
    [1],
    (1, 2),
    {},
    object(),
    np.zeros(2),
]
GOOD_INTS = [0, 1, 2, 7, 16, 31, 64, 255, np.int32(3), np.int64(8), 4.0, np.float64(2.0)]
GOOD_REALS = [0.0, 0.25, 0.5, 1.0, np.float32(0.3), np.float64(0.7), 1, np.int16(0)]

# An adversarial case: (function, kwargs, the name that must appear in a ValueError's text).
Case = tuple[Callable, dict, str]


def _boxes(rng: np.random.Generator, h: int, w: int, n: int) -> np.ndarray:
    x1 = rng.uniform(0, w, n)
    y1 = rng.uniform(0, h, n)
    x2 = np.minimum(x1 + rng.exponential(w / 4 + 1, n), w)
    y2 = np.minimum(y1 + rng.exponential(h / 4 + 1, n), h)
    return np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)


def _scales(rng: np.random.Generator) -> tuple[list, list]:
    scales, ranges = [], []
    for _ in range(int(rng.integers(1, 4))):
        if rng.random() < 0.5:
            scales.append(float(rng.uniform(0.05, 3.0)))
        else:
            scales.append((int(rng.integers(8, 900)), int(rng.choice([-1, rng.integers(8, 1400)]))))
        lo = float(rng.choice([-1, rng.uniform(0, 100)]))
        hi = float(rng.choice([-1, max(lo, 0) + rng.uniform(1, 300)]))
        ranges.append((lo, hi))
    return scales, ranges


def _random_setting(rng: np.random.Generator) -> dict:
    h, w = int(rng.integers(1, 1200)), int(rng.integers(1, 1200))
    scales, ranges = _scales(rng)
    chip = int(rng.choice([32, 64, 128, 256, 512]))
    stride = int(rng.integers(chip // 4, chip + 1))
    return dict(
        h=h,
        w=w,
        boxes=_boxes(rng, h, w, int(rng.integers(0, 30))),
        scales=scales,
        ranges=ranges,
        chip=chip,
        stride=stride,
        jitter=bool(rng.random() < 0.5),
        seed=int(rng.integers(0, 2**63)),
    )


def random_calls(rng: np.random.Generator) -> list[Callable[[], object]]:
    """Valid random calls of every public function (they must all succeed)."""
    s = _random_setting(rng)
    grid = (s["scales"], s["ranges"], s["chip"], s["stride"])
    size = (s["h"], s["w"])

    def positive():
        return planner.plan_positive_chips(s["boxes"], size, *grid, jitter=s["jitter"])

    def chain():
        pos = planner.plan_positive_chips(s["boxes"], size, *grid, seed=s["seed"])
        props = _boxes(rng, s["h"], s["w"], int(rng.integers(0, 60)))
        mins = [int(rng.integers(0, 5)) for _ in s["scales"]]
        planner.plan_negative_chips(props, size, pos, *grid, min_proposals=mins)
        crowd = rng.random(len(s["boxes"])) < 0.2
        a = planner.assign_boxes(pos, s["boxes"], crowd=crowd, min_inside=float(rng.random()))
        return a

    def batch():
        boxes = [s["boxes"], _boxes(rng, 50, 70, 3)]
        sizes = [size, (50, 70)]
        pos = planner.plan_positive_chips_batch(boxes, sizes, *grid, num_threads=2)
        planner.plan_negative_chips_batch(
            boxes, sizes, pos, *grid, min_proposals=[0] * len(s["scales"]), num_threads=1
        )
        return planner.assign_boxes_batch(pos, boxes)

    def focus():
        m = (rng.random((int(rng.integers(0, 40)), int(rng.integers(0, 40)))) ** 4).astype(
            np.float32
        )
        if rng.random() < 0.002:  # a large adversarial map, any dilation / minimum size
            h, w = (int(v) for v in rng.integers(1, 1025, 2))
            big = np.zeros((h, w), np.float32)
            pattern = int(rng.integers(0, 4))
            if pattern == 0:
                big[::2, ::2] = 1  # every other cell: one rectangle each
            elif pattern == 1:
                big[(np.add.outer(np.arange(h), np.arange(w)) % 2) == 0] = 1  # checkerboard
            elif pattern == 2:
                big[:, ::2] = 1  # stripes
            else:
                big[:] = rng.random((h, w), np.float32)
            side = max(h, w)
            planner.focus_chips(
                big, 0.5, int(rng.integers(0, side + 1)), int(rng.integers(1, side + 1))
            )
        rects = planner.focus_chips(m, float(rng.random()), int(rng.integers(0, 5)), 4)
        planner.focus_chips_batch([m, m.T], 0.5, 1, int(rng.integers(0, 8)))
        return planner.focus_chips_to_image(rects, 16, float(rng.uniform(0.1, 3)), size)

    def scalars():
        f = planner.scale_factor(s["scales"][0], size)
        planner.scaled_size(size, f)
        planner.parse_scales(s["scales"])
        return planner.image_seed(s["seed"], int(rng.integers(0, 1000)))

    return [positive, chain, batch, focus, scalars]


def adversarial_cases(rng: np.random.Generator) -> list[Case]:
    """One bad value in an otherwise good call, with the argument name the error must name."""
    good = np.array([[10, 10, 50, 50]], np.float32)
    size = (480, 640)
    pos = planner.plan_positive_chips(good, size)
    bad = BAD_NUMBERS[int(rng.integers(len(BAD_NUMBERS)))]
    fp, fn, fa = planner.plan_positive_chips, planner.plan_negative_chips, planner.assign_boxes
    fb = planner.plan_positive_chips_batch
    cases: list[Case] = [
        (fp, dict(boxes=[], image_size=(bad, 640)), "image_size"),
        (fp, dict(boxes=[], image_size=bad), "image_size"),
        (fp, dict(boxes=good, image_size=size, chip_size=bad), "chip_size"),
        (fp, dict(boxes=good, image_size=size, stride=bad), "stride"),
        (fp, dict(boxes=good, image_size=size, seed=bad), "seed"),
        (fp, dict(boxes=good, image_size=size, jitter=bad), "jitter"),
        (fp, dict(boxes=good, image_size=size, scales=[bad], valid_ranges=[(-1, -1)]), "scales"),
        (
            fp,
            dict(boxes=good, image_size=size, scales=[(bad, 512)], valid_ranges=[(0, -1)]),
            "scales",
        ),
        (
            fp,
            dict(boxes=good, image_size=size, scales=[1.0], valid_ranges=[(bad, -1)]),
            "valid_ranges",
        ),
        (
            fp,
            dict(boxes=good, image_size=size, scales=[1.0], valid_ranges=[(0, bad)]),
            "valid_ranges",
        ),
        (fp, dict(boxes=np.array([[0, 0, bad, 5]], dtype=object), image_size=size), "boxes"),
        (fp, dict(boxes=np.zeros((int(rng.integers(1, 5)), 0)), image_size=size), "boxes"),
        (fp, dict(boxes=np.zeros((0, int(rng.integers(5, 9)))), image_size=size), "boxes"),
        (fb, dict(boxes=[good], image_sizes=[size], num_threads=bad), "num_threads"),
        (fb, dict(boxes=[np.zeros((0, 4))], image_sizes=[[bad, 5]]), "image_sizes"),
        (fb, dict(boxes=[good], image_sizes=[size], seeds=np.array([-1])), "seeds"),
        (
            fn,
            dict(proposals=good, image_size=size, positive=pos, min_proposals=[bad, 1, 1]),
            "min_proposals",
        ),
        (fn, dict(proposals=good, image_size=size, positive=bad), "positive"),
        (fn, dict(proposals=good, image_size=size, positive=pos, jitter=bad), "jitter"),
        (fn, dict(proposals=good, image_size=(240, 320), positive=pos), "positive"),
        (fa, dict(chips=pos, boxes=good, min_inside=bad), "min_inside"),
        (fa, dict(chips=pos, boxes=good, min_box_size=bad), "min_box_size"),
        (fa, dict(chips=pos, boxes=good, crowd=[bad]), "crowd"),
        (planner.focus_chips, dict(prob_map=np.zeros((4, 4)), threshold=bad), "threshold"),
        (
            planner.focus_chips,
            dict(prob_map=np.zeros((4, 4)), threshold=0.5, dilation=bad),
            "dilation",
        ),
        (
            planner.focus_chips,
            dict(prob_map=np.zeros((4, 4)), threshold=0.5, min_size=bad),
            "min_size",
        ),
        (
            planner.focus_chips_batch,
            dict(prob_maps=[np.zeros((2, 2))], threshold=0.5, num_threads=bad),
            "num_threads",
        ),
        (
            planner.focus_chips_to_image,
            dict(rects=[[0, 0, 1, 1]], stride=bad, factor=1.0, image_size=size),
            "stride",
        ),
        (
            planner.focus_chips_to_image,
            dict(rects=[[0, 0, 1, 1]], stride=16, factor=bad, image_size=size),
            "factor",
        ),
        (
            planner.focus_chips_to_image,
            dict(rects=[[0, 0, 1, 1]], stride=16, factor=1.0, image_size=size, offset=(bad, 0)),
            "offset",
        ),
        (planner.scaled_size, dict(image_size=size, factor=bad), "factor"),
        (planner.scaled_size, dict(image_size=(bad, bad), factor=1.0), "image_size"),
        (planner.scale_factor, dict(scale=bad, image_size=size), "scales"),
        (planner.image_seed, dict(seed=bad, index=0), "seed"),
        (planner.image_seed, dict(seed=0, index=bad), "index"),
        (planner.parse_scales, dict(scales=[bad]), "scales"),
        (
            planner.ChipPlan,
            dict(
                image_index=[0],
                scale_index=[bad],
                chips_scaled=[[0, 0, 8, 8]],
                factors=[1.0],
                counts=[1],
                valid_ranges=[[0, 10]],
            ),
            "scale_index",
        ),
        (
            planner.ChipPlan,
            dict(
                image_index=[0],
                scale_index=[0],
                chips_scaled=[[0, 0, 8, 8]],
                factors=[bad],
                counts=[1],
                valid_ranges=[[0, 10]],
            ),
            "factors",
        ),
        (
            planner.ChipPlan,
            dict(
                image_index=[0],
                scale_index=[1],
                chips_scaled=[[0, 0, 8, 8]],
                factors=[1.0],
                counts=[1],
                valid_ranges=[[0, 10]],
            ),
            "scale_index",
        ),
        (
            fa,
            dict(
                chips=planner.ChipPlan._trusted(
                    image_index=pos.image_index,
                    scale_index=pos.scale_index,
                    chips_scaled=pos.chips_scaled,
                    factors=pos.factors,
                    counts=pos.counts,
                    valid_ranges=pos.valid_ranges[:1],
                ),
                boxes=good,
            ),
            "scale_index",
        ),
    ]
    return cases


def run_batch(seed: int, calls: int, max_seconds: float) -> dict:
    """``calls`` calls (half random valid, half adversarial); returns the report dict."""
    rng = np.random.default_rng(seed)
    failures: list[str] = []
    slowest = 0.0
    done = 0
    while done < calls:
        work: list[tuple[Callable[[], object], str | None]] = [(c, None) for c in random_calls(rng)]
        for fn, kwargs, name in adversarial_cases(rng):
            work.append(((lambda fn=fn, kwargs=kwargs: fn(**kwargs)), name))
        for call, name in work:
            t = time.process_time()  # CPU time of all threads: robust to a loaded machine
            try:
                call()
                ok = True  # an adversarial value may be valid for that argument (e.g. 0)
            except ValueError as e:
                ok = name is not None and name in str(e)
                if not ok:
                    failures.append(f"ValueError not naming {name!r}: {e}")
            except Exception as e:  # noqa: BLE001 - any other exception is the failure
                failures.append(f"{type(e).__name__} (expected ValueError naming {name}): {e}")
            elapsed = time.process_time() - t
            slowest = max(slowest, elapsed)
            if elapsed > max_seconds:
                failures.append(f"a call took {elapsed:.2f} s (case for {name})")
            done += 1
        if len(failures) > 20:
            break
    return {"calls": done, "failures": failures[:20], "slowest": slowest}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--calls", type=int, default=10_000)
    ap.add_argument("--max-seconds", type=float, default=1.0)
    args = ap.parse_args()
    report = run_batch(args.seed, args.calls, args.max_seconds)
    print(json.dumps(report))
    sys.exit(1 if report["failures"] else 0)


if __name__ == "__main__":
    main()
