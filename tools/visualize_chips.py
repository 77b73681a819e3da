"""Draws the SNIPER training chips of chosen images, one PNG per image.

GT boxes are coloured by the scale at which they are valid (grey: valid at none), chips by
their scale (thick rectangles, in image pixels).

    python tools/visualize_chips.py --dataset synthetic_digits_val --images 0 1 2 \\
        --output output/chips [--config-file configs/sniper/synthetic_mobilenet.yaml] [--epoch 0] \\
        [KEY VALUE ...]
"""

from __future__ import annotations

import argparse
import os
import sys

import cv2

from sniper.cli_errors import cli_errors, exit_with_error
from sniper.config import load_config_or_exit
from sniper.data.build import build_chip_sampler, get_records
from sniper.data.registration import register_coco_entries
from sniper.image_ops import ImageReadError, read_image
from sniper.output_files import OutputDirError, atomic_write_image, check_output_dir
from sniper.register_args import add_register_coco_argument
from sniper.visualization import draw_chips


def main(argv: list[str] | None = None) -> list[str]:
    """Draw the chips of ``--images`` of ``--dataset``; returns the PNG paths written (a
    user's mistake is one ``error: ...`` line and exit status 2)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="synthetic_digits_val", help="registered dataset")
    ap.add_argument(
        "--images",
        type=int,
        nargs="*",
        default=[0, 1, 2],
        help="indices of the images in the dataset",
    )
    ap.add_argument("--output", default="output/chips", help="folder for the PNGs")
    ap.add_argument("--config-file", default="", help="YAML config (SNIPER.* keys used)")
    ap.add_argument("--epoch", type=int, default=0, help="epoch whose chips are drawn")
    add_register_coco_argument(ap)
    ap.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = ap.parse_args(argv)
    with cli_errors():
        return _draw(args)


def _draw(args: argparse.Namespace) -> list[str]:
    """Everything after parsing (``main``'s body)."""
    try:
        check_output_dir(args.output)
    except OutputDirError as err:
        exit_with_error(str(err))
    cfg = load_config_or_exit(args.config_file, args.opts)
    register_coco_entries([*cfg.DATASETS.REGISTER_COCO, *args.register_coco])
    records = get_records([args.dataset])
    bad = [i for i in args.images if not 0 <= i < len(records)]
    if bad:
        exit_with_error(f"--images {bad}: {args.dataset} has {len(records)} images")
    sampler = build_chip_sampler(cfg, records)
    plan, _ = sampler.plan_chips(args.epoch)
    names = [str(s) for s in cfg.SNIPER.TRAIN_SCALES]
    written = []
    for i in args.images:
        sel = plan.for_image(i)
        try:
            image = read_image(records[i]["file_name"], "RGB")
        except ImageReadError as err:
            print(f"warning: skipping image {i}: {err}", file=sys.stderr)
            continue
        drawn = draw_chips(
            image, sel.chips, sel.scale_index, records[i]["boxes"], cfg.SNIPER.VALID_RANGES, names
        )
        path = os.path.join(args.output, f"chips_{args.dataset}_{i}.png")
        atomic_write_image(path, cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
        written.append(path)
        print(
            f"{path}: {len(sel)} chips "
            + ", ".join(f"{n}: {int((sel.scale_index == s).sum())}" for s, n in enumerate(names))
        )
    return written


if __name__ == "__main__":
    main()
