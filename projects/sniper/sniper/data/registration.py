"""The datasets of a job: built-ins plus the COCO jsons the config or command line names.

``DATASETS.REGISTER_COCO`` is a list of ``[name, json_file, image_root]`` entries (paths
relative to the working directory); the ``--register-coco NAME JSON IMAGE_ROOT`` flag of
every entry point appends to it (``sniper.register_args``), so the entries are part of the
resolved config: saved in ``OUTPUT_DIR/config.yaml``, given to every process of a
distributed job, and registered there by ``build_dataset_catalog(cfg)`` before any data is
read. Registration is idempotent, so every process and every builder may call it.

``build_dataset_catalog_or_exit`` is the entry points' check before they spawn workers: an
unregistered name or a missing file is one ``error: ...`` line and exit status 2.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from .builtin import builtin_dataset_names, check_builtin_files, register_all_builtin
from .catalog import DatasetCatalog, MetadataCatalog
from .coco import register_coco_instances
from .synthetic import SYNTHETIC_SPLITS, register_synthetic_datasets

__all__ = [
    "build_dataset_catalog",
    "build_dataset_catalog_or_exit",
    "check_datasets",
    "register_builtin_datasets",
    "register_coco_entries",
]

_SOURCE = "DATASETS.REGISTER_COCO / --register-coco"
# Names registered by register_coco_entries -> (json_file, image_root), absolute.
_USER: dict[str, tuple[str, str]] = {}


def register_builtin_datasets() -> None:
    """Register the synthetic and the real built-in datasets (metadata only; idempotent)."""
    register_synthetic_datasets()
    register_all_builtin()


def _entry(entry: Any) -> tuple[str, str, str]:
    """``(name, json_file, image_root)`` of one entry, or ``ValueError`` naming it."""
    if (
        not isinstance(entry, list | tuple)
        or len(entry) != 3
        or not all(isinstance(v, str) and v for v in entry)
    ):
        raise ValueError(
            f"{_SOURCE}: entry {entry!r} must be [name, json_file, image_root] "
            "(three non-empty strings)"
        )
    return entry[0], entry[1], entry[2]


def register_coco_entries(entries: Sequence[Sequence[str]]) -> list[str]:
    """Register each ``[name, json_file, image_root]`` as a COCO-json dataset.

    Paths are made absolute against the working directory. An entry already registered
    here with the same paths is skipped, so repeated calls (every process, every builder)
    are harmless.

    Returns:
        The entries' names, in order.
    Raises:
        ValueError: a malformed entry, a name given twice with different paths, a built-in
            name, or a name registered by something else.
    """
    builtin = set(builtin_dataset_names()) | set(SYNTHETIC_SPLITS)
    names: list[str] = []
    for raw in entries:
        name, json_file, image_root = _entry(raw)
        paths = (os.path.abspath(json_file), os.path.abspath(image_root))
        if name in builtin:
            raise ValueError(
                f"{_SOURCE}: '{name}' is a built-in dataset name; choose another name "
                "(or put the data in the built-in layout under $SNIPER_DATASETS)"
            )
        if name in _USER and name in DatasetCatalog.list():
            if _USER[name] != paths:
                raise ValueError(
                    f"{_SOURCE}: dataset '{name}' is already registered with json "
                    f"{_USER[name][0]} and images {_USER[name][1]}, not {paths[0]}, {paths[1]}"
                )
        elif name in DatasetCatalog.list():
            raise ValueError(f"{_SOURCE}: dataset '{name}' is already registered elsewhere")
        else:
            MetadataCatalog.remove(name)  # metadata left by an earlier registration
            register_coco_instances(name, *paths)
            _USER[name] = paths
        names.append(name)
    return names


def check_datasets(names: Sequence[str], key: str) -> None:
    """Check that every dataset of ``names`` is registered and its files are on disk.

    Built-ins are checked by ``sniper.data.builtin.check_builtin_files``, COCO entries
    registered here by their json file and image folder; other datasets (synthetic ones,
    generated on first use, or registered in Python) only by name.

    Args:
        names: dataset names; key: the config key they come from (for the message).
    Raises:
        KeyError: a name is not registered. FileNotFoundError: a file is missing.
    """
    for name in names:
        if name not in DatasetCatalog.list():
            known = ", ".join(DatasetCatalog.list()) or "<none>"
            raise KeyError(
                f"dataset '{name}' ({key}) is not registered; registered: {known}; register a "
                "COCO json with --register-coco NAME JSON IMAGE_ROOT or DATASETS.REGISTER_COCO"
            )
        check_builtin_files(name)
        if name in _USER:
            json_file, image_root = _USER[name]
            if not os.path.isfile(json_file):
                raise FileNotFoundError(f"dataset '{name}' ({_SOURCE}): no json file {json_file}")
            if not os.path.isdir(image_root):
                raise FileNotFoundError(
                    f"dataset '{name}' ({_SOURCE}): no image folder {image_root}"
                )


def build_dataset_catalog(cfg: Any, check: bool = True) -> list[str]:
    """Register ``cfg.DATASETS.REGISTER_COCO`` and the built-ins; check DATASETS.TRAIN/TEST.

    Args:
        check: False skips the check of DATASETS.TRAIN/TEST (tools that only read the
            metadata, such as the demo's class names).
    Returns:
        The names registered from ``DATASETS.REGISTER_COCO``.
    Raises:
        ValueError, KeyError, FileNotFoundError: see ``register_coco_entries`` and
        ``check_datasets``.
    """
    names = register_coco_entries(cfg.DATASETS.REGISTER_COCO)
    register_builtin_datasets()
    if check:
        check_datasets(cfg.DATASETS.TRAIN, "DATASETS.TRAIN")
        check_datasets(cfg.DATASETS.TEST, "DATASETS.TEST")
    return names


def build_dataset_catalog_or_exit(cfg: Any, check: bool = True) -> list[str]:
    """``build_dataset_catalog(cfg, check)``, or print one ``error: ...`` line, exit 2."""
    try:
        return build_dataset_catalog(cfg, check)
    except (KeyError, ValueError, OSError) as err:
        message = err.args[0] if len(err.args) == 1 else str(err)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2) from None
