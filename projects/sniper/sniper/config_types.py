"""Keys and value types of config files and command-line overrides, checked against the
defaults before they are merged.

A value must have its default's type: an integer for an integer key, a number for a float
key (an integer is converted), true/false for a bool, a string for a string, a list (or
tuple) for a list, with numbers wherever the default list holds numbers; `null` only where
the default is null. A string key given on the command line keeps the word as typed (so
``OUTPUT_DIR 2024`` is the folder "2024"). Unknown keys name the closest known ones.
Every problem is a `ConfigError` starting with the source (the file, or "command line").
Imports no torch.
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Mapping
from typing import Any

from sniper.cli_errors import ConfigError, ConfigKeyError

__all__ = ["check_mapping", "coerce_value", "decode_override", "unknown_key"]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numeric_tree(value: Any) -> bool:
    """A number or a non-empty (nested) list / tuple whose leaves are all numbers."""
    if isinstance(value, list | tuple):
        return len(value) > 0 and all(_numeric_tree(v) for v in value)
    return _is_number(value)


def _numbers_ok(value: Any) -> bool:
    """A number, or a (nested, possibly empty) list / tuple of numbers."""
    if isinstance(value, list | tuple):
        return all(_numbers_ok(v) for v in value)
    return _is_number(value)


def _expected(default: Any) -> str:
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return "an integer"
    if isinstance(default, float):
        return "a number"
    if isinstance(default, str):
        return "a string"
    if _numeric_tree(default):
        return "a list of numbers"
    return "a list"


def coerce_value(default: Any, value: Any, key: str, source: str) -> Any:
    """``value`` converted to the type of ``default`` (int -> float, list <-> tuple).

    Raises:
        ConfigError: ``"<source>: config key KEY = VALUE: expected ... (default ...)"``.
    """
    if default is None:
        return value
    ok = False
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = _is_number(value)
        value = float(value) if ok else value
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, list | tuple):
        ok = isinstance(value, list | tuple) and (not _numeric_tree(default) or _numbers_ok(value))
        value = type(default)(value) if ok else value
    if not ok:
        raise ConfigError(
            f"{source}: config key {key} = {value!r}: expected {_expected(default)} "
            f"(default {default!r})",
            key=key,
        )
    return value


def unknown_key(
    key: str, known: Mapping[str, Any], prefix: str, source: str, full_key: str | None = None
) -> ConfigKeyError:
    """The error for key ``prefix + key`` missing from ``known``, with close matches;
    ``full_key`` (default ``prefix + key``) is the whole key the user gave."""
    full = full_key or prefix + key
    close = difflib.get_close_matches(key, [str(k) for k in known], n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(prefix + c for c in close)}?" if close else ""
    where = "" if full == prefix + key else f" ({prefix + key} does not exist{hint})"
    text = f"{source}: unknown config key {full}" + (where or hint)
    return ConfigKeyError(text, key=full)


def check_mapping(
    defaults: Mapping[str, Any], data: Mapping[Any, Any], source: str, prefix: str = ""
) -> dict[str, Any]:
    """A copy of ``data`` (a parsed YAML mapping) with every key known to ``defaults`` (a
    CfgNode) and every value coerced to its default's type.

    Raises:
        ConfigKeyError: an unknown key. ConfigError: a value of the wrong type, or a section
            given a value (or the reverse).
    """
    out: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str) or key not in defaults:
            raise unknown_key(str(key), defaults, prefix, source)
        default, full = defaults[key], prefix + key
        if isinstance(default, Mapping):
            if not isinstance(value, Mapping):
                raise ConfigError(
                    f"{source}: config key {full} = {value!r}: is a section; give its keys "
                    f"({', '.join(sorted(default)[:4])}, ...)",
                    key=full,
                )
            out[key] = check_mapping(default, value, source, full + ".")
        elif isinstance(value, Mapping):
            raise ConfigError(
                f"{source}: config key {full}: is a value (default {default!r}), not a section",
                key=full,
            )
        else:
            out[key] = coerce_value(default, decode_override(value, default), full, source)
    return out


def decode_override(word: Any, default: Any) -> Any:
    """A string as a Python literal (as yacs does for command-line words and YAML strings),
    kept as typed for a string key unless it is a quoted string literal."""
    if not isinstance(word, str):
        return word
    try:
        value = ast.literal_eval(word)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return word
    if isinstance(default, str) and not isinstance(value, str):
        return word
    return value
