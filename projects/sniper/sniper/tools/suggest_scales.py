"""Suggest SNIPER / AutoFocus scales and valid ranges for a dataset, and measure them.

Usage::

    python -m sniper.tools.suggest_scales --dataset synthetic_digits_train
    python -m sniper.tools.suggest_scales --json annotations/instances_train.json \\
        [--chip-size 512] [--chip-stride 32] [--band 53.3 250] [--percentiles 5 95] \\
        [--max-side 2000] [--num-scales 0] [--test-widen 1.2]

``--dataset`` takes a registered dataset name (the built-in ones included); ``--json`` a
COCO instances json, whose image sizes come from the json (the images need not exist).
It prints the box-size percentiles and image sizes, the rule's inputs, per scale the factor,
valid range, share of boxes valid, planned positive chips per image and whole-image pixels,
the totals (boxes valid at no scale, boxes positive in no chip, training pixels against whole
images at the same scales, measured with the chip planner), the same totals for the shipped
defaults, and a YAML block to paste into a config. The rule is documented in
``sniper.tools.scale_advice``. Bad input is one ``error: ...`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from chipping.planner import DEFAULT_SCALES, DEFAULT_VALID_RANGES
from sniper.cli_errors import exit_with_error
from sniper.data.build import register_builtin_datasets
from sniper.data.catalog import DatasetCatalog
from sniper.data.coco import load_coco_json
from sniper.tools.scale_advice import AdviceParams, DatasetBoxes, advice_yaml, suggest_scales
from sniper.tools.scale_report import format_report, measure_scales, summary_line

__all__ = ["main", "parse_args"]

YAML_MARKER = "# ---- paste into a config (the AUTOFOCUS node only into AutoFocus configs) ----"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments (module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m sniper.tools.suggest_scales",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", metavar="NAME", help="registered dataset name")
    source.add_argument("--json", metavar="PATH", help="COCO instances json")
    defaults = AdviceParams()
    parser.add_argument("--chip-size", type=int, default=defaults.chip_size, help="chip px")
    parser.add_argument(
        "--chip-stride", type=int, default=defaults.chip_stride, help="chip grid step (chip px)"
    )
    parser.add_argument(
        "--band",
        type=float,
        nargs=2,
        metavar=("L", "H"),
        default=list(defaults.band),
        help="size band the detector covers best (chip px; default from the paper's COCO setting)",
    )
    parser.add_argument(
        "--percentiles",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        default=list(defaults.percentiles),
        help="box-size percentiles brought to L and H",
    )
    parser.add_argument(
        "--max-side", type=float, default=defaults.max_side, help="finest canvas long side (px)"
    )
    parser.add_argument("--num-scales", type=int, default=0, help="number of scales (0 = auto)")
    parser.add_argument(
        "--test-widen", type=float, default=defaults.test_widen, help="test range widening"
    )
    return parser.parse_args(argv)


def _fail(message: str) -> None:
    exit_with_error(message)


def _load(args: argparse.Namespace) -> tuple[str, DatasetBoxes]:
    """(name, boxes) of the dataset or json; ValueError/KeyError/OSError on bad input."""
    if args.json is not None:
        if not os.path.isfile(args.json):
            raise FileNotFoundError(f"--json {args.json}: no such file")
        root = os.path.dirname(os.path.abspath(args.json))
        records = load_coco_json(args.json, root, check_images=False)
        return args.json, DatasetBoxes.from_records(records, args.json)
    register_builtin_datasets()
    return args.dataset, DatasetBoxes.from_records(DatasetCatalog.get(args.dataset), args.dataset)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m sniper.tools.suggest_scales``; returns 0 (2 on bad input)."""
    args = parse_args(argv)
    try:
        params = AdviceParams(
            chip_size=args.chip_size,
            chip_stride=args.chip_stride,
            band=tuple(args.band),
            percentiles=tuple(args.percentiles),
            max_side=args.max_side,
            num_scales=args.num_scales,
            test_widen=args.test_widen,
        )
        name, data = _load(args)
        advice = suggest_scales(data, params)
        measures = measure_scales(
            data, advice.train_scales, advice.valid_ranges, args.chip_size, args.chip_stride
        )
        shipped = measure_scales(
            data, DEFAULT_SCALES, DEFAULT_VALID_RANGES, args.chip_size, args.chip_stride
        )
    except (KeyError, ValueError, OSError) as err:
        _fail(str(err.args[0] if isinstance(err, KeyError) and err.args else err))
    print(format_report(name, data, params, advice, measures))
    print(f"shipped defaults (3.0, 1.667, long side 512) here: {summary_line(shipped)}")
    print()
    print(YAML_MARKER)
    print(advice_yaml(advice), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
