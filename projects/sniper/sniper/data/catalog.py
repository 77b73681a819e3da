"""Dataset and metadata registries, in the spirit of detectron2's catalogs.

``DatasetCatalog`` maps a unique dataset name to a zero-argument function returning the
dataset's records (``list[dict]``, one dict per image; for COCO-json datasets see
``sniper.data.coco`` for the record format). The function is called on every
:meth:`DatasetCatalog.get`, so registration is cheap and loading is lazy.

``MetadataCatalog`` maps a dataset name to a :class:`Metadata` attribute bag (class names,
id mappings, evaluator type, ...), created on first access. A metadata attribute, once set,
cannot be changed to a different value (re-setting the same value is allowed), which
catches two registrations that disagree about, e.g., ``thing_classes``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["DatasetCatalog", "Metadata", "MetadataCatalog"]


class DatasetCatalog:
    """Class-level registry ``name -> function returning list[dict]``; names are unique."""

    _REGISTRY: dict[str, Callable[[], list[dict]]] = {}

    @staticmethod
    def register(name: str, func: Callable[[], list[dict]]) -> None:
        """Register ``func`` (no arguments, returns the records) under ``name``.

        Raises:
            ValueError: ``name`` is already registered.
            TypeError: ``func`` is not callable or ``name`` is not a non-empty string.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"dataset name must be a non-empty string, got {name!r}")
        if not callable(func):
            raise TypeError(f"dataset '{name}': loader must be callable, got {type(func)}")
        if name in DatasetCatalog._REGISTRY:
            raise ValueError(f"dataset '{name}' is already registered")
        DatasetCatalog._REGISTRY[name] = func

    @staticmethod
    def get(name: str) -> list[dict]:
        """Call the loader registered under ``name`` and return its records.

        Raises:
            KeyError: ``name`` is not registered; the message lists the registered names.
            TypeError: the loader did not return a list.
        """
        try:
            func = DatasetCatalog._REGISTRY[name]
        except KeyError:
            known = ", ".join(sorted(DatasetCatalog._REGISTRY)) or "<none>"
            raise KeyError(
                f"dataset '{name}' is not registered; registered datasets: {known}"
            ) from None
        records = func()
        if not isinstance(records, list):
            raise TypeError(
                f"dataset '{name}': loader returned {type(records).__name__}, expected list"
            )
        return records

    @staticmethod
    def list() -> list[str]:
        """Names of all registered datasets, sorted."""
        return sorted(DatasetCatalog._REGISTRY)

    @staticmethod
    def remove(name: str) -> None:
        """Unregister ``name``.

        Raises:
            KeyError: ``name`` is not registered.
        """
        if name not in DatasetCatalog._REGISTRY:
            raise KeyError(f"dataset '{name}' is not registered")
        del DatasetCatalog._REGISTRY[name]


def _same_value(old: Any, new: Any) -> bool:
    """Equality that also works for numpy arrays (elementwise equality would be ambiguous)."""
    if isinstance(old, np.ndarray) or isinstance(new, np.ndarray):
        return (
            isinstance(old, np.ndarray)
            and isinstance(new, np.ndarray)
            and old.dtype == new.dtype
            and np.array_equal(old, new)
        )
    try:
        return bool(old == new)
    except (TypeError, ValueError):
        return old is new


class Metadata:
    """Attribute bag for one dataset.

    Attributes are set with :meth:`set` (or plain assignment); setting an attribute that
    already holds a *different* value raises ``ValueError``. Reading a missing attribute
    raises ``AttributeError`` listing the available keys; use :meth:`get` for a default.
    """

    def __init__(self, name: str = "") -> None:
        object.__setattr__(self, "name", name)

    def __getattr__(self, key: str) -> Any:
        # Only called when normal lookup fails, i.e. the attribute is missing.
        if key.startswith("__"):
            raise AttributeError(key)
        keys = ", ".join(sorted(self.__dict__)) or "<none>"
        raise AttributeError(
            f"metadata of dataset '{self.__dict__.get('name', '')}' has no attribute "
            f"'{key}'; available: {keys}"
        )

    def __setattr__(self, key: str, value: Any) -> None:
        if key in self.__dict__ and not _same_value(self.__dict__[key], value):
            raise ValueError(
                f"metadata '{key}' of dataset '{self.__dict__.get('name', '')}' is already "
                f"set to {self.__dict__[key]!r}; refusing to change it to {value!r}"
            )
        object.__setattr__(self, key, value)

    def set(self, **kwargs: Any) -> Metadata:
        """Set several attributes at once; returns ``self`` for chaining."""
        for key, value in kwargs.items():
            setattr(self, key, value)
        return self

    def get(self, key: str, default: Any = None) -> Any:
        """Value of attribute ``key``, or ``default`` when it is not set."""
        return self.__dict__.get(key, default)

    def as_dict(self) -> dict[str, Any]:
        """Shallow copy of all attributes (including ``name``)."""
        return dict(self.__dict__)

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items())
        return f"Metadata({items})"


class MetadataCatalog:
    """Class-level registry ``name -> Metadata``; an entry is created on first access."""

    _REGISTRY: dict[str, Metadata] = {}

    @staticmethod
    def get(name: str) -> Metadata:
        """The :class:`Metadata` of ``name`` (created empty, with ``.name``, if new)."""
        meta = MetadataCatalog._REGISTRY.get(name)
        if meta is None:
            meta = Metadata(name=name)
            MetadataCatalog._REGISTRY[name] = meta
        return meta

    @staticmethod
    def remove(name: str) -> None:
        """Forget the metadata of ``name`` (no error when there is none)."""
        MetadataCatalog._REGISTRY.pop(name, None)
