"""Peak memory of predicting instance masks on a large image: the default path (28 x 28
patches + boxes, COCO RLE written from each box window) against pasting full ``(N, H, W)``
masks, each case run in its own process.

Every case runs ``python benchmarks/bench_mask_memory.py --child ...`` in a fresh process
that makes one random uint8 ``size x size`` image and runs ``MultiScaleInference`` (one
scale, 1.0x, untiled: one model call) with a *fake* detector that returns ``N`` detections
with mask patches (random boxes of 16..400 px, smooth blob patches plus noise, fixed seed;
no network runs, so the figures are the mask path's own plus the image and its one
network input), then reports its peak resident set size (``getrusage`` ``ru_maxrss``) and
the wall time. Contenders:

- ``rle``: the engine's default output (``mask_patches``, ``mask_boxes``, ``masks`` RLE),
  no ``(N, H, W)`` array anywhere;
- ``full-bool``: the same, then every mask pasted into a full-image bool array
  ``(N, H, W)`` (``sniper.inference.mask_patches.paste_patch`` into a written array: the
  cheapest full-image form, 1 byte per pixel);
- ``full-torchvision``: the same, then torchvision's
  ``roi_heads.paste_masks_in_image`` (what Mask R-CNN returns: float32 ``(N, 1, H, W)``).

Full pasting of 2,000 masks of an 8000 x 8000 image needs 2,000 x 64 MB (bool) or 256 MB
(float32) and cannot run here: those contenders run at small ``N`` (``--full-counts``) and
a least-squares line through their peaks is extrapolated to ``--instances``, labelled as
such.

    python benchmarks/bench_mask_memory.py --size 8000 --instances 2000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _fake_detector(count: int, size: int, m: int = 28):
    import numpy as np
    import torch

    rng = np.random.default_rng(0)
    wh = rng.uniform(16, 400, (count, 2))
    xy = rng.uniform(0, size - wh)
    boxes = torch.from_numpy(np.concatenate([xy, xy + wh], 1).astype(np.float32))
    yy, xx = np.mgrid[:m, :m] / (m - 1)
    blob = np.exp(-((xx - 0.5) ** 2 + (yy - 0.5) ** 2) / 0.1)
    patches = blob[None] * rng.uniform(0.6, 1.2, (count, 1, 1)) + rng.random((count, m, m)) * 0.1
    patches = torch.from_numpy(patches.astype(np.float32))
    scores = torch.from_numpy(rng.uniform(0.05, 1.0, count).astype(np.float32))

    class Fake(torch.nn.Module):
        def forward(self, images):
            return [
                {
                    "boxes": boxes,
                    "scores": scores,
                    "labels": torch.ones(count, dtype=torch.int64),
                    "mask_patches": patches,
                }
                for _ in images
            ]

    return Fake()


def child(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from sniper.inference import MultiScaleInference
    from sniper.inference.mask_patches import paste_patch

    torch.set_num_threads(args.threads)
    engine = MultiScaleInference(
        _fake_detector(args.count, args.size),
        scales=[1.0],
        valid_ranges=[[-1, -1]],
        merge="nms",
        top_k=0,
        max_pixels=0,
        max_pixels_per_batch=args.size * args.size,
    )
    image = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), np.uint8)
    before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    (out,) = engine([image])
    n = len(out["masks"])
    if args.contender == "full-bool":
        full = np.empty((n, args.size, args.size), bool)
        for k in range(n):
            full[k] = False  # written, as any use of a full mask does (np.zeros is lazy)
            local, (x0, y0) = paste_patch(
                out["mask_patches"][k], out["mask_boxes"][k], (args.size, args.size)
            )
            full[k, y0 : y0 + local.shape[0], x0 : x0 + local.shape[1]] = local
    elif args.contender == "full-torchvision":
        from torchvision.models.detection.roi_heads import paste_masks_in_image

        full = paste_masks_in_image(
            torch.from_numpy(out["mask_patches"])[:, None],
            torch.from_numpy(out["mask_boxes"]),
            (args.size, args.size),
        )
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "peak_gib": peak_kib / 2**20,
                "before_gib": before_kib / 2**20,
                "masks": n,
                "seconds": seconds,
            }
        )
    )


def run_case(args: argparse.Namespace, contender: str, count: int) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--contender", contender]
    cmd += ["--size", str(args.size), "--count", str(count), "--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
        return {"error": f"exit {proc.returncode}: {' '.join(tail)}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _line(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least-squares ``(intercept, slope)`` of peak GiB against N."""
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points)
    slope = sum((p[0] - mx) * (p[1] - my) for p in points) / sxx
    return my - slope * mx, slope


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=8000, help="image side (px)")
    ap.add_argument("--instances", type=int, default=2000)
    ap.add_argument("--full-counts", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--torchvision-counts", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--output", default="output/bench_mask_memory.json")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--contender", default="rle", help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    print(f"image {args.size} x {args.size}; fake detector (no network); one process per row")
    print(f"{'contender':18} {'N':>6} {'peak RSS':>10} {'before':>8} {'time':>8}")
    rows = []
    plan = [("rle", args.instances)]
    plan += [("full-bool", n) for n in args.full_counts]
    plan += [("full-torchvision", n) for n in args.torchvision_counts]
    for contender, count in plan:
        res = run_case(args, contender, count)
        rows.append({"contender": contender, "count": count, **res})
        if "error" in res:
            print(f"{contender:18} {count:>6} {res['error']}")
            continue
        print(
            f"{contender:18} {count:>6} {res['peak_gib']:>8.2f}Gi {res['before_gib']:>6.2f}Gi "
            f"{res['seconds']:>7.1f}s",
            flush=True,
        )
    rle = next((r for r in rows if r["contender"] == "rle" and "error" not in r), None)
    for contender in ("full-bool", "full-torchvision"):
        pts = [
            (r["count"], r["peak_gib"])
            for r in rows
            if r["contender"] == contender and "error" not in r
        ]
        if len(pts) < 2:
            continue
        a, b = _line(pts)
        at = a + b * args.instances
        ratio = f", {at / rle['peak_gib']:.0f}x the rle peak" if rle else ""
        print(
            f"{contender:18} {args.instances:>6} {at:>8.1f}Gi  EXTRAPOLATED "
            f"({a:.2f} GiB + {b * 1024:.1f} MiB per mask{ratio})"
        )
        rows.append(
            {"contender": contender, "count": args.instances, "peak_gib": at, "extrapolated": True}
        )
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    tmp = args.output + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=1)
    os.replace(tmp, args.output)


if __name__ == "__main__":
    main()
