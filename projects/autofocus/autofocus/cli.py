"""Command-line helpers shared by `python -m autofocus.visualize_cli` and the benchmark.

Config overrides (`KEY VALUE` pairs) may sit anywhere among the flags, e.g.
`--config-file c.yaml MODEL.WEIGHTS m.pth --input img.jpg`: every word argparse does not
know is an override; a bare `--` is skipped; an unknown `--flag` is an error.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from sniper.data.build import register_builtin_datasets
from sniper.data.catalog import DatasetCatalog
from sniper.inputs import list_image_files

__all__ = ["parse_with_overrides", "resolve_inputs"]


def parse_with_overrides(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None = None
) -> argparse.Namespace:
    """`parser.parse_known_args`, with the unknown words in `args.opts` (an even-length list of
    `KEY VALUE` words); exits with status 2 on an unknown flag or an odd count."""
    args, extra = parser.parse_known_args(argv)
    opts = [word for word in extra if word != "--"]
    flags = [word for word in opts if word.startswith("--")]
    if flags:
        parser.error(f"unrecognized arguments: {' '.join(flags)}")
    if len(opts) % 2:
        parser.error(f"config overrides must be KEY VALUE pairs, got {' '.join(opts)}")
    args.opts = opts
    return args


def resolve_inputs(inputs: Sequence[str], num_images: int | None) -> list[dict]:
    """Image records of `inputs`: registered dataset names (built-ins included) give their
    records, anything else image files, folders or glob patterns (`sniper.inputs.list_image_files`)
    gives `{"file_name": path}` records.

    Args:
        num_images: keep at most this many records per input (None = all).

    Raises:
        FileNotFoundError: a non-dataset input matched no image.
    """
    register_builtin_datasets()
    records: list[dict] = []
    for item in inputs:
        if item in DatasetCatalog.list():
            found = list(DatasetCatalog.get(item))
        else:
            found = [{"file_name": path} for path in list_image_files([item])]
        records += found[:num_images] if num_images is not None else found
    return records
