"""Built-in real datasets under ``$SNIPER_DATASETS``, registered lazily as detectron2 does.

Names and folder layouts are those of detectron2's builtin catalog (``DETECTRON2_DATASETS``
becomes ``$SNIPER_DATASETS``, default ``~/.cache/sniper/datasets``, see
``sniper.data.synthetic.default_cache_root``)::

    $SNIPER_DATASETS/
      coco/annotations/instances_{train,val}{2014,2017}.json
                       instances_{minival,valminusminival}2014.json
                       image_info_test{,-dev}2017.json        (test: no annotations)
      coco/{train,val}2014/  coco/{train,val,test}2017/       (image files)
      VOC2007/  VOC2012/     {Annotations/*.xml, ImageSets/Main/<split>.txt, JPEGImages/*.jpg}
      visdrone/VisDrone2019-DET-{train,val,test-dev}/{images/*.jpg, annotations/*.txt}

VisDrone (not in detectron2) keeps the official zips' folders under ``visdrone/``; on first
use each split is converted with ``sniper.data.visdrone.convert_visdrone_to_coco`` into the
cached ``visdrone/annotations/<name>.json`` (written atomically, so ranks converting at once
are safe), converted again when an image or txt file is newer than the cache.

Registration (``register_all_builtin``) only sets metadata: ``evaluator_type`` ("coco" or
"pascal_voc"), ``thing_classes`` (VOC, VisDrone; COCO's come from its json on load),
``json_file`` / ``image_root`` (COCO, VisDrone), ``dirname`` / ``split`` / ``year`` (VOC).
The VOC loader is ``sniper.data.voc.load_voc_instances``; without that module the VOC
names are not registered. Loading a dataset whose files are missing raises
``DatasetNotFoundError``: one line naming the dataset, the path looked for, the expected
layout and ``$SNIPER_DATASETS``.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable

from .catalog import DatasetCatalog, MetadataCatalog
from .coco import load_coco_json
from .synthetic import default_cache_root
from .visdrone import VISDRONE_CLASSES, convert_visdrone_to_coco

try:
    import sniper.data.voc as _voc
except ModuleNotFoundError as _err:  # only a missing sniper.data.voc itself is tolerated
    if _err.name != "sniper.data.voc":
        raise
    _voc = None

__all__ = [
    "BUILTIN_COCO",
    "BUILTIN_VISDRONE",
    "BUILTIN_VOC",
    "DatasetNotFoundError",
    "builtin_dataset_names",
    "check_builtin_files",
    "register_all_builtin",
]

logger = logging.getLogger("sniper.data")

#: name -> (image folder, json file), relative to ``$SNIPER_DATASETS`` (detectron2's table).
BUILTIN_COCO: dict[str, tuple[str, str]] = {
    "coco_2014_train": ("coco/train2014", "coco/annotations/instances_train2014.json"),
    "coco_2014_val": ("coco/val2014", "coco/annotations/instances_val2014.json"),
    "coco_2014_minival": ("coco/val2014", "coco/annotations/instances_minival2014.json"),
    "coco_2014_valminusminival": (
        "coco/val2014",
        "coco/annotations/instances_valminusminival2014.json",
    ),
    "coco_2017_train": ("coco/train2017", "coco/annotations/instances_train2017.json"),
    "coco_2017_val": ("coco/val2017", "coco/annotations/instances_val2017.json"),
    "coco_2017_test": ("coco/test2017", "coco/annotations/image_info_test2017.json"),
    "coco_2017_test-dev": ("coco/test2017", "coco/annotations/image_info_test-dev2017.json"),
}
#: COCO splits whose json is an image-info file without annotations.
_COCO_WITHOUT_ANNOTATIONS = frozenset({"coco_2017_test", "coco_2017_test-dev"})

#: name -> (VOC folder relative to ``$SNIPER_DATASETS``, ImageSets/Main split).
BUILTIN_VOC: dict[str, tuple[str, str]] = {
    f"voc_{year}_{split}": (f"VOC{year}", split)
    for year, splits in (
        (2007, ("trainval", "train", "val", "test")),
        (2012, ("trainval", "train", "val")),
    )
    for split in splits
}

#: name -> official VisDrone-DET split folder relative to ``$SNIPER_DATASETS``.
BUILTIN_VISDRONE: dict[str, str] = {
    "visdrone_2019_train": "visdrone/VisDrone2019-DET-train",
    "visdrone_2019_val": "visdrone/VisDrone2019-DET-val",
    "visdrone_2019_test-dev": "visdrone/VisDrone2019-DET-test-dev",
}

# Names this module registered -> (root, loader): re-pointed when the root changes.
_REGISTERED: dict[str, tuple[str, Callable[[], list[dict]]]] = {}


class DatasetNotFoundError(FileNotFoundError):
    """A built-in or configured dataset's file or folder is missing (one-line message)."""


def builtin_dataset_names() -> list[str]:
    """Every name ``register_all_builtin`` may register (VOC only with ``sniper.data.voc``)."""
    voc = list(BUILTIN_VOC) if _voc is not None else []
    return [*BUILTIN_COCO, *voc, *BUILTIN_VISDRONE]


def _layout(name: str) -> str:
    """The expected layout of ``name``'s files, relative to ``$SNIPER_DATASETS``."""
    if name in BUILTIN_COCO:
        images, json_file = BUILTIN_COCO[name]
        return f"{json_file} and the images in {images}/"
    if name in BUILTIN_VOC:
        folder, split = BUILTIN_VOC[name]
        return f"{folder}/{{Annotations/*.xml, ImageSets/Main/{split}.txt, JPEGImages/*.jpg}}"
    folder = BUILTIN_VISDRONE[name]
    return f"{folder}/{{images/*.jpg, annotations/*.txt}} (the official VisDrone-DET zip)"


def _missing(name: str, root: str, path: str) -> DatasetNotFoundError:
    env = os.environ.get("SNIPER_DATASETS")
    now = f"$SNIPER_DATASETS is {env}" if env else "$SNIPER_DATASETS is unset"
    return DatasetNotFoundError(
        f"dataset '{name}': {path} not found; expected {_layout(name)} under {root}; "
        f"set $SNIPER_DATASETS to the folder that holds them ({now})"
    )


def _required_paths(name: str, root: str) -> list[tuple[str, bool]]:
    """(path, is_dir) that must exist for ``name`` under ``root``, in the order checked."""
    if name in BUILTIN_COCO:
        images, json_file = BUILTIN_COCO[name]
        return [(os.path.join(root, json_file), False), (os.path.join(root, images), True)]
    if name in BUILTIN_VOC:
        dirname = os.path.join(root, BUILTIN_VOC[name][0])
        split_file = os.path.join(dirname, "ImageSets", "Main", f"{BUILTIN_VOC[name][1]}.txt")
        return [
            (split_file, False),
            (os.path.join(dirname, "Annotations"), True),
            (os.path.join(dirname, "JPEGImages"), True),
        ]
    folder = os.path.join(root, BUILTIN_VISDRONE[name])
    return [(os.path.join(folder, "images"), True), (os.path.join(folder, "annotations"), True)]


def check_builtin_files(name: str) -> None:
    """Raise ``DatasetNotFoundError`` if a file or folder of built-in ``name`` is missing.

    A no-op for names this module did not register (user or synthetic datasets).
    """
    if name not in _REGISTERED:
        return
    root = _REGISTERED[name][0]
    for path, is_dir in _required_paths(name, root):
        if not (os.path.isdir(path) if is_dir else os.path.isfile(path)):
            raise _missing(name, root, path)


def _load_coco(name: str, root: str) -> list[dict]:
    check_builtin_files(name)
    images, json_file = BUILTIN_COCO[name]
    return load_coco_json(
        os.path.join(root, json_file),
        os.path.join(root, images),
        name,
        require_annotations=name not in _COCO_WITHOUT_ANNOTATIONS,
    )


def _load_voc(name: str, root: str) -> list[dict]:
    check_builtin_files(name)
    folder, split = BUILTIN_VOC[name]
    return _voc.load_voc_instances(os.path.join(root, folder), split, _voc.VOC_CLASS_NAMES)


def _visdrone_json(name: str, root: str) -> str:
    return os.path.join(root, "visdrone", "annotations", f"{name}.json")


def _cache_is_fresh(json_file: str, image_dir: str, ann_dir: str) -> bool:
    """The cached json exists and no image, txt file or folder is newer than it."""
    try:
        cached = os.stat(json_file).st_mtime_ns
    except OSError:
        return False
    newest = max(os.stat(image_dir).st_mtime_ns, os.stat(ann_dir).st_mtime_ns)
    for folder in (image_dir, ann_dir):
        with os.scandir(folder) as entries:
            for entry in entries:
                newest = max(newest, entry.stat().st_mtime_ns)
    return cached >= newest


def _load_visdrone(name: str, root: str) -> list[dict]:
    check_builtin_files(name)
    folder = os.path.join(root, BUILTIN_VISDRONE[name])
    image_dir, ann_dir = os.path.join(folder, "images"), os.path.join(folder, "annotations")
    json_file = _visdrone_json(name, root)
    if not _cache_is_fresh(json_file, image_dir, ann_dir):
        logger.info("converting %s (VisDrone-DET) to %s", folder, json_file)
        convert_visdrone_to_coco(image_dir, ann_dir, json_file)
    return load_coco_json(json_file, image_dir, name)


def _metadata(name: str, root: str) -> dict:
    if name in BUILTIN_COCO:
        images, json_file = BUILTIN_COCO[name]
        return {
            "json_file": os.path.join(root, json_file),
            "image_root": os.path.join(root, images),
            "evaluator_type": "coco",
        }
    if name in BUILTIN_VOC:
        folder, split = BUILTIN_VOC[name]
        return {
            "thing_classes": list(_voc.VOC_CLASS_NAMES),
            "dirname": os.path.join(root, folder),
            "split": split,
            "year": int(folder[-4:]),
            "evaluator_type": "pascal_voc",
        }
    return {
        "thing_classes": list(VISDRONE_CLASSES),
        "thing_dataset_id_to_contiguous_id": {i + 1: i for i in range(len(VISDRONE_CLASSES))},
        "json_file": _visdrone_json(name, root),
        "image_root": os.path.join(root, BUILTIN_VISDRONE[name], "images"),
        "evaluator_type": "coco",
    }


def _loader(name: str) -> Callable[[str, str], list[dict]]:
    if name in BUILTIN_COCO:
        return _load_coco
    return _load_voc if name in BUILTIN_VOC else _load_visdrone


def register_all_builtin(root: str | os.PathLike | None = None) -> list[str]:
    """Register the built-in COCO, VOC and VisDrone datasets under ``root``, lazily.

    Nothing is read here; ``DatasetCatalog.get(name)`` checks the files and loads them.
    ``root`` defaults to ``default_cache_root()`` (``$SNIPER_DATASETS``). Calling again with
    the same root is a no-op; with another root, the names this module registered are
    re-pointed there. A name that something else registered first is left alone.

    Returns:
        The names registered by this module, in table order.
    """
    root = os.path.abspath(os.fspath(root) if root is not None else default_cache_root())
    names = builtin_dataset_names()
    for name in names:
        current = DatasetCatalog._REGISTRY.get(name)
        ours = _REGISTERED.pop(name, None)
        if ours is not None and current is ours[1]:
            if ours[0] == root:
                _REGISTERED[name] = ours
                continue
            DatasetCatalog.remove(name)  # ours, pointing at another root: re-point it
            current = None
        if current is not None:
            continue  # registered by someone else (e.g. register_coco_instances): theirs wins
        MetadataCatalog.remove(name)  # stale metadata of an earlier root or a removed entry
        func = functools.partial(_loader(name), name, root)
        DatasetCatalog.register(name, func)
        MetadataCatalog.get(name).set(**_metadata(name, root))
        _REGISTERED[name] = (root, func)
    return [n for n in names if n in _REGISTERED]
