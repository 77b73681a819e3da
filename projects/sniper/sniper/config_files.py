"""Reading config YAML files with detectron2's `_BASE_` inheritance, every mistake named.

`load_config_chain(path)` returns the files of the chain, base first, each as its parsed
mapping; `merged_mapping(chain)` merges them as fvcore does (a child's value replaces its
base's, sections merge key by key). Every problem is a `ConfigError` whose message starts
with the file: a missing file (and which file names it as `_BASE_`), a folder, a binary
file, a YAML syntax error (line and column), a top level that is not a mapping (a list, a
scalar, an empty file), a bad `_BASE_` value and a `_BASE_` cycle (the chain is named).
Only `yaml.safe_load` is used: no YAML tag can run code. Imports no torch.
"""

from __future__ import annotations

import os
from typing import Any

import yaml

from sniper.cli_errors import ConfigError

__all__ = ["BASE_KEY", "load_config_chain", "merged_mapping", "read_yaml_mapping"]

BASE_KEY = "_BASE_"


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__} ({value!r})"


def read_yaml_mapping(path: str, named_by: str | None = None) -> dict[str, Any]:
    """The top-level mapping of the YAML file ``path``.

    Args:
        path: the file.
        named_by: the file whose `_BASE_` names ``path`` (for the message), or None.

    Raises:
        ConfigError: naming ``path`` and what is wrong with it.
    """
    origin = f" (the _BASE_ of {named_by})" if named_by else ""
    if not os.path.exists(path):
        raise ConfigError(f"{path}: no such config file{origin}")
    if os.path.isdir(path):
        raise ConfigError(f"{path}: is a folder, not a YAML config file{origin}")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror or err}{origin}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path}: not a text YAML file (byte {err.start} is not UTF-8){origin}"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{path}: {where}YAML error: {problem}") from None
    if data is None:
        raise ConfigError(f"{path}: the file is empty; a config is a mapping of KEY: value")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level is {_kind(data)}, not a mapping of KEY: value")
    return data


def _base_paths(path: str, data: dict[str, Any]) -> list[str]:
    value = data.get(BASE_KEY)
    if value is None and BASE_KEY not in data:
        return []
    names = value if isinstance(value, list) else [value]
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(
            f"{path}: {BASE_KEY}: {value!r}: must be a file name or a list of file names"
        )
    folder = os.path.dirname(path)
    return [os.path.join(folder, os.path.expanduser(n)) for n in names]


def load_config_chain(
    path: str, _stack: tuple[str, ...] = (), _named_by: str | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """Every file of ``path``'s `_BASE_` chain as ``(file, mapping without _BASE_)``, in
    merge order: each file's bases (in their listed order, recursively) before the file.

    Raises:
        ConfigError: a file of the chain is missing or malformed, or the chain has a cycle
            (message: ``a.yaml: _BASE_ cycle: a.yaml -> b.yaml -> a.yaml``).
    """
    real = os.path.realpath(path)
    if real in _stack:
        chain = [*_stack[_stack.index(real) :], real]
        names = " -> ".join(os.path.relpath(p) for p in chain)
        raise ConfigError(f"{_named_by}: {BASE_KEY} cycle: {names}")
    data = read_yaml_mapping(path, _named_by)
    files: list[tuple[str, dict[str, Any]]] = []
    for base in _base_paths(path, data):
        files += load_config_chain(base, (*_stack, real), path)
    files.append((path, {k: v for k, v in data.items() if k != BASE_KEY}))
    return files


def _merge_into(src: dict[str, Any], dst: dict[str, Any], path: str, prefix: str) -> None:
    for key, value in src.items():
        if isinstance(value, dict) and key in dst:
            if not isinstance(dst[key], dict):
                raise ConfigError(
                    f"{path}: {prefix}{key}: is a section here but a value in its _BASE_"
                )
            _merge_into(value, dst[key], path, f"{prefix}{key}.")
        else:
            dst[key] = value


def merged_mapping(chain: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The mapping of the whole chain: later files override earlier ones key by key."""
    merged: dict[str, Any] = {}
    for path, data in chain:
        _merge_into(data, merged, path, "")
    return merged
