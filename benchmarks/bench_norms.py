"""Trunk normalization on chips: FrozenBN, BN, GN and SN at 1, 2 and 4 chips per batch.

For every norm of `--norms` (MODEL.BACKBONE.NORM values) and every batch size of
`--chips-per-batch`, in one process and one after the other, trains the config (default:
the synthetic quickstart) from its ImageNet weights on the same number of chips
(`--chips`; SOLVER.MAX_ITER = chips / batch), with the linear scaling rule (BASE_LR x
batch / the config's IMS_PER_BATCH) and warm-up and LR steps at the same fraction of the
run. Every run starts from the same seed. Then it evaluates SNIPER multi-scale inference
on the first `--num-images` images of `--dataset` (COCO AP).

Reports per run: AP, AP50, APs, the median seconds of a training step (data loading
included, first `--warmup-steps` steps left out) and per chip, the summed seconds of all
steps (checkpoints and evaluation excluded), and
for SN the learned importance weights of every SN layer (softmax of the mean and variance
logits, IN / LN / BN). Prints the table; writes `bench_norms.json` and `bench_norms.png`
(AP per norm against chips per batch; the importance weights per layer, as in Fig. 6 of
Luo et al.).

    python benchmarks/bench_norms.py --config-file configs/sniper/synthetic_mobilenet.yaml \\
        [--norms FrozenBN BN GN SN] [--chips-per-batch 1 2 4] [--chips 480] \\
        [--num-images 10] [--output output/bench_norms] [--overwrite] [KEY VALUE ...]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import platform
import statistics
import time
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from sniper.cli_errors import exit_with_error
from sniper.config import load_config_or_exit
from sniper.data.build import build_test_records
from sniper.data.registration import build_dataset_catalog_or_exit
from sniper.engine import SniperTrainer
from sniper.engine.checkpoint_files import checkpoint_errors_exit
from sniper.engine.defaults import seed_all_rng
from sniper.modeling.switchable_norm import SwitchNorm2d
from sniper.output_files import OutputDirError, atomic_write, atomic_write_json, check_output_dir
from sniper.register_args import add_register_coco_argument, register_coco_opts

DEFAULT_CONFIG = "configs/sniper/synthetic_mobilenet.yaml"
BRANCHES = ("IN", "LN", "BN")


class TimedTrainer(SniperTrainer):
    """`SniperTrainer` that records the wall seconds of every `run_step` (data included)
    and evaluates on the first `num_images` records of each test dataset."""

    num_images = 0

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.step_seconds: list[float] = []

    def run_step(self, data_iter: Iterator[Any]) -> None:
        start = time.perf_counter()
        super().run_step(data_iter)
        self.step_seconds.append(time.perf_counter() - start)

    @classmethod
    def build_test_records(cls, cfg: Any, dataset_name: str) -> list[dict]:
        records = build_test_records(dataset_name)
        return records[: cls.num_images] if cls.num_images > 0 else records


def schedule_opts(base: Any, norm: str, batch: int, chips: int, out: str) -> list[str]:
    """Overrides of one run: the norm, `batch` chips per batch for `chips` chips, the linear
    scaling rule for the LR, warm-up and LR steps at the same fraction of the run as in the
    config, no intermediate checkpoints."""
    iters = max(1, math.ceil(chips / batch))
    fraction = iters / max(1, base.SOLVER.MAX_ITER)
    steps = tuple(max(1, round(s * fraction)) for s in base.SOLVER.STEPS)
    warmup = max(1, round(base.SOLVER.WARMUP_ITERS * fraction))
    lr = base.SOLVER.BASE_LR * batch / base.SOLVER.IMS_PER_BATCH
    return [
        "MODEL.BACKBONE.NORM",
        norm,
        "SOLVER.IMS_PER_BATCH",
        str(batch),
        "SOLVER.MAX_ITER",
        str(iters),
        "SOLVER.STEPS",
        str(steps),
        "SOLVER.WARMUP_ITERS",
        str(warmup),
        "SOLVER.BASE_LR",
        repr(lr),
        "SOLVER.CHECKPOINT_PERIOD",
        str(iters + 1),
        "TEST.EVAL_PERIOD",
        "0",
        "OUTPUT_DIR",
        out,
    ]


def importance_weights(model: torch.nn.Module) -> list[dict[str, Any]]:
    """Per SwitchNorm2d of `model`, in module order: its name and the softmax importance of
    the mean and of the variance, per branch (IN, LN[, BN])."""
    rows = []
    for name, module in model.named_modules():
        if isinstance(module, SwitchNorm2d):
            mean, var = (w.detach().cpu().tolist() for w in module.importance())
            names = BRANCHES[: len(mean)]
            rows.append(
                {
                    "layer": name,
                    "mean": dict(zip(names, mean, strict=True)),
                    "var": dict(zip(names, var, strict=True)),
                }
            )
    return rows


def run_one(
    config_file: str, opts: list[str], norm: str, batch: int, args: argparse.Namespace
) -> dict[str, Any]:
    """Train and evaluate one (norm, batch) run; its row of the table."""
    base = load_config_or_exit(config_file, opts)
    out = os.path.join(args.output, f"{norm}_b{batch}")
    cfg = load_config_or_exit(
        config_file, [*opts, *schedule_opts(base, norm, batch, args.chips, out)]
    )
    seed_all_rng(cfg.SEED)
    trainer = TimedTrainer(cfg)
    with checkpoint_errors_exit():
        trainer.resume_or_load(resume=False, overwrite=True)
    start = time.perf_counter()
    results = trainer.train()
    total_seconds = time.perf_counter() - start
    steps = trainer.step_seconds[args.warmup_steps :] or trainer.step_seconds
    step = statistics.median(steps)
    bbox = results[cfg.DATASETS.TEST[0]]["bbox"] if results else {}
    row = {
        "norm": norm,
        "chips_per_batch": batch,
        "iterations": cfg.SOLVER.MAX_ITER,
        "chips": cfg.SOLVER.MAX_ITER * batch,
        "base_lr": cfg.SOLVER.BASE_LR,
        "AP": bbox.get("AP", float("nan")),
        "AP50": bbox.get("AP50", float("nan")),
        "APs": bbox.get("APs", float("nan")),
        "step_seconds": step,
        "seconds_per_chip": step / batch,
        "train_seconds": sum(trainer.step_seconds),
        "train_and_eval_seconds": total_seconds,
        "importance": importance_weights(trainer.unwrapped_model),
    }
    logging.getLogger("bench_norms").info(
        "%s at %d chips/batch: AP %.1f, %.3f s/step", norm, batch, row["AP"], step
    )
    return row


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    head = f"{'norm':<10}{'chips/batch':>12}{'iters':>7}{'AP':>7}{'AP50':>7}{'APs':>7}"
    print(head + f"{'s/step':>9}{'s/chip':>9}{'train s':>9}")
    for r in rows:
        print(
            f"{r['norm']:<10}{r['chips_per_batch']:>12}{r['iterations']:>7}{r['AP']:>7.1f}"
            f"{r['AP50']:>7.1f}{r['APs']:>7.1f}{r['step_seconds']:>9.3f}"
            f"{r['seconds_per_chip']:>9.3f}{r['train_seconds']:>9.0f}"
        )
    for r in rows:
        if not r["importance"]:
            continue
        print(f"\n{r['norm']} at {r['chips_per_batch']} chips/batch: importance (mean | var)")
        for layer in r["importance"]:
            mean = " ".join(f"{k} {v:.2f}" for k, v in layer["mean"].items())
            var = " ".join(f"{k} {v:.2f}" for k, v in layer["var"].items())
            print(f"  {layer['layer']:<40} {mean} | {var}")


def plot(rows: Sequence[dict[str, Any]], path: str, title: str) -> None:
    """AP against chips per batch per norm; SN importance weights per layer per batch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sn_rows = [r for r in rows if r["importance"]]
    fig, axes = plt.subplots(
        1 + len(sn_rows), 1, figsize=(11, 3.6 * (1 + len(sn_rows))), squeeze=False
    )
    ax = axes[0][0]
    for norm in dict.fromkeys(r["norm"] for r in rows):
        mine = sorted((r for r in rows if r["norm"] == norm), key=lambda r: r["chips_per_batch"])
        ax.plot([r["chips_per_batch"] for r in mine], [r["AP"] for r in mine], "o-", label=norm)
    ax.set_xlabel("chips per batch (same number of chips in every run)")
    ax.set_ylabel("COCO AP")
    ax.set_xticks(sorted({r["chips_per_batch"] for r in rows}))
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title, fontsize=9)
    colors = {"IN": "tab:blue", "LN": "tab:green", "BN": "tab:red"}
    for k, r in enumerate(sn_rows, start=1):
        ax = axes[k][0]
        layers = r["importance"]
        width = 0.4
        for side, offset in (("mean", -width / 2), ("var", width / 2)):
            bottom = [0.0] * len(layers)
            for branch in layers[0][side]:
                values = [layer[side][branch] for layer in layers]
                ax.bar(
                    [i + offset for i in range(len(layers))],
                    values,
                    width * 0.95,
                    bottom=bottom,
                    color=colors[branch],
                    alpha=1.0 if side == "mean" else 0.55,
                    label=f"{branch} ({side})",
                )
                bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        ax.set_xlim(-0.6, len(layers) - 0.4)
        ax.set_ylim(0, 1)
        ax.set_ylabel("importance")
        ax.set_xlabel("SN layer (trunk order); left bar: mean, right bar: variance")
        ax.set_title(f"{r['norm']} at {r['chips_per_batch']} chips/batch", fontsize=9)
        ax.legend(fontsize=7, ncol=6, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", default=DEFAULT_CONFIG)
    parser.add_argument("--norms", nargs="+", default=["FrozenBN", "BN", "GN", "SN"])
    parser.add_argument("--chips-per-batch", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--chips", type=int, default=480, help="training chips of every run")
    parser.add_argument("--num-images", type=int, default=10, help="evaluated images")
    parser.add_argument("--dataset", default="", help="evaluated dataset (config's TEST)")
    parser.add_argument("--warmup-steps", type=int, default=5, help="steps left out of timing")
    parser.add_argument("--output", default="output/bench_norms")
    parser.add_argument("--overwrite", action="store_true")
    add_register_coco_argument(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args()
    for name, value in (("--chips", args.chips), ("--num-images", args.num_images)):
        if value < 1:
            exit_with_error(f"{name} must be >= 1, got {value}")
    if any(b < 1 for b in args.chips_per_batch):
        exit_with_error(f"--chips-per-batch must be >= 1, got {args.chips_per_batch}")
    try:
        check_output_dir(args.output)
    except OutputDirError as err:
        exit_with_error(str(err))
    result = os.path.join(args.output, "bench_norms.json")
    if os.path.exists(result) and not args.overwrite:
        exit_with_error(f"--output {args.output!r} holds bench_norms.json (add --overwrite)")
    opts = register_coco_opts(args.config_file, args.opts, args.register_coco, load_config_or_exit)
    if args.dataset:
        opts += ["DATASETS.TEST", f"('{args.dataset}',)"]
    cfg = load_config_or_exit(args.config_file, opts)
    build_dataset_catalog_or_exit(cfg)
    if not cfg.DATASETS.TEST:
        exit_with_error("the config has no DATASETS.TEST to evaluate on (use --dataset)")
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("bench_norms").setLevel(logging.INFO)
    TimedTrainer.num_images = args.num_images
    rows = []
    for norm in args.norms:
        for batch in args.chips_per_batch:
            rows.append(run_one(args.config_file, opts, norm, batch, args))
            atomic_write_json(result, {"rows": rows})
    machine = f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    device = cfg.MODEL.DEVICE
    print(f"\n{args.config_file} on {device} ({machine}); {args.chips} chips per run, ")
    print(f"AP on the first {args.num_images} images of {cfg.DATASETS.TEST[0]}\n")
    print_table(rows)
    meta = {
        "config_file": args.config_file,
        "chips": args.chips,
        "num_images": args.num_images,
        "dataset": cfg.DATASETS.TEST[0],
        "device": device,
        "machine": machine,
    }
    atomic_write_json(result, {**meta, "rows": rows})
    title = (
        f"{os.path.basename(args.config_file)}: {args.chips} chips per run, AP on "
        f"{args.num_images} images of {cfg.DATASETS.TEST[0]} ({device}, {machine})"
    )
    plot(rows, os.path.join(args.output, "bench_norms.png"), title)
    print(f"\nwrote {args.output}/bench_norms.json and bench_norms.png")


if __name__ == "__main__":
    main()
