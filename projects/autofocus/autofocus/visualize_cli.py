"""Command line: draw AutoFocus on images (FocusPixel heat map, FocusChips, detections).

The drawing itself is `autofocus.visualization`; this module only parses flags and runs it.

Usage::

    python -m autofocus.visualize_cli --config-file configs/autofocus/synthetic_mobilenet.yaml \\
        MODEL.WEIGHTS output/model_final.pth --input synthetic_digits_val --num-images 8 \\
        --output viz/

`--input` (repeatable) takes a registered dataset name (the built-in synthetic ones
included), an image file, a folder or a glob pattern. `KEY VALUE` config overrides may sit
anywhere among the flags. For every image `<output>/<stem>_autofocus.png` is written (see
`autofocus.visualization.draw_autofocus`); one log line per image gives the pixels processed
per scale and the fraction of the full pyramid.

The output folder is checked (created, a folder, writable) before the model is built; each
PNG is written to a temporary name and renamed. Inputs that are missing, not regular files
(FIFOs, sockets, devices: never opened), unreadable or corrupt are skipped with a warning
naming them. Exit status: 0; 2 with one `error:` line when no input could be read or the
output folder cannot be used; 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from collections.abc import Sequence

from sniper.cli_errors import INTERRUPTED, cli_errors, exit_with_error
from sniper.config import load_config_or_exit
from sniper.data.registration import build_dataset_catalog_or_exit
from sniper.engine.preflight import preflight
from sniper.inputs import dataset_labels, read_images, unique_output_name
from sniper.output_files import OutputDirError, atomic_write_image, check_output_dir
from sniper.progress import track
from sniper.register_args import add_register_coco_argument, register_coco_opts

from .cli import parse_with_overrides, resolve_inputs
from .config import setup_cfg
from .predictor import AutoFocusPredictor
from .visualization import draw_autofocus

__all__ = ["main", "parse_args"]

logger = logging.getLogger("sniper.autofocus.visualize_cli")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments (module docstring); overrides land in `args.opts`."""
    parser = argparse.ArgumentParser(
        prog="python -m autofocus.visualize_cli",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", default="", metavar="FILE", help="YAML config")
    parser.add_argument(
        "--input",
        action="append",
        required=True,
        help="dataset name, image file, folder or glob (repeatable)",
    )
    parser.add_argument("--output", default="autofocus_viz", help="folder for the PNGs")
    parser.add_argument(
        "--num-images", type=int, default=None, help="at most this many images per --input"
    )
    parser.add_argument(
        "--confidence", type=float, default=0.5, help="minimum score of drawn detections"
    )
    parser.add_argument("--alpha", type=float, default=0.45, help="heat map weight (0-1)")
    parser.add_argument(
        "--heat-scale",
        type=int,
        default=0,
        help="scale whose FocusPixel maps form the heat map (0 = coarse)",
    )
    add_register_coco_argument(parser)
    return parse_with_overrides(parser, argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m autofocus.visualize_cli`; returns the exit status: 0, 2 when
    no input could be read or the output folder cannot be used (one `error:` line), 130 on
    Ctrl-C (the PNGs already written stay, each complete)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s"
    )
    args = parse_args(argv)
    with cli_errors():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    """``main``'s body (a user's mistake is one ``error: ...`` line, `sniper.cli_errors`)."""
    try:
        check_output_dir(args.output)
    except OutputDirError as err:
        exit_with_error(str(err))
    load = functools.partial(load_config_or_exit, setup=setup_cfg)
    cfg = load(
        args.config_file, register_coco_opts(args.config_file, args.opts, args.register_coco, load)
    )
    build_dataset_catalog_or_exit(cfg, check=False)  # --input may name a registered dataset
    preflight(cfg)
    skipped: list[str] = []
    try:
        records = resolve_inputs(args.input, args.num_images, skipped)
    except FileNotFoundError as err:
        exit_with_error(str(err))
    predictor = AutoFocusPredictor(cfg, input_format="BGR")
    class_names, _ = dataset_labels(cfg.DATASETS.TEST)
    used: set[str] = set()
    done = written = 0
    paths = track([r["file_name"] for r in records], desc="autofocus.visualize", log=logger)
    try:
        for path, image in read_images(paths, "BGR", skipped):
            out = predictor(image)
            done += 1
            drawn = draw_autofocus(
                image[:, :, ::-1],
                out,
                class_names,
                args.confidence,
                heat_scale=args.heat_scale,
                alpha=args.alpha,
            )
            stem = os.path.splitext(unique_output_name(path, used))[0]
            out_path = os.path.join(args.output, f"{stem}_autofocus.png")
            try:
                atomic_write_image(out_path, drawn[:, :, ::-1])
                written += 1
            except OSError as err:
                logger.warning("could not write %s: %s", out_path, err)
            logger.info(
                "%s: %d detections, pixels per scale %s (%.1f%% of the full pyramid) -> %s",
                path,
                len(out["boxes"]),
                out["pixels_per_scale"],
                100.0 * out["pixel_fraction"],
                out_path,
            )
    except KeyboardInterrupt:
        print(
            f"interrupted: {written} of {len(records)} images drawn in {args.output}",
            file=sys.stderr,
            flush=True,
        )
        return INTERRUPTED
    if skipped:
        logger.warning("skipped %d inputs: %s", len(skipped), "; ".join(skipped))
    if not done:
        exit_with_error(f"none of the {len(skipped)} inputs could be read ({skipped[0]})")
    logger.info("%d images drawn in %s, %d skipped", written, args.output, len(skipped))
    return 0


if __name__ == "__main__":
    sys.exit(main())
