"""The one rule for scalar arguments of the planner's public API (docs/design.md section 7).

Every public ``chipping`` function checks its scalar arguments here, at the API's edge, so that
any absurd value (None, a string, a bool where a number is meant, NaN, inf, 2**63, ...) is a
``ValueError`` naming the argument and the value, never a ``TypeError``, ``OverflowError`` or a
pybind11 conversion error. Python and numpy numbers are accepted alike; ``bool`` and
``numpy.bool_`` are not numbers here.
"""

from __future__ import annotations

import math

import numpy as np

# Largest count or integer parameter passed to the compiled planner (int32 results).
MAX_INT32 = (1 << 31) - 1
MAX_UINT64 = (1 << 64) - 1


def is_number(x: object) -> bool:
    """True for Python/numpy ints and floats; False for bools, strings, None, arrays."""
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(
        x, (bool, np.bool_)
    )


def check_int(value: object, name: str, minimum: int, maximum: int = MAX_INT32) -> int:
    """``value`` as a Python int in ``[minimum, maximum]``.

    Accepts ints, numpy integers and whole-valued finite floats (``512.0``); anything else is a
    ``ValueError`` naming ``name`` and the value.
    """
    if type(value) is int and minimum <= value <= maximum:  # the common case, fast
        return value
    if not is_number(value):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, (float, np.floating)):
        if not (math.isfinite(float(value)) and float(value).is_integer()):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    v = int(value)
    if v < minimum or v > maximum:
        raise ValueError(f"{name} must be in [{minimum}, {maximum}], got {v}")
    return v


def check_real(
    value: object,
    name: str,
    minimum: float = -math.inf,
    maximum: float = math.inf,
    *,
    open_min: bool = False,
    allow_inf: bool = False,
) -> float:
    """``value`` as a float in ``[minimum, maximum]`` (``(minimum, ...`` if ``open_min``).

    NaN is always refused, inf unless ``allow_inf``.
    """
    if not is_number(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        v = float(value)
    except OverflowError:  # an int too large for a float
        raise ValueError(f"{name} = {value!r} is too large") from None
    if math.isnan(v) or (math.isinf(v) and not allow_inf):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    low_bad = v <= minimum if open_min else v < minimum
    if low_bad or v > maximum:
        left = "(" if open_min else "["
        raise ValueError(f"{name} must be in {left}{minimum}, {maximum}], got {value!r}")
    return v


def check_bool(value: object, name: str) -> bool:
    """``value`` if it is a ``bool`` or ``numpy.bool_``; no truthiness of other objects."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)
