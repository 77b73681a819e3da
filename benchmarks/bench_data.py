"""Training data throughput: chips/s of the SNIPER chip loader with 0, 1 and 2 workers.

Runs one epoch of the synthetic validation split (paper scales 3.0 / 1.667 / long side 512,
chip 512, stride 32) per setting, and reports the share of the time spent planning chips
(planner + assignment + batching, in the main process).

    python benchmarks/bench_data.py [--dataset synthetic_digits_val] [--batch 8]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from sniper.config import add_sniper_config, get_cfg
from sniper.data.build import TrainChipLoader, build_chip_mapper, build_chip_sampler, get_records
from sniper.data.registration import register_coco_entries
from sniper.register_args import add_register_coco_argument


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="synthetic_digits_val")
    ap.add_argument("--batch", type=int, default=8, help="chips per batch")
    ap.add_argument("--workers", type=int, nargs="*", default=[0, 1, 2])
    add_register_coco_argument(ap)
    args = ap.parse_args()
    register_coco_entries(args.register_coco)
    cfg = add_sniper_config(get_cfg())
    records = get_records([args.dataset])
    sampler = build_chip_sampler(cfg, records)
    t = time.perf_counter()
    batches = sampler.epoch_batches(0, args.batch)
    plan_s = time.perf_counter() - t
    chips = sum(len(b) for b in batches)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; {args.dataset}: "
        f"{len(records)} images -> {chips} chips/epoch ({chips / len(records):.2f}/image), "
        f"planning {plan_s * 1e3:.1f} ms/epoch ({plan_s / len(records) * 1e6:.0f} us/image)"
    )
    mapper = build_chip_mapper(cfg)
    for batch in batches:  # warm-up: file cache and OpenCV, so every setting starts equal
        mapper(batch)
    print(f"\n{'workers':>8}{'chips/s':>10}{'images/s':>10}{'epoch s':>9}{'planning share':>16}")
    base = None
    for workers in args.workers:
        loader = TrainChipLoader(sampler, build_chip_mapper(cfg), args.batch, num_workers=workers)
        t = time.perf_counter()
        n = 0
        while loader.epoch == 0:
            n += len(next(loader))
            if loader.batch_in_epoch == len(batches):
                break
        dt = time.perf_counter() - t
        base = base or n / dt
        print(
            f"{workers:>8}{n / dt:>10.1f}{len(records) / dt:>10.1f}{dt:>9.2f}"
            f"{plan_s / dt:>15.1%}   ({n / dt / base:.2f}x vs 0 workers)"
        )


if __name__ == "__main__":
    main()
