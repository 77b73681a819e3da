"""Selects the implementation behind the public planner functions.

The compiled extension is checked when it is first loaded: its ``ABI_VERSION`` (from
``chipping/csrc/version.h``, fixed when it was built) must equal ``ABI_VERSION`` here (the
version of the sources next to it), else a stale build would be called with arguments it does
not understand.
"""

from __future__ import annotations

from types import ModuleType

# Interface version of the sources; must equal kAbiVersion in chipping/csrc/version.h.
ABI_VERSION = 2

_checked: ModuleType | None = None


def check_abi(module: ModuleType) -> ModuleType:
    """Returns ``module`` (the compiled planner) if it was built from the current sources.

    Raises:
        ImportError: its ``ABI_VERSION`` differs from ``chipping._backend.ABI_VERSION``
            (or it has none: built before the version existed).
    """
    built = getattr(module, "ABI_VERSION", None)
    if built != ABI_VERSION:
        raise ImportError(
            f"the compiled chipping._planner is stale (built from version "
            f"{'none' if built is None else built}, sources are {ABI_VERSION}): rebuild with "
            f"pip install -e ."
        )
    return module


def backend_module(backend: str) -> ModuleType:
    """``chipping._planner`` for "compiled", ``chipping._reference`` for "reference"."""
    global _checked
    if backend == "compiled":
        from chipping import _planner

        if _checked is not _planner:
            _checked = check_abi(_planner)
        return _planner
    if backend == "reference":
        from chipping import _reference

        return _reference
    raise ValueError(f"backend must be 'compiled' or 'reference', got {backend!r}")
