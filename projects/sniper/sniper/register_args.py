"""The ``--register-coco NAME JSON IMAGE_ROOT`` flag of every entry point (no torch).

The flag (repeatable, before the trailing ``KEY VALUE`` overrides) appends
``[NAME, JSON, IMAGE_ROOT]`` to ``DATASETS.REGISTER_COCO`` by turning into one more
override, so the entries end up in the resolved config like any other key: saved in
``OUTPUT_DIR/config.yaml``, passed to every process of a distributed job, and registered
by ``sniper.data.registration.build_dataset_catalog`` in each of them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["add_register_coco_argument", "register_coco_opts"]


def add_register_coco_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--register-coco NAME JSON IMAGE_ROOT`` (repeatable) to ``parser``; the parsed
    value ``args.register_coco`` is a list of ``[name, json, image_root]`` lists."""
    parser.add_argument(
        "--register-coco",
        nargs=3,
        action="append",
        default=[],
        metavar=("NAME", "JSON", "IMAGE_ROOT"),
        help="register a COCO-json dataset under NAME (appended to DATASETS.REGISTER_COCO; "
        "repeatable; use NAME in DATASETS.TRAIN / DATASETS.TEST)",
    )


def register_coco_opts(
    config_file: str,
    opts: Sequence[str],
    entries: Sequence[Sequence[str]],
    load: Callable[[str, list[str]], Any],
) -> list[str]:
    """``opts`` plus the override that appends ``entries`` to ``DATASETS.REGISTER_COCO``.

    Args:
        config_file, opts: the command line's config file and ``KEY VALUE`` overrides.
        entries: ``[name, json, image_root]`` triples (``args.register_coco``).
        load: ``load(config_file, opts)`` returns the config (e.g. ``setup_cfg`` or
            ``load_config_or_exit``): the entries of the file and overrides are kept.
    Returns:
        ``opts`` unchanged when ``entries`` is empty, else
        ``[*opts, "DATASETS.REGISTER_COCO", "<all entries as a Python literal>"]``.
    """
    if not entries:
        return list(opts)
    cfg = load(config_file, list(opts))
    merged = [list(e) for e in cfg.DATASETS.REGISTER_COCO] + [list(e) for e in entries]
    return [*opts, "DATASETS.REGISTER_COCO", repr(merged)]
