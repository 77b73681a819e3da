"""AutoFocus on images too big for memory: windowed reads against the in-memory path and SAHI.

For each ``--sizes`` side, a synthetic pyramidal BigTIFF with known boxes
(``big_tiff.py``: 4096 px cells, ``--scenes`` of them holding a digits scene enlarged 4x,
the others smooth background) is written once to ``--workdir``. Then each contender runs
in its own fresh process (so its peak RSS is its own) on that one file:

* ``af-windowed``: the AutoFocus cascade on ``sniper.sources.TiffSource`` (the coarse scale
  from a reduced level, FocusChips read tile by tile; the image is never loaded);
* ``af-memory``: the same cascade on the whole image read with ``tifffile.imread``;
* ``sahi``: SAHI ``get_sliced_prediction`` (``peer_engines.sahi_tool``: 512 px slices, 0.2
  overlap, the full-image pass, GREEDYNMM / IOS 0.5) on the whole image read into memory,
  at the cascade's finest scale (SAHI has no windowed reading).

The scenes' digits are 4x the size of the training images', so the scales are the model's
(``[512, 512]``-ish 0.5x, 1x, 2x on 1024 px images) divided by 4: AUTOFOCUS.SCALES
``[0.125, 0.25, 0.5]``, its valid ranges and BORDER_DELTA times 4, SNIPER.TEST_SCALES the
same factors (SAHI's slicing scale is the finest, 0.5).

Per contender and size: box COCO AP / AP50 / APs / APm / APl against the planted boxes,
end-to-end seconds (opening or reading the file included), network-input megapixels, peak
RSS (``VmHWM``) and the RSS after the model was built (the part the image cannot explain).
Printed as a table; ``--output`` gets ``bench_big_images.json``.

    python benchmarks/bench_big_images.py \\
        --config-file configs/autofocus/synthetic_mobilenet.yaml \\
        --weights output/autofocus_synthetic_mobilenet/model_final.pth \\
        [--sizes 4096 16384 32768] [--sahi-max-side 16384] [--contenders af-windowed ...] \\
        [--workdir /tmp/big] [KEY VALUE ...]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

CONTENDERS = ("af-windowed", "af-memory", "sahi")
CONTENT_SCALE = 4  # the scenes' enlargement (big_tiff.BigScene: cell 4096 / 1024)
METRICS = ("AP", "AP50", "APs", "APm", "APl")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", default="configs/autofocus/synthetic_mobilenet.yaml")
    parser.add_argument("--weights", default="", help="trained AutoFocus model (MODEL.WEIGHTS)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 16384, 32768])
    parser.add_argument("--scenes", type=int, default=4, help="cells holding a scene")
    parser.add_argument(
        "--contenders", nargs="+", default=list(CONTENDERS), choices=CONTENDERS, help="rows to run"
    )
    parser.add_argument(
        "--sahi-max-side", type=int, default=16384, help="run SAHI up to this side (time)"
    )
    parser.add_argument(
        "--memory-max-side", type=int, default=32768, help="run af-memory up to this side"
    )
    parser.add_argument("--workdir", default="/tmp/sniper_big_images")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--output", default="", help="folder for bench_big_images.json")
    parser.add_argument("--child", nargs=2, metavar=("CONTENDER", "TIFF"), help=argparse.SUPPRESS)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE")
    return parser.parse_args(argv)


def big_image_opts(weights: str) -> list[str]:
    """Config overrides for scenes enlarged ``CONTENT_SCALE`` times (module doc)."""
    k = CONTENT_SCALE
    factors = [0.5 / k, 1.0 / k, 2.0 / k]
    ranges = [[80 * k, -1], [20 * k, 192 * k], [-1, 56 * k]]
    opts = [
        "AUTOFOCUS.SCALES", str(factors),
        "AUTOFOCUS.VALID_RANGES", str(ranges),
        "AUTOFOCUS.BORDER_DELTA", str(10.0 * k),
        "SNIPER.TEST_SCALES", str(factors[::-1]),
        "SNIPER.TEST_VALID_RANGES", str(ranges[::-1]),
    ]  # fmt: skip
    return opts + (["MODEL.WEIGHTS", weights] if weights else [])


def peak_rss_mib() -> float:
    """This process's peak resident set (``VmHWM``), MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def score(meta: dict, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> dict:
    """COCO box AP (percent) of one image's detections against ``meta``'s planted boxes."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_boxes = np.asarray(meta["boxes"], np.float64).reshape(-1, 4)
    side = int(meta["side"])
    anns = [
        {
            "id": i + 1,
            "image_id": 1,
            "category_id": int(c) + 1,
            "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
            "area": float((b[2] - b[0]) * (b[3] - b[1])),
            "iscrowd": 0,
        }
        for i, (b, c) in enumerate(zip(gt_boxes.tolist(), meta["classes"], strict=True))
    ]
    gt = COCO()
    gt.dataset = {
        "images": [{"id": 1, "width": side, "height": side}],
        "annotations": anns,
        "categories": [{"id": k + 1, "name": str(k)} for k in range(10)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        if len(boxes) == 0:
            return dict.fromkeys(METRICS, 0.0)
        dets = [
            {
                "image_id": 1,
                "category_id": int(c) + 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": s,
            }
            for (x1, y1, x2, y2), s, c in zip(
                boxes.tolist(), scores.tolist(), classes.tolist(), strict=True
            )
        ]
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {m: 100.0 * float(ev.stats[i]) for i, m in zip((0, 1, 3, 4, 5), METRICS, strict=True)}


def run_child(args: argparse.Namespace) -> dict:
    """One contender on one file, in this process (prints its row as the last line)."""
    import peer_engines
    import torch

    from autofocus.cascade import AutoFocusCascade
    from autofocus.config import setup_cfg
    from autofocus.modeling import build_autofocus_model
    from sniper.modeling.state_dict import load_model_weights
    from sniper.sources import TiffSource

    key, path = args.child
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    cfg = setup_cfg(args.config_file, big_image_opts(args.weights) + list(args.opts))
    torch.manual_seed(0)
    model = build_autofocus_model(cfg).eval()
    if cfg.MODEL.WEIGHTS:
        load_model_weights(model, cfg.MODEL.WEIGHTS)
    with open(path + ".json") as f:
        meta = json.load(f)
    base = peak_rss_mib()
    start = time.perf_counter()
    with torch.no_grad():
        if key == "af-windowed":
            cascade = AutoFocusCascade.from_config(cfg, model)
            with TiffSource(path) as src:
                out = cascade([src])[0]
        elif key == "af-memory":
            import tifffile

            image = tifffile.imread(path)  # level 0, RGB
            if cfg.INPUT.FORMAT == "BGR":
                image = np.ascontiguousarray(image[:, :, ::-1])
            out = AutoFocusCascade.from_config(cfg, model)([image])[0]
        elif key == "sahi":
            import tifffile

            image = tifffile.imread(path)
            if cfg.INPUT.FORMAT == "BGR":
                image = np.ascontiguousarray(image[:, :, ::-1])
            tool = peer_engines.build_tool("sahi", cfg, model)
            out = tool.convert(tool.call(image), image)
            out["pixels"] = tool.counter.pixels
        else:
            raise SystemExit(f"unknown contender {key!r}")
    seconds = time.perf_counter() - start
    boxes = np.asarray(out["boxes"], np.float32).reshape(-1, 4)
    row = {
        "contender": key,
        "side": int(meta["side"]),
        **score(meta, boxes, np.asarray(out["scores"]), np.asarray(out["classes"])),
        "seconds": seconds,
        "mpix": float(out["pixels"]) / 1e6,
        "pixel_fraction": float(out.get("pixel_fraction", float("nan"))),
        "peak_rss_mib": peak_rss_mib(),
        "model_rss_mib": base,
        "detections": len(boxes),
        "objects": len(meta["boxes"]),
    }
    print(json.dumps(row))
    return row


def run_contender(args: argparse.Namespace, key: str, path: str) -> dict:
    """``run_child`` in a fresh process; a failure becomes a row with ``skipped``."""
    here = os.path.dirname(os.path.abspath(__file__))
    cmd = [sys.executable, os.path.abspath(__file__), "--config-file", args.config_file]
    cmd += ["--weights", args.weights, "--threads", str(args.threads), "--child", key, path]
    cmd += list(args.opts)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([here, *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
        return {"contender": key, "skipped": f"exit {proc.returncode}: {' '.join(tail)}"}
    return json.loads(lines[-1])


def print_table(rows: list[dict]) -> None:
    head = (
        f"{'side':>6} {'contender':<12} {'AP':>5} {'AP50':>5} {'s/img':>7} {'Mpx':>7} "
        f"{'frac':>6} {'peak RSS':>9} {'model':>6}"
    )
    print(head)
    for r in rows:
        if "skipped" in r:
            print(f"{r.get('side', ''):>6} {r['contender']:<12} skipped: {r['skipped']}")
            continue
        print(
            f"{r['side']:>6} {r['contender']:<12} {r['AP']:>5.1f} {r['AP50']:>5.1f} "
            f"{r['seconds']:>7.1f} {r['mpix']:>7.1f} {r['pixel_fraction']:>6.3f} "
            f"{r['peak_rss_mib']:>7.0f}Mi {r['model_rss_mib']:>5.0f}Mi"
        )


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    if args.opts[:1] == ["--"]:
        args.opts = args.opts[1:]
    if args.child:
        return [run_child(args)]
    from big_tiff import write_big_tiff

    os.makedirs(args.workdir, exist_ok=True)
    rows = []
    for side in args.sizes:
        path = os.path.join(args.workdir, f"big_{side}.tif")
        start = time.perf_counter()
        write_big_tiff(path, side, scenes=args.scenes)
        print(
            f"{path}: {os.path.getsize(path) / 2**20:.0f} MiB ({time.perf_counter() - start:.0f} s)"
        )
        for key in args.contenders:
            limit = {"sahi": args.sahi_max_side, "af-memory": args.memory_max_side}.get(key)
            if limit is not None and side > limit:
                rows.append({"contender": key, "side": side, "skipped": f"side > {limit} (flag)"})
                continue
            row = run_contender(args, key, path)
            row.setdefault("side", side)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{platform.node()} ({platform.machine()}, {os.cpu_count()} cores), {args.weights}")
    print_table(rows)
    if args.output:
        os.makedirs(args.output, exist_ok=True)
        out = os.path.join(args.output, "bench_big_images.json")
        with open(out + ".tmp", "w") as f:
            json.dump({"rows": rows, "machine": platform.platform()}, f, indent=1)
        os.replace(out + ".tmp", out)
    return rows


if __name__ == "__main__":
    main()
