"""Import an optional dependency, or fail with the pip command of the extra that brings it."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["import_optional"]


def import_optional(module: str, extra: str) -> ModuleType:
    """``importlib.import_module(module)``; an ImportError naming the extra when it is absent.

    Raises:
        ImportError: ``module`` (or one of its own dependencies) cannot be imported; the
            message gives ``pip install "sniper-autofocus[<extra>]"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{module} is not installed (or fails to import: {err}); it is the optional "
            f'extra [{extra}]: pip install "sniper-autofocus[{extra}]"'
        ) from err
