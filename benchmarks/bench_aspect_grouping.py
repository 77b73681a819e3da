"""Aspect-ratio grouping for whole-image training: network-input pixels with and without.

For a dataset's training images (`--dataset`, a registered name or one given with
`--register-coco`; default: a made-up mix of shapes, below), the `WholeImageSampler` of the
config (SNIPER.TRAIN_SCALES; DATALOADER.SAMPLER_TRAIN need not be set) plans `--epochs`
epochs, batched with and without DATALOADER.ASPECT_RATIO_GROUPING at each batch size of
`--batch-sizes`. Per setting it prints the pixels per batch as the model pads them (each
batch to its largest height and width, multiples of 32: `padded_pixels`), the image pixels
they hold, the padding fraction and the saving of grouping. Only the sampler runs (no image
is read), so the figures are exact for the dataset's sizes.

The default dataset, when `--dataset` is not given, is sizes only: 2,000 images with a long
side of 640 px and a short side of 360, 427, 480 or 512 px (uniform), landscape with
probability 0.7, seeded. It is an assumption, not a measured distribution: it resembles the
common shapes of web photos; give `--dataset` for your own.

    python benchmarks/bench_aspect_grouping.py [--config-file C] [--dataset NAME]
        [--epochs 3] [--batch-sizes 2 4 8 16] [--register-coco NAME JSON ROOT] [KEY VALUE ...]
"""

from __future__ import annotations

import argparse

import numpy as np

from sniper.cli_errors import exit_with_error
from sniper.config import load_config_or_exit
from sniper.data.build import get_records
from sniper.data.registration import build_dataset_catalog_or_exit
from sniper.data.seeding import resolve_seed
from sniper.data.whole_image_sampler import WholeImageSampler, padded_pixels
from sniper.register_args import add_register_coco_argument, register_coco_opts

DEFAULT_CONFIG = "configs/sniper/synthetic_mobilenet_whole_image.yaml"


def mixed_shape_records(n: int = 2000, seed: int = 0) -> list[dict]:
    """Records (no files) of the default mix of shapes (module doc), one box each."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        short = int(rng.choice([360, 427, 480, 512]))
        h, w = (short, 640) if rng.random() < 0.7 else (640, short)
        records.append(
            {
                "file_name": f"mixed_{i}.jpg",
                "height": h,
                "width": w,
                "boxes": np.array([[10, 10, 100, 100]], np.float32),
                "classes": np.zeros(1, np.int64),
            }
        )
    return records


def measure(sampler: WholeImageSampler, epochs: int, batch: int) -> dict[str, float]:
    """Padded and image pixels (sums over `epochs` epochs) and the batch count."""
    padded = image = batches = 0
    for epoch in range(epochs):
        for b in sampler.epoch_batches(epoch, batch):
            padded += padded_pixels([b])
            image += sum(s.height * s.width for s in b)
            batches += 1
    return {"padded": padded, "image": image, "batches": batches}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", default=DEFAULT_CONFIG)
    parser.add_argument("--dataset", default="", help="registered training dataset")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[2, 4, 8, 16])
    add_register_coco_argument(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args()
    if args.epochs < 1 or any(b < 1 for b in args.batch_sizes):
        exit_with_error(
            f"--epochs and --batch-sizes must be >= 1, got {args.epochs}, {args.batch_sizes}"
        )
    opts = register_coco_opts(args.config_file, args.opts, args.register_coco, load_config_or_exit)
    cfg = load_config_or_exit(args.config_file, opts)
    if args.dataset:
        build_dataset_catalog_or_exit(cfg, check=False)
        try:
            records = get_records([args.dataset])
        except KeyError as err:
            exit_with_error(f"--dataset {args.dataset!r}: {err.args[0]}")
        source = args.dataset
    else:
        records = mixed_shape_records()
        source = "the default mix of shapes (2,000 images, sizes only; see the module doc)"
    s = cfg.SNIPER
    samplers = {
        grouping: WholeImageSampler(
            records,
            list(s.TRAIN_SCALES),
            [list(r) for r in s.VALID_RANGES],
            aspect_grouping=grouping,
            seed=resolve_seed(cfg.SEED),
        )
        for grouping in (False, True)
    }
    print(f"{source}: {len(records)} images, scales {list(s.TRAIN_SCALES)}, {args.epochs} epochs")
    head = f"{'batch':>6}{'grouping':>10}{'batches':>9}{'MP/batch':>10}{'image MP/batch':>16}"
    print(head + f"{'padding':>9}{'saved':>8}")
    for batch in args.batch_sizes:
        without = measure(samplers[False], args.epochs, batch)
        for grouping in (False, True):
            r = measure(samplers[grouping], args.epochs, batch) if grouping else without
            saved = 1 - r["padded"] / without["padded"]
            print(
                f"{batch:>6}{'on' if grouping else 'off':>10}{r['batches']:>9}"
                f"{r['padded'] / r['batches'] / 1e6:>10.3f}"
                f"{r['image'] / r['batches'] / 1e6:>16.3f}"
                f"{1 - r['image'] / r['padded']:>9.1%}{saved:>8.1%}"
            )


if __name__ == "__main__":
    main()
