"""Our inference side by side with the tools users pick today: SAHI and supervision.

One trained model (an AutoFocus detector: it runs every contender) on the first N images of
one dataset (default `synthetic_digits_test2048`), run by (`peer_engines.py`):

* single scale (the middle SNIPER.TEST_SCALES entry), SNIPER at all test scales, our
  uniform tiling at the finest scale (`bench_inference.py`'s three rows);
* SAHI ``get_sliced_prediction`` through `sniper.integrations.sahi_model` at the finest
  scale with its defaults (512 px slices, overlap 0.2, full-image pass on, GREEDYNMM / IOS
  0.5), and with the full-image pass off;
* supervision ``InferenceSlicer`` (its defaults: 640 px slices, 100 px overlap) at the finest
  scale with NMS overlap filtering and with none;
* the AutoFocus cascade at the config's thresholds and at each t of ``--thresholds``.

Per contender: box COCO AP, AP50, APs, APm, APl (`COCOEvaluator`; masks, if the model has
them, are not scored here), network-input pixels and forward passes (network inputs, after
the runner's tiling) per image, seconds per image of the tool's call (its slicing, model
calls and merge; image decoding, the conversion to our dict and the evaluation excluded;
one warm-up image first) and the peak RSS. Each contender runs in its own fresh process
(``--in-process``: all in this one, peak RSS then cumulative). Without sahi / supervision
their rows are skipped with the reason. Printed as a table; ``--output`` gets
`bench_peers.json` and `bench_peers.png` (AP vs pixels and AP vs seconds).

    python benchmarks/bench_peers.py --config-file configs/autofocus/synthetic_mobilenet.yaml \\
        --weights output/autofocus_synthetic_mobilenet/model_final.pth [--num-images 30] \\
        [--dataset synthetic_digits_test2048] [KEY VALUE config overrides]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # peer_engines, bench_inference

THRESHOLDS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.4)
PEERS = {"sahi": "sahi", "sahi-slices": "sahi", "sv-nms": "supervision", "sv-none": "supervision"}
METRICS = ("AP", "AP50", "APs", "APm", "APl")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from autofocus.cli import parse_with_overrides
    from sniper.register_args import add_register_coco_argument

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config-file", default="configs/autofocus/synthetic_mobilenet.yaml")
    ap.add_argument("--weights", default=None, help="MODEL.WEIGHTS (default: the config's)")
    ap.add_argument("--dataset", default="synthetic_digits_test2048")
    ap.add_argument("--num-images", type=int, default=None, help="first N images (all)")
    ap.add_argument("--thresholds", type=float, nargs="*", default=list(THRESHOLDS))
    ap.add_argument("--contenders", nargs="+", default=None, help="keys to run (all)")
    ap.add_argument("--tile", type=int, default=512, help="our tiling: tile px")
    ap.add_argument("--overlap", type=int, default=128, help="our tiling: overlap px")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    ap.add_argument("--in-process", action="store_true", help="no subprocess per contender")
    ap.add_argument("--output", default="output/bench_peers", help="json + png folder")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    add_register_coco_argument(ap)
    args = parse_with_overrides(ap, argv)
    if args.weights is not None:
        args.opts += ["MODEL.WEIGHTS", args.weights]
    return args


def setup(args: argparse.Namespace) -> tuple[Any, Any, list[dict]]:
    """``(cfg, model, records)``: the one model (seeded, so random weights agree across
    processes) and the first ``--num-images`` records of ``--dataset``."""
    import torch

    from autofocus.config import setup_cfg
    from autofocus.modeling import build_autofocus_model
    from sniper.data.build import get_records
    from sniper.data.registration import build_dataset_catalog_or_exit
    from sniper.modeling.state_dict import load_model_weights
    from sniper.register_args import register_coco_opts

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    cfg = setup_cfg(
        args.config_file,
        register_coco_opts(args.config_file, args.opts, args.register_coco, setup_cfg),
    )
    build_dataset_catalog_or_exit(cfg, check=False)
    torch.manual_seed(0)
    model = build_autofocus_model(cfg).eval()
    if cfg.MODEL.WEIGHTS:
        load_model_weights(model, cfg.MODEL.WEIGHTS)
    return cfg, model, get_records([args.dataset])[: args.num_images]


def _number(value: float) -> float | None:
    return None if math.isnan(float(value)) else float(value)


def _ap(value: float | None) -> str:
    return f"{'-':>6}" if value is None else f"{value:>6.1f}"


def run_row(key: str, cfg: Any, model: Any, records: list[dict], dataset: str, **kw: Any) -> dict:
    """One contender's row (module doc) on ``records`` of ``dataset``."""
    import peer_engines
    import torch

    from sniper.engine.evaluation import COCOEvaluator, inference_on_dataset, load_image

    tool = peer_engines.build_tool(key, cfg, model, **kw)
    fmt = cfg.INPUT.FORMAT
    seconds, counts = [0.0], [0, 0]

    def engine(images: list) -> list[dict]:
        (image,) = images
        inputs, pixels = tool.counter.inputs, tool.counter.pixels
        start = time.perf_counter()
        raw = tool.call(image)
        seconds[0] += time.perf_counter() - start
        out = dict(tool.convert(raw, image))
        out.pop("masks", None)  # box AP only, whatever the tool does with masks
        out["pixels"] = tool.counter.pixels - pixels
        counts[0] += tool.counter.inputs - inputs
        counts[1] += out["pixels"]
        return [out]

    with torch.no_grad():
        engine([load_image(records[0]["file_name"], fmt)])  # warm-up
    seconds[0], counts[:] = 0.0, [0, 0]
    res = inference_on_dataset(engine, records, COCOEvaluator(dataset, None), input_format=fmt)
    n = max(int(res["speed"]["images"]), 1)
    row = {"key": key, "method": peer_engines.label(key, cfg, **kw)}
    # a size range without ground truth has no AP (nan): None, so that the json is standard
    row.update({m: _number(res["bbox"][m]) for m in METRICS})
    row.update(
        {
            "mpix_per_image": counts[1] / n / 1e6,
            "forward_passes_per_image": counts[0] / n,
            "seconds_per_image": seconds[0] / n,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "images": n,
        }
    )
    return row


def run_child(key: str, argv: list[str]) -> dict:
    """``run_row`` of ``key`` in a fresh process (its last stdout line is the row)."""
    here = os.path.dirname(os.path.abspath(__file__))
    cmd = [sys.executable, os.path.abspath(__file__), "--child", key, *argv]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([here, *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
        return {"key": key, "skipped": f"exit {proc.returncode}: {' '.join(tail)}"}
    return json.loads(lines[-1])


def _known(key: str) -> bool:
    import peer_engines

    if key.startswith("af-t="):
        try:
            return 0.0 <= float(key[5:]) <= 1.0
        except ValueError:
            return False
    return key in peer_engines.contender_keys([])


def missing_peer(key: str) -> str | None:
    """Why ``key`` cannot run here (its package is not installed), else None."""
    import importlib.util

    package = PEERS.get(key)
    if package and importlib.util.find_spec(package) is None:
        return f'{package} is not installed (pip install "sniper-autofocus[{package}]")'
    return None


def print_table(rows: list[dict]) -> None:
    head = f"{'method':<34}" + "".join(f"{m:>6}" for m in METRICS)
    head += f"{'MP/img':>8}{'passes':>8}{'s/img':>8}{'RSS GiB':>8}"
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        if "skipped" in r:
            print(f"{r.get('method', r['key']):<34}skipped: {r['skipped']}")
            continue
        line = f"{r['method']:<34}" + "".join(_ap(r[m]) for m in METRICS)
        line += f"{r['mpix_per_image']:>8.2f}{r['forward_passes_per_image']:>8.1f}"
        print(line + f"{r['seconds_per_image']:>8.2f}{r['peak_rss_gib']:>8.2f}")


def plot(rows: list[dict], path: str, title: str) -> None:
    """AP against megapixels per image and against seconds per image, every contender."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from sniper.output_files import atomic_write

    done = [r for r in rows if "skipped" not in r and r["AP"] is not None]
    sweep = sorted((r for r in done if r["key"].startswith("af-t=")), key=lambda r: r["key"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for ax, key, xlabel in (
        (axes[0], "mpix_per_image", "network-input megapixels / image"),
        (axes[1], "seconds_per_image", "seconds / image"),
    ):
        if sweep:
            pts = sorted(sweep, key=lambda r: r[key])
            ax.plot([r[key] for r in pts], [r["AP"] for r in pts], "-", color="tab:blue", lw=1)
        for i, r in enumerate(done):
            marker = "o" if r["key"].startswith("af") else "s^vD<>*pP"[i % 9]
            ax.plot([r[key]], [r["AP"]], marker, label=r["method"] if ax is axes[0] else None)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(xlabel)
        ax.set_ylabel("box AP (%)")
        ax.grid(alpha=0.3)
    fig.legend(loc="center right", fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.8, 1))
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict]:
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(raw)
    import torch

    from sniper.cli_errors import exit_with_error
    from sniper.output_files import OutputDirError, atomic_write_json, check_output_dir

    kw = {"tile": args.tile, "overlap": args.overlap}
    if args.child:
        print(json.dumps(run_row(args.child, *setup(args), args.dataset, **kw)))
        return []
    try:
        check_output_dir(args.output)
    except OutputDirError as err:
        exit_with_error(str(err))
    import peer_engines

    cfg, model, records = setup(args)
    if not records:
        exit_with_error(
            f"--dataset {args.dataset}: no image to benchmark (--num-images {args.num_images})"
        )
    keys = args.contenders or peer_engines.contender_keys(args.thresholds)
    unknown = [k for k in keys if not _known(k)]
    if unknown:
        exit_with_error(
            f"--contenders: unknown {unknown}; known: {peer_engines.contender_keys([])} "
            "and af-t=<threshold>"
        )
    if not cfg.MODEL.WEIGHTS:
        print("warning: MODEL.WEIGHTS is empty (no --weights), benchmarking a random model")
    print(
        f"{args.dataset}: {len(records)} images; {platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads, device {cfg.MODEL.DEVICE}; "
        f"{'one process' if args.in_process else 'one process per contender'}",
        flush=True,
    )
    rows = []
    for key in keys:
        name = peer_engines.label(key, cfg, **kw)
        reason = missing_peer(key)
        if reason:
            row = {"key": key, "method": name, "skipped": reason}
        elif args.in_process:
            row = run_row(key, cfg, model, records, args.dataset, **kw)
        else:
            row = {"method": name, **run_child(key, raw)}
        print(f"  {name}: " + (row.get("skipped") or f"AP {_ap(row['AP'])}"), flush=True)
        rows.append(row)
    print_table(rows)
    meta = {"dataset": args.dataset, "images": len(records), "weights": cfg.MODEL.WEIGHTS}
    meta["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}"
    atomic_write_json(os.path.join(args.output, "bench_peers.json"), {**meta, "rows": rows})
    png = os.path.join(args.output, "bench_peers.png")
    weights = os.path.basename(cfg.MODEL.WEIGHTS) or "random weights"
    plot(rows, png, f"{args.dataset}, {len(records)} images, {weights}")
    print(f"\nwrote {png} and bench_peers.json")
    return rows


if __name__ == "__main__":
    main()
