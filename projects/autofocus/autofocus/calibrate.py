"""Command line: calibrate the FocusPixel thresholds of the AutoFocus cascade on a dataset.

The calibration itself is `autofocus.calibration`; this module parses flags, runs it, prints
the table and writes the calibrated config.

Usage::

    python -m autofocus.calibrate --config-file configs/autofocus/synthetic_mobilenet.yaml \\
        MODEL.WEIGHTS output/model_final.pth [--dataset synthetic_digits_val] \\
        [--num-images 50] [--target 0.99] [--thresholds 0.01 0.02 ...] \\
        [--output calibrated.yaml]

For each transition a table gives every candidate threshold's coverage (share of the boxes
that need a finer scale found inside a FocusChip), missing rate, empty rate and the fraction
of the finer scale processed; the highest threshold with coverage >= `--target` is marked
`*`. `--output` gets a YAML config whose `_BASE_` is `--config-file` (a path relative to the
output's folder) and which sets AUTOFOCUS.THRESHOLDS to the calibrated values, plus every
other `KEY VALUE` override of the command line (the thresholds were calibrated with them)
except MODEL.WEIGHTS, which the user gives again. The file is written to a temporary name
and renamed.

Exit status: 0; 2 with one `error:` line for a bad flag or config, a `--target` outside
(0, 1], an unknown `--dataset`, an output that cannot be written or no readable image; 130 on
Ctrl-C (nothing written).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import yaml

from sniper.cli_errors import INTERRUPTED, ConfigError, cli_errors, exit_with_error
from sniper.config import load_config_or_exit
from sniper.data.build import get_records, register_builtin_datasets
from sniper.data.catalog import DatasetCatalog
from sniper.data.registration import build_dataset_catalog_or_exit
from sniper.engine.coco_ground_truth import read_test_image
from sniper.engine.preflight import preflight
from sniper.output_files import atomic_write
from sniper.register_args import add_register_coco_argument, register_coco_opts

from .calibration import (
    DEFAULT_THRESHOLDS,
    Calibration,
    NoReadableImages,
    ThresholdRow,
    calibrate_thresholds,
    check_target,
    check_thresholds,
)
from .cli import parse_with_overrides
from .config import setup_cfg
from .predictor import AutoFocusPredictor

__all__ = ["calibrated_config_text", "format_table", "main", "parse_args"]

logger = logging.getLogger("sniper.autofocus.calibrate")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments (module docstring); overrides land in `args.opts`."""
    parser = argparse.ArgumentParser(
        prog="python -m autofocus.calibrate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", default="", metavar="FILE", help="YAML config")
    parser.add_argument("--dataset", default=None, help="registered dataset (DATASETS.TEST[0])")
    parser.add_argument("--num-images", type=int, default=None, help="first N images (all)")
    parser.add_argument("--target", type=float, default=0.99, help="coverage to keep, (0, 1]")
    parser.add_argument(
        "--thresholds",
        type=float,
        nargs="+",
        default=list(DEFAULT_THRESHOLDS),
        help="candidate thresholds in [0, 1] (default 0, 0.001, 0.002, 0.005, 0.01..0.99)",
    )
    parser.add_argument(
        "--tolerance", type=float, default=0.0, help="px a box may stick out of a chip"
    )
    parser.add_argument("--output", default="calibrated.yaml", help="calibrated config (YAML)")
    add_register_coco_argument(parser)
    return parse_with_overrides(parser, argv)


def _plain(value: Any) -> Any:
    """Config values as YAML-friendly lists / scalars (tuples become lists)."""
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _value(cfg: Any, key: str) -> Any:
    """The value of the dotted config `key` in `cfg`."""
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def _base_path(config_file: str, output: str) -> str:
    """`config_file` relative to `output`'s folder, absolute when they share only `/`."""
    config, folder = os.path.abspath(config_file), os.path.dirname(os.path.abspath(output))
    if os.path.commonpath([config, folder]) == os.sep:
        return config
    return os.path.relpath(config, folder)


def calibrated_config_text(
    config_file: str, output: str, calibration: Calibration, overrides: dict[str, Any]
) -> str:
    """The YAML of the calibrated config: a comment block with the calibration, `_BASE_`
    (`config_file`, see `_base_path`; none when empty), the `overrides` (dotted key ->
    value, nested) and AUTOFOCUS.THRESHOLDS = the calibrated thresholds."""
    lines = [
        "# AUTOFOCUS.THRESHOLDS calibrated by python -m autofocus.calibrate on "
        f"{calibration.images} images, target coverage {calibration.target:g}.",
    ]
    for tr in calibration.transitions:
        c = tr.chosen
        lines.append(
            f"# transition {tr.transition}: t = {c.threshold:g}, coverage {c.coverage:.4f}, "
            f"empty rate {c.counts.empty_rate:.4f}, {c.scale_fraction:.4f} of scale "
            f"{tr.transition + 1}" + ("" if tr.met_target else " (target not reached)")
        )
    lines.append(f"# pixel fraction of the calibrated cascade: {calibration.pixel_fraction:.4f}")
    data: dict[str, Any] = {}
    if config_file:
        data["_BASE_"] = _base_path(config_file, output)
    items = {**overrides, "AUTOFOCUS.THRESHOLDS": [float(t) for t in calibration.thresholds]}
    for key, value in items.items():
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = _plain(value)
    return "\n".join(lines) + "\n" + yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


def _row_stats(row: ThresholdRow) -> tuple[int, int, float, float, int]:
    """What a printed row shows, to fold runs of equal rows."""
    c = row.counts
    return c.responsible, c.missed, c.chip_area, c.empty_area, row.finer_pixels


def format_table(calibration: Calibration) -> list[str]:
    """The printed table, one line each: a block per transition (threshold, coverage, missing
    rate, empty rate, fraction of scale `s+1` processed; of a run of thresholds with equal
    results only the first and the last are shown), the chosen row marked `*`, then the
    calibrated cascade's pixel fraction."""
    lines: list[str] = []
    for tr in calibration.transitions:
        lines.append(
            f"transition {tr.transition} -> {tr.transition + 1} "
            f"({tr.chosen.counts.responsible} boxes need a finer scale):"
        )
        lines.append(
            f"  {'threshold':>9} {'coverage':>9} {'missing':>8} {'empty':>7} "
            f"{f'scale {tr.transition + 1} px':>11}"
        )
        stats = [_row_stats(r) for r in tr.rows]
        for i, r in enumerate(tr.rows):
            inner = 0 < i < len(stats) - 1 and stats[i - 1] == stats[i] == stats[i + 1]
            if inner and r is not tr.chosen:
                continue  # inside a run of equal rows: its first and last row stand for it
            mark = " *" if r is tr.chosen else ""
            lines.append(
                f"  {r.threshold:>9.3f} {r.coverage:>9.4f} {r.counts.missing_rate:>8.4f} "
                f"{r.counts.empty_rate:>7.4f} {r.scale_fraction:>11.4f}{mark}"
            )
        if not tr.met_target:
            lines.append(f"  (no threshold reaches coverage {calibration.target:g})")
    lines.append(
        f"thresholds {list(calibration.thresholds)}: {calibration.pixel_fraction:.4f} of the full "
        f"pyramid's pixels on {calibration.images} images"
    )
    return lines


def _check_output(path: str) -> None:
    """One `error:` line unless `path` can be written (a file in an existing, writable folder)."""
    folder = os.path.dirname(os.path.abspath(path))
    if not path or os.path.isdir(path):
        exit_with_error(f"--output {path!r}: must name a YAML file, not a folder")
    if not os.path.isdir(folder):
        exit_with_error(f"--output {path!r}: the folder {folder!r} does not exist")
    if not os.access(folder, os.W_OK):
        exit_with_error(f"--output {path!r}: the folder {folder!r} is not writable")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m autofocus.calibrate`; returns the exit status (module doc)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s"
    )
    args = parse_args(argv)
    with cli_errors():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    """``main``'s body (a user's mistake is one ``error: ...`` line, `sniper.cli_errors`)."""
    try:
        target = check_target(args.target)
        grid = check_thresholds(args.thresholds)
    except ValueError as err:
        raise ConfigError(f"--{err}") from None
    if args.num_images is not None and args.num_images < 1:
        raise ConfigError(f"--num-images must be >= 1, got {args.num_images}")
    _check_output(args.output)
    load = functools.partial(load_config_or_exit, setup=setup_cfg)
    cfg = load(
        args.config_file, register_coco_opts(args.config_file, args.opts, args.register_coco, load)
    )
    build_dataset_catalog_or_exit(cfg, check=False)
    register_builtin_datasets()
    dataset = args.dataset or (cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else "")
    if dataset not in DatasetCatalog.list():
        names = sorted(DatasetCatalog.list())
        known = ", ".join(names[:10]) + (f", ... ({len(names)} in all)" if len(names) > 10 else "")
        raise ConfigError(f"--dataset {dataset!r}: not a registered dataset (known: {known})")
    if len(cfg.AUTOFOCUS.SCALES) < 2:
        raise ConfigError("AUTOFOCUS.SCALES has one scale: there is no transition to calibrate")
    preflight(cfg)
    records = get_records([dataset])[: args.num_images]
    cascade = AutoFocusPredictor(cfg, input_format=cfg.INPUT.FORMAT).cascade
    try:
        calibration = calibrate_thresholds(
            cascade,
            records,
            lambda r: read_test_image(r, cfg.INPUT.FORMAT, dataset),
            target=target,
            thresholds=grid,
            tolerance=args.tolerance,
        )
    except KeyboardInterrupt:
        print("interrupted: nothing written", file=sys.stderr, flush=True)
        return INTERRUPTED
    except NoReadableImages as err:
        raise ConfigError(f"--dataset {dataset}: {err}") from None
    print(f"{dataset}: {calibration.images} images, target coverage {target:g}")
    print("\n".join(format_table(calibration)))
    skip = {"MODEL.WEIGHTS", "AUTOFOCUS.THRESHOLDS"}
    given = {key: _value(cfg, key) for key in args.opts[::2] if key not in skip}
    text = calibrated_config_text(args.config_file, args.output, calibration, given)
    atomic_write(args.output, lambda f: f.write(text.encode("utf-8")))
    print(f"wrote {args.output}: AUTOFOCUS.THRESHOLDS {list(calibration.thresholds)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
