"""AutoFocus versus full multi-scale SNIPER inference: AP against pixels processed and speed.

With one trained AutoFocus model (MODEL.WEIGHTS), over the first N images of a dataset:

* full multi-scale inference (`sniper.inference.MultiScaleInference`: the whole image at
  every AUTOFOCUS scale, kept ranges AUTOFOCUS.VALID_RANGES, the configured soft-NMS merge);
* the AutoFocus cascade (`autofocus.cascade.AutoFocusCascade`) with the config's thresholds
  and with every transition at each threshold t of `--thresholds`.

For each: COCO AP, AP50 and APs (`sniper.engine.evaluation.COCOEvaluator`; with a
MODEL.MASK_ON model also the mask AP, AP50 and APs), network-input
megapixels per image, the fraction of the full pyramid's pixels (in all and at the finest
scale), images/s (model calls only: decoding is excluded; one warm-up image first) and the
speed-up over full multi-scale; for the cascades also the FocusChips' missing rate and empty
rate per transition (`autofocus.focus_stats`, a second table). Printed as tables; `--output`
gets `bench_autofocus.json` and `bench_autofocus.png` (AP vs pixel fraction and AP vs
images/s).

    python benchmarks/bench_autofocus.py --config-file configs/autofocus/synthetic_mobilenet.yaml \\
        MODEL.WEIGHTS output/autofocus_synthetic_mobilenet/model_final.pth \\
        [--dataset synthetic_digits_val] [--num-images 50] [--thresholds 0.01 0.02 0.05 ...]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from autofocus.cascade import AutoFocusCascade
from autofocus.cli import parse_with_overrides
from autofocus.config import setup_cfg
from autofocus.focus_stats import FocusStats
from autofocus.modeling import build_autofocus_model
from autofocus.params import cascade_params_from_cfg, full_pyramid_pixels
from sniper.cli_errors import exit_with_error
from sniper.data.build import get_records
from sniper.data.registration import build_dataset_catalog_or_exit
from sniper.engine.evaluation import COCOEvaluator, inference_on_dataset, load_image
from sniper.inference import MultiScaleInference
from sniper.modeling.state_dict import load_model_weights
from sniper.output_files import OutputDirError, atomic_write, atomic_write_json, check_output_dir
from sniper.register_args import add_register_coco_argument, register_coco_opts

THRESHOLDS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.4)


class TimedEngine:
    """Wraps an inference engine and adds up the seconds spent in its calls."""

    def __init__(self, engine: Callable[..., list[dict[str, Any]]], **kwargs: Any) -> None:
        self.engine, self.kwargs, self.seconds = engine, kwargs, 0.0

    def __call__(self, images: list[np.ndarray]) -> list[dict[str, Any]]:
        start = time.perf_counter()
        out = self.engine(images, **self.kwargs)
        self.seconds += time.perf_counter() - start
        return out


def run_one(
    name: str,
    engine: Callable[..., list[dict[str, Any]]],
    dataset: str,
    records: list[dict],
    input_format: str,
    full: np.ndarray,
    focus: FocusStats | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """AP, pixels and speed of one engine on `records` of `dataset` (one warm-up image
    first); `full`: float `(S,)` full-pyramid pixels per scale summed over the records;
    `focus`: gets every output (a cascade's FocusChips), its summary lands in `row["focus"]`;
    `kwargs` go to every engine call."""
    timed = TimedEngine(engine, **kwargs)
    timed([load_image(records[0]["file_name"], input_format)])
    timed.seconds = 0.0
    evaluator = COCOEvaluator(dataset, None)
    res = inference_on_dataset(
        timed,
        records,
        evaluator,
        input_format=input_format,
        on_output=focus.add if focus is not None else None,
    )
    n = len(records)
    per_scale = np.array([res["speed"].get(f"pixels_scale{k}", 0.0) for k in range(len(full))])
    row = {
        "method": name,
        "thresholds": kwargs.get("thresholds"),
        "AP": res["bbox"]["AP"],
        "AP50": res["bbox"]["AP50"],
        "APs": res["bbox"]["APs"],
        "mpix_per_image": float(per_scale.sum()) / n / 1e6,
        "pixels_per_scale": (per_scale / n).tolist(),
        "pixel_fraction": float(per_scale.sum() / full.sum()),
        "finest_fraction": float(per_scale[-1] / full[-1]),
        "images_per_s": n / timed.seconds if timed.seconds > 0 else 0.0,
    }
    if focus is not None:
        row["focus"] = focus.summary()
    if "segm" in res:  # a model with MODEL.MASK_ON: mask AP beside box AP
        row.update({f"mask_{k}": res["segm"][k] for k in ("AP", "AP50", "APs")})
    print(
        f"  {name}: AP {row['AP']:.1f}, {row['pixel_fraction']:.3f} of the pixels, "
        f"{row['images_per_s']:.2f} images/s",
        flush=True,
    )
    return row


def print_table(rows: list[dict[str, Any]]) -> None:
    base = rows[0]["images_per_s"]
    head = (
        f"{'method':<26}{'AP':>6}{'AP50':>6}{'APs':>6}{'MP/img':>8}{'px frac':>9}"
        f"{'finest':>8}{'img/s':>8}{'speed-up':>9}"
    )
    masks = "mask_AP" in rows[0]
    if masks:
        head += f"{'mask AP':>9}{'AP50':>6}{'APs':>6}"
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        up = r["images_per_s"] / base if base > 0 else float("nan")
        line = (
            f"{r['method']:<26}{r['AP']:>6.1f}{r['AP50']:>6.1f}{r['APs']:>6.1f}"
            f"{r['mpix_per_image']:>8.3f}{r['pixel_fraction']:>9.3f}"
            f"{r['finest_fraction']:>8.3f}{r['images_per_s']:>8.2f}{up:>8.2f}x"
        )
        if masks:
            line += f"{r['mask_AP']:>9.1f}{r['mask_AP50']:>6.1f}{r['mask_APs']:>6.1f}"
        print(line)


def print_focus_table(rows: list[dict[str, Any]]) -> None:
    """Missing rate and empty rate of each transition for the rows that have FocusChips."""
    rows = [r for r in rows if r.get("focus")]
    if not rows:
        return
    transitions = sum(1 for k in rows[0]["focus"] if k.startswith("missing_rate_t"))
    head = f"{'FocusChips':<26}" + "".join(
        f"{f'missing t{s}':>12}{f'empty t{s}':>10}{'boxes':>7}" for s in range(transitions)
    )
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        f = r["focus"]
        print(
            f"{r['method']:<26}"
            + "".join(
                f"{f[f'missing_rate_t{s}']:>12.4f}{f[f'empty_rate_t{s}']:>10.4f}"
                f"{int(f[f'responsible_boxes_t{s}']):>7d}"
                for s in range(transitions)
            )
        )


def plot(rows: list[dict[str, Any]], path: str, title: str) -> None:
    """AP vs pixel fraction and AP vs images/s; AutoFocus points labelled by method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    full, cascades = rows[0], rows[1:]
    for ax, key, label in (
        (axes[0], "pixel_fraction", "fraction of full-pyramid pixels"),
        (axes[1], "images_per_s", "images / s"),
    ):
        # The sweep (one threshold for every transition) is a curve; the config's own
        # per-transition thresholds are a separate point.
        sweep = sorted((r for r in cascades if "[" not in r["method"]), key=lambda r: r[key])
        ax.plot(
            [r[key] for r in sweep],
            [r["AP"] for r in sweep],
            "o-",
            color="tab:blue",
            label="AutoFocus, one threshold t",
        )
        configured = [r for r in cascades if "[" in r["method"]]
        ax.plot(
            [r[key] for r in configured],
            [r["AP"] for r in configured],
            "D",
            color="tab:green",
            label="AutoFocus, config thresholds",
        )
        for r in cascades:
            ax.annotate(
                r["method"].replace("AutoFocus ", ""),
                (r[key], r["AP"]),
                fontsize=7,
                textcoords="offset points",
                xytext=(3, 3),
            )
        ax.plot(
            [full[key]], [full["AP"]], "*", color="tab:red", markersize=13, label="full multi-scale"
        )
        ax.set_xlabel(label)
        ax.set_ylabel("COCO AP (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config-file", default="configs/autofocus/synthetic_mobilenet.yaml")
    ap.add_argument("--dataset", default=None, help="default: DATASETS.TEST[0]")
    ap.add_argument("--num-images", type=int, default=None, help="first N images (all)")
    ap.add_argument("--thresholds", type=float, nargs="+", default=list(THRESHOLDS))
    ap.add_argument("--output", default="output/bench_autofocus", help="json + png folder")
    add_register_coco_argument(ap)
    return parse_with_overrides(ap, argv)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    logging.basicConfig(level=logging.WARNING)
    args = parse_args(argv)
    try:
        check_output_dir(args.output)
    except OutputDirError as err:
        exit_with_error(str(err))
    cfg = setup_cfg(
        args.config_file,
        register_coco_opts(args.config_file, args.opts, args.register_coco, setup_cfg),
    )
    build_dataset_catalog_or_exit(cfg, check=False)
    dataset = args.dataset or cfg.DATASETS.TEST[0]
    fmt = cfg.INPUT.FORMAT
    model = build_autofocus_model(cfg).eval()
    if cfg.MODEL.WEIGHTS:
        load_model_weights(model, cfg.MODEL.WEIGHTS)
    else:
        print("warning: MODEL.WEIGHTS is empty, benchmarking a random model")
    records = get_records([dataset])[: args.num_images]
    params = cascade_params_from_cfg(cfg)
    full = np.sum(
        [full_pyramid_pixels((int(r["height"]), int(r["width"])), params.scales) for r in records],
        axis=0,
    ).astype(np.float64)
    print(
        f"{dataset}: {len(records)} images; scales {list(params.scales)}; "
        f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch "
        f"threads, device {cfg.MODEL.DEVICE}",
        flush=True,
    )
    multi = MultiScaleInference.from_config(
        cfg, model, scales=list(params.scales), valid_ranges=[list(r) for r in params.valid_ranges]
    )
    cascade = AutoFocusCascade.from_config(cfg, model)
    rows = [run_one("full multi-scale", multi, dataset, records, fmt, full)]
    rows.append(
        run_one(
            f"AutoFocus t={list(params.thresholds)}",
            cascade,
            dataset,
            records,
            fmt,
            full,
            FocusStats(params.valid_ranges),
            thresholds=params.thresholds,
        )
    )
    for t in args.thresholds:
        rows.append(
            run_one(
                f"AutoFocus t={t:g}",
                cascade,
                dataset,
                records,
                fmt,
                full,
                FocusStats(params.valid_ranges),
                thresholds=params.with_threshold(t).thresholds,
            )
        )
    print_table(rows)
    print_focus_table(rows)
    atomic_write_json(
        os.path.join(args.output, "bench_autofocus.json"),
        {"dataset": dataset, "images": len(records), "weights": cfg.MODEL.WEIGHTS, "rows": rows},
        indent=1,
    )
    png = os.path.join(args.output, "bench_autofocus.png")
    plot(
        rows,
        png,
        f"{dataset}, {len(records)} images, "
        f"{os.path.basename(cfg.MODEL.WEIGHTS) or 'random weights'}",
    )
    print(f"\nwrote {png} and bench_autofocus.json")
    return rows


if __name__ == "__main__":
    main()
