"""Selects the implementation behind the public planner functions."""

from __future__ import annotations

from types import ModuleType


def backend_module(backend: str) -> ModuleType:
    """``chipping._planner`` for "compiled", ``chipping._reference`` for "reference"."""
    if backend == "compiled":
        from chipping import _planner

        return _planner
    if backend == "reference":
        from chipping import _reference

        return _reference
    raise ValueError(f"backend must be 'compiled' or 'reference', got {backend!r}")
