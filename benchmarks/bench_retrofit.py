"""AutoFocus retrofit (AUTOFOCUS.FREEZE_DETECTOR) versus joint training: time and AP/pixels.

Given a trained SNIPER detector (`--sniper-weights`, a SniperRCNN checkpoint) and a jointly
trained AutoFocus model (`--joint-weights`), in one process:

1. trains the FocusPixel head on the frozen SNIPER detector for `--iters` iterations
   (default: the config's SOLVER.MAX_ITER) with `AutoFocusTrainer`, timed (wall seconds,
   data loading and checkpoints included); its `model_final.pth` lands in
   `<output>/retrofit_train/`;
2. times the training step (forward, backward, SGD; data excluded) of the retrofit and of
   the joint model side by side on the same `--timing-iters` pre-loaded batches (one
   warm-up batch first; the two models alternate batch by batch);
3. runs, on the first `--num-images` images of `--dataset`, full multi-scale inference and
   the cascade at every threshold t of `--thresholds` (every transition at t) for both
   models (`bench_autofocus.run_one`: COCO AP, pixel fractions, images/s).

Prints the timing and the two AP tables; writes `bench_retrofit.json` and `bench_retrofit.png`
(AP vs fraction of the full pyramid's pixels, both models; seconds per training step). The
joint run's own training time is read from the `metrics.json` beside `--joint-weights`
when there is one (median logged seconds per iteration times its iterations).

    python benchmarks/bench_retrofit.py \\
        --config-file configs/autofocus/synthetic_mobilenet_retrofit.yaml \\
        --sniper-weights output/synthetic_mobilenet/model_final.pth \\
        --joint-weights output/autofocus_synthetic_mobilenet/model_final.pth \\
        [--iters 200] [--timing-iters 5] [--num-images 50] [--thresholds 0.01 0.02 ...] \\
        [--output output/bench_retrofit] [--overwrite] [KEY VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
from typing import Any

import numpy as np
import torch
from bench_autofocus import THRESHOLDS, print_table, run_one

from autofocus.cascade import AutoFocusCascade
from autofocus.cli import parse_with_overrides
from autofocus.config import load_config_or_exit, setup_cfg
from autofocus.engine import AutoFocusTrainer
from autofocus.modeling import AutoFocusRCNN, build_autofocus_model
from autofocus.params import cascade_params_from_cfg, full_pyramid_pixels
from sniper.cli_errors import exit_with_error
from sniper.data.build import get_records
from sniper.data.registration import build_dataset_catalog_or_exit
from sniper.engine.checkpoint_files import checkpoint_errors_exit
from sniper.engine.events import TrainingEvents
from sniper.inference import MultiScaleInference
from sniper.modeling.state_dict import load_model_weights
from sniper.output_files import OutputDirError, atomic_write, atomic_write_json, check_output_dir
from sniper.register_args import add_register_coco_argument, register_coco_opts

DEFAULT_CONFIG = "configs/autofocus/synthetic_mobilenet_retrofit.yaml"


def make_cfgs(args: argparse.Namespace, opts: list[str]) -> tuple[Any, Any]:
    """(retrofit config, joint config): the same file and overrides; the retrofit freezes
    the detector of --sniper-weights, writes to <output>/retrofit_train and evaluates
    nothing (DATASETS.TEST empty); the joint one names --joint-weights."""
    train_dir = os.path.join(args.output, "retrofit_train")
    retrofit = [*opts, "AUTOFOCUS.FREEZE_DETECTOR", "True", "MODEL.WEIGHTS", args.sniper_weights]
    retrofit += ["OUTPUT_DIR", train_dir, "TEST.EVAL_PERIOD", "0", "DATASETS.TEST", "()"]
    if args.iters is not None:
        retrofit += ["SOLVER.MAX_ITER", str(args.iters)]
    joint = [*opts, "AUTOFOCUS.FREEZE_DETECTOR", "False", "MODEL.WEIGHTS", args.joint_weights]
    joint += ["OUTPUT_DIR", "", "TEST.EVAL_PERIOD", "0"]
    return load_config_or_exit(args.config_file, retrofit), load_config_or_exit(
        args.config_file, joint
    )


def train_retrofit(cfg: Any, overwrite: bool) -> tuple[AutoFocusTrainer, dict[str, float]]:
    """Train the retrofit head for SOLVER.MAX_ITER iterations (no evaluation); returns the
    trainer and `{"iterations", "seconds", "seconds_per_iter"}` (wall time of `train()`)."""
    trainer = AutoFocusTrainer(cfg)
    with checkpoint_errors_exit():
        trainer.resume_or_load(resume=False, overwrite=overwrite)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    n = trainer.max_iter
    return trainer, {"iterations": n, "seconds": seconds, "seconds_per_iter": seconds / n}


def _timed_step(trainer: AutoFocusTrainer, batch: list) -> float:
    """Seconds of one `run_step` of `trainer` on `batch` (already loaded)."""
    device = trainer.device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    trainer.run_step(iter([batch]))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def time_steps(trainers: dict[str, AutoFocusTrainer], batches: list[list]) -> dict[str, Any]:
    """Per trainer the seconds of its training step on each of `batches[1:]` (the first is
    a warm-up), alternating trainers batch by batch; median and mean per trainer."""
    seconds: dict[str, list[float]] = {name: [] for name in trainers}
    for trainer in trainers.values():
        trainer.model.train()
        trainer.events = TrainingEvents("", 0, len(batches), enabled=False)
    for k, batch in enumerate(batches):
        for name, trainer in trainers.items():
            dt = _timed_step(trainer, batch)
            if k > 0:
                seconds[name].append(dt)
    return {
        name: {"seconds": s, "median": statistics.median(s), "mean": statistics.fmean(s)}
        for name, s in seconds.items()
    }


def joint_run_time(weights: str) -> dict[str, float] | None:
    """From the `metrics.json` beside `weights` (a train_net run): its last iteration + 1,
    the median of the logged seconds per iteration and their product; None without one."""
    path = os.path.join(os.path.dirname(os.path.abspath(weights)), "metrics.json")
    if not os.path.isfile(path):
        return None
    times, last = [], -1
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "time" in entry and "iteration" in entry:
                times.append(float(entry["time"]))
                last = max(last, int(entry["iteration"]))
    if not times:
        return None
    median = statistics.median(times)
    return {"iterations": last + 1, "seconds_per_iter": median, "seconds": median * (last + 1)}


def load_plain(cfg: Any, weights: str) -> AutoFocusRCNN:
    """A plain AutoFocusRCNN of `cfg` (the joint config) with `weights`, in eval mode."""
    model = build_autofocus_model(cfg)
    load_model_weights(model, weights)
    return model.eval()


def model_curve(label: str, model: AutoFocusRCNN, cfg: Any, data: dict[str, Any]) -> list[dict]:
    """Full multi-scale and the cascade at each threshold of `data["thresholds"]`."""
    params = data["params"]
    multi = MultiScaleInference.from_config(
        cfg, model, scales=list(params.scales), valid_ranges=[list(r) for r in params.valid_ranges]
    )
    cascade = AutoFocusCascade.from_config(cfg, model)
    common = (data["dataset"], data["records"], cfg.INPUT.FORMAT, data["full"])
    rows = [run_one(f"{label} full multi-scale", multi, *common)]
    for t in data["thresholds"]:
        rows.append(
            run_one(
                f"{label} t={t:g}",
                cascade,
                *common,
                thresholds=params.with_threshold(t).thresholds,
            )
        )
    for row in rows:
        row["model"] = label
    return rows


def plot(rows: list[dict], timing: dict[str, Any], path: str, title: str) -> None:
    """AP vs pixel fraction of both models; median seconds per training step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bars) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [2, 1]})
    for label, color in (("retrofit", "tab:blue"), ("joint", "tab:orange")):
        mine = [r for r in rows if r["model"] == label]
        sweep = sorted(mine[1:], key=lambda r: r["pixel_fraction"])
        ax.plot(
            [r["pixel_fraction"] for r in sweep],
            [r["AP"] for r in sweep],
            "o-",
            color=color,
            label=f"{label}: cascade, threshold t",
        )
        for r in sweep:
            ax.annotate(
                r["method"].split()[-1],
                (r["pixel_fraction"], r["AP"]),
                fontsize=7,
                textcoords="offset points",
                xytext=(3, 3),
            )
        full = mine[0]
        ax.plot([full["pixel_fraction"]], [full["AP"]], "*", color=color, markersize=13)
    ax.plot([], [], "*", color="gray", markersize=13, label="full multi-scale (each model)")
    ax.set_xlabel("fraction of full-pyramid pixels")
    ax.set_ylabel("COCO AP (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    names = list(timing)
    medians = [timing[n]["median"] for n in names]
    bars.bar(names, medians, color=["tab:blue", "tab:orange"][: len(names)])
    for k, value in enumerate(medians):
        bars.annotate(f"{value:.3f} s", (k, value), ha="center", va="bottom", fontsize=8)
    bars.set_ylabel("seconds per training step (median)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)


def print_timing(training: dict[str, float], timing: dict[str, Any], joint_iters: int) -> None:
    """The training-time figures (module doc)."""
    r, j = timing["retrofit"]["median"], timing["joint"]["median"]
    print(
        f"\nretrofit training: {training['iterations']} iterations in {training['seconds']:.1f} s "
        f"({training['seconds_per_iter']:.3f} s/iteration, data and checkpoints included)"
    )
    print(
        f"training step, same batches (median of {len(timing['retrofit']['seconds'])}): "
        f"retrofit {r:.3f} s, joint {j:.3f} s -> retrofit step = {r / j:.3f} of a joint step"
    )
    print(
        f"model-step time of a schedule: retrofit {training['iterations']} x {r:.3f} = "
        f"{training['iterations'] * r:.1f} s; joint {joint_iters} x {j:.3f} = "
        f"{joint_iters * j:.1f} s"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config-file", default=DEFAULT_CONFIG)
    ap.add_argument("--sniper-weights", required=True, help="trained SniperRCNN checkpoint")
    ap.add_argument("--joint-weights", required=True, help="jointly trained AutoFocus model")
    ap.add_argument("--iters", type=int, default=None, help="retrofit iterations (config's)")
    ap.add_argument("--timing-iters", type=int, default=5, help="timed steps per model")
    ap.add_argument("--joint-iters", type=int, default=600, help="joint schedule length")
    ap.add_argument("--dataset", default=None, help="default: DATASETS.TEST[0]")
    ap.add_argument("--num-images", type=int, default=None, help="first N images (all)")
    ap.add_argument("--thresholds", type=float, nargs="+", default=list(THRESHOLDS))
    ap.add_argument("--output", default="output/bench_retrofit", help="json + png folder")
    ap.add_argument("--overwrite", action="store_true", help="replace a previous retrofit run")
    add_register_coco_argument(ap)
    return parse_with_overrides(ap, argv)


def check_args(args: argparse.Namespace) -> None:
    """One `error:` line (exit 2) for a missing weights file or a bad count."""
    for flag, path in (
        ("--sniper-weights", args.sniper_weights),
        ("--joint-weights", args.joint_weights),
    ):
        if not os.path.isfile(path):
            exit_with_error(f"{flag} {path!r}: not a file")
    for flag, value, low in (
        ("--iters", args.iters, 1),
        ("--timing-iters", args.timing_iters, 1),
        ("--joint-iters", args.joint_iters, 1),
        ("--num-images", args.num_images, 1),
    ):
        if value is not None and value < low:
            exit_with_error(f"{flag} {value}: must be >= {low}")
    try:
        check_output_dir(args.output)
    except OutputDirError as err:
        exit_with_error(str(err))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.WARNING)
    args = parse_args(argv)
    check_args(args)
    opts = register_coco_opts(args.config_file, args.opts, args.register_coco, setup_cfg)
    retrofit_cfg, joint_cfg = make_cfgs(args, opts)
    build_dataset_catalog_or_exit(retrofit_cfg, check=False)
    if not (args.dataset or joint_cfg.DATASETS.TEST):
        exit_with_error("--dataset: not given and the config has no DATASETS.TEST")
    torch.manual_seed(max(int(retrofit_cfg.SEED), 0))
    print(
        f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
        f"device {retrofit_cfg.MODEL.DEVICE}",
        flush=True,
    )
    trainer, training = train_retrofit(retrofit_cfg, args.overwrite)
    final = os.path.join(retrofit_cfg.OUTPUT_DIR, "model_final.pth")
    joint_trainer = AutoFocusTrainer(joint_cfg)
    load_model_weights(joint_trainer.unwrapped_model, args.joint_weights)
    loader = iter(trainer.data_loader)
    batches = [next(loader) for _ in range(args.timing_iters + 1)]
    timing = time_steps({"retrofit": trainer, "joint": joint_trainer}, batches)
    del trainer, joint_trainer, loader, batches

    dataset = args.dataset or joint_cfg.DATASETS.TEST[0]
    records = get_records([dataset])[: args.num_images]
    params = cascade_params_from_cfg(joint_cfg)
    full = np.sum(
        [full_pyramid_pixels((int(r["height"]), int(r["width"])), params.scales) for r in records],
        axis=0,
    ).astype(np.float64)
    data = {
        "dataset": dataset,
        "records": records,
        "full": full,
        "params": params,
        "thresholds": args.thresholds,
    }
    print(f"{dataset}: {len(records)} images; scales {list(params.scales)}", flush=True)
    rows = model_curve("retrofit", load_plain(joint_cfg, final), joint_cfg, data)
    rows += model_curve("joint", load_plain(joint_cfg, args.joint_weights), joint_cfg, data)
    for label in ("retrofit", "joint"):
        print_table([r for r in rows if r["model"] == label])
    print_timing(training, timing, args.joint_iters)
    joint_run = joint_run_time(args.joint_weights)
    if joint_run is not None:
        print(
            f"joint run (its metrics.json): {joint_run['iterations']} iterations x "
            f"{joint_run['seconds_per_iter']:.3f} s = {joint_run['seconds']:.0f} s"
        )
    result = {
        "dataset": dataset,
        "images": len(records),
        "sniper_weights": args.sniper_weights,
        "joint_weights": args.joint_weights,
        "retrofit_weights": final,
        "retrofit_training": training,
        "step_timing": timing,
        "joint_iters": args.joint_iters,
        "joint_run": joint_run,
        "rows": rows,
    }
    atomic_write_json(os.path.join(args.output, "bench_retrofit.json"), result, indent=1)
    png = os.path.join(args.output, "bench_retrofit.png")
    plot(rows, timing, png, f"{dataset}, {len(records)} images: retrofit vs joint")
    print(f"\nwrote {png} and bench_retrofit.json")
    return result


if __name__ == "__main__":
    main()
