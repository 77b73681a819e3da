"""SNIPER chip training versus whole-image training: pixels per epoch and throughput.

Prints, for a config's training set: chips per image per scale, the network-input pixels of
one epoch of chips (positive chips, and the upper bound with SNIPER.NEG_CHIPS_PER_IMAGE
negatives per image) against whole images at the same scales, and the measured training
throughput (forward + backward + SGD step) in chips/s and images/s.

    python benchmarks/bench_training.py --config-file configs/sniper/synthetic_mobilenet.yaml \\
        [--iters 8] [KEY VALUE ...]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from chipping.scales import factors_for_sizes, parse_scales, scaled_size
from sniper.config import setup_cfg
from sniper.data.build import build_chip_sampler, build_train_loader, get_records
from sniper.data.registration import build_dataset_catalog_or_exit
from sniper.engine.solver import build_optimizer
from sniper.modeling import build_model
from sniper.register_args import add_register_coco_argument, register_coco_opts


def pixel_ratio(cfg) -> None:
    records = get_records(cfg.DATASETS.TRAIN)
    sampler = build_chip_sampler(cfg, records)
    plan, _ = sampler.plan_chips(0)
    n = len(records)
    sizes = np.array([(r["height"], r["width"]) for r in records])
    factors = factors_for_sizes(parse_scales(list(cfg.SNIPER.TRAIN_SCALES)), sizes)
    whole = sum(
        int(np.prod(scaled_size(tuple(hw), f)))
        for hw, row in zip(sizes, factors, strict=True)
        for f in row
    )
    k2 = cfg.SNIPER.CHIP_SIZE**2
    pos = len(plan) * k2
    neg = n * cfg.SNIPER.NEG_CHIPS_PER_IMAGE * k2
    per_scale = np.bincount(plan.scale_index, minlength=len(factors[0])) / n
    print(
        f"{cfg.DATASETS.TRAIN}: {n} images; chips per image per scale "
        f"{np.round(per_scale, 2).tolist()} ({len(plan) / n:.2f} in all)"
    )
    print(f"{'training input':<46}{'MP/image':>9}{'MP/epoch':>10}{'vs whole':>10}")
    for name, px in (
        ("whole images at the same scales", whole),
        ("SNIPER positive chips", pos),
        (f"SNIPER + {cfg.SNIPER.NEG_CHIPS_PER_IMAGE} negative chips/image (max)", pos + neg),
    ):
        print(f"{name:<46}{px / n / 1e6:>9.3f}{px / 1e6:>10.1f}{whole / px:>9.2f}x")


def throughput(cfg, iters: int) -> None:
    model = build_model(cfg)
    model.train()
    optimizer = build_optimizer(cfg, model)
    loader = build_train_loader(cfg)
    chips_per_image = len(loader.sampler.plan_chips(0)[0]) / len(loader.sampler.records)
    times = []
    for i in range(iters + 2):
        batch = next(loader)
        t = time.perf_counter()
        losses = model([b[0] for b in batch], [b[1] for b in batch])
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i >= 2:  # warm-up steps excluded
            times.append((time.perf_counter() - t, len(batch)))
    sec = sum(t for t, _ in times)
    chips = sum(c for _, c in times)
    print(
        f"\ntraining throughput ({platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads, {cfg.MODEL.DEVICE}): "
        f"{sec / len(times):.2f} s/iter of {cfg.SOLVER.IMS_PER_BATCH} chips, "
        f"{chips / sec:.2f} chips/s, {chips / sec / chips_per_image:.2f} images/s"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config-file", default="configs/sniper/synthetic_mobilenet.yaml")
    ap.add_argument("--iters", type=int, default=8, help="timed training steps (0: skip)")
    add_register_coco_argument(ap)
    ap.add_argument("opts", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cfg = setup_cfg(
        args.config_file,
        register_coco_opts(args.config_file, args.opts, args.register_coco, setup_cfg),
    )
    build_dataset_catalog_or_exit(cfg, check=False)
    pixel_ratio(cfg)
    if args.iters > 0:
        throughput(cfg, args.iters)


if __name__ == "__main__":
    main()
