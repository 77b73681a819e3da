"""Command-line helpers shared by `python -m autofocus.visualize_cli` and the benchmark.

Config overrides (`KEY VALUE` pairs) may sit anywhere among the flags, e.g.
`--config-file c.yaml MODEL.WEIGHTS m.pth --input img.jpg`: every word argparse does not
know is an override; a bare `--` is skipped; an unknown `--flag` is an error.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from sniper.data.build import register_builtin_datasets
from sniper.data.catalog import DatasetCatalog
from sniper.inputs import list_image_files

__all__ = ["parse_with_overrides", "resolve_inputs"]

logger = logging.getLogger(__name__)


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


def resolve_inputs(
    inputs: Sequence[str], num_images: int | None, skipped: list[str] | None = None
) -> list[dict]:
    """Image records of `inputs`: registered dataset names (built-ins included) give their
    records, anything else image files, folders or glob patterns (`sniper.inputs.list_image_files`)
    gives `{"file_name": path}` records.

    Args:
        num_images: keep at most this many records per input (None = all).
        skipped: receives one ``"path: reason"`` entry per input that gave no file (missing,
            not a regular file, ...), each also warned about.

    Raises:
        FileNotFoundError: no input gave any record, naming the inputs.
    """
    register_builtin_datasets()
    records: list[dict] = []
    skips: list[str] = []
    for item in inputs:
        if item in DatasetCatalog.list():
            found = list(DatasetCatalog.get(item))
        else:
            before = len(skips)
            try:
                found = [{"file_name": path} for path in list_image_files([item], skips)]
            except FileNotFoundError as err:
                if len(skips) == before:  # nothing matched (else the skipped files are named)
                    skips.append(f"{item}: {err}")
                    logger.warning("skipping %s: %s", item, err)
                found = []
        records += found[:num_images] if num_images is not None else found
    if skipped is not None:
        skipped += skips
    if not records:
        raise FileNotFoundError(
            f"no input image in {' '.join(inputs)}" + (f" ({'; '.join(skips)})" if skips else "")
        )
    return records
