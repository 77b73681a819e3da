"""Configuration: detectron2-style `get_cfg()` + `add_sniper_config(cfg)` on fvcore's CfgNode.

Defaults and the one-line comment of every key live in `sniper/config_defaults.py`.
Unknown keys are errors that name the key, both in YAML files (also through `_BASE_`) and
in command-line `KEY VALUE` overrides.

Typical use::

    cfg = setup_cfg("configs/sniper/synthetic_mobilenet.yaml", ["SOLVER.MAX_ITER", "100"])
"""

from __future__ import annotations

import ast
import io
import tokenize
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fvcore.common.config import CfgNode as _FvCfgNode

from sniper import config_defaults
from sniper.cli_errors import ConfigError, ConfigKeyError, cli_errors
from sniper.config_files import load_config_chain, merged_mapping
from sniper.config_types import check_mapping, coerce_value, decode_override
from sniper.config_types import unknown_key as check_mapping_unknown
from sniper.config_validation import parse_scale_list, parse_valid_ranges, validate_cfg

__all__ = [
    "CfgNode",
    "ConfigError",
    "ConfigKeyError",
    "add_sniper_config",
    "get_cfg",
    "key_comments",
    "cli_errors",
    "load_config_or_exit",
    "parse_scale_list",
    "parse_valid_ranges",
    "resolve_cfg",
    "setup_cfg",
    "validate_cfg",
]


class CfgNode(_FvCfgNode):
    """fvcore CfgNode whose file and command-line merges check every key and value first.

    `merge_from_file` reads the `_BASE_` chain with `sniper.config_files` (a missing,
    binary, malformed or cyclic file is a `ConfigError` naming it) and `merge_from_list`
    decodes the words as yacs does; both check keys and types against the defaults
    (`sniper.config_types`): an unknown key is a `ConfigKeyError` (a KeyError) naming the
    key and the closest known ones, a wrong type a `ConfigError` naming key, value and the
    expected type. yacs's own checks are `assert`s, stripped under ``python -O``.
    """

    def merge_from_file(self, cfg_filename: str, allow_unsafe: bool = False) -> None:
        """Merge the YAML file and its `_BASE_` chain (``allow_unsafe`` is refused: only
        ``yaml.safe_load`` is used)."""
        if allow_unsafe:
            raise ValueError("allow_unsafe=True is not supported: configs are read safely")
        self.merge_from_chain(load_config_chain(cfg_filename))

    def merge_from_chain(self, chain: list[tuple[str, dict[str, Any]]]) -> None:
        """Merge the files of a `sniper.config_files.load_config_chain` result, in order."""
        checked = [(path, check_mapping(self, data, path)) for path, data in chain]
        merged = merged_mapping(checked)
        if merged:
            self.merge_from_other_cfg(type(self)(merged))

    def merge_from_list(self, cfg_list: list[Any]) -> CfgNode:
        """Merge `[KEY, VALUE, KEY, VALUE, ...]` (VALUEs as strings, literal-evaluated)."""
        if len(cfg_list) % 2 != 0:
            raise ConfigError(
                f"command line: config overrides must be KEY VALUE pairs, got an odd length "
                f"{len(cfg_list)}: {' '.join(map(str, cfg_list))}"
            )
        for full_key, word in zip(cfg_list[0::2], cfg_list[1::2], strict=True):
            node: Any = self
            parts = str(full_key).split(".")
            for depth, sub in enumerate(parts):
                prefix = ".".join(parts[:depth]) + ("." if depth else "")
                if not isinstance(node, _FvCfgNode) or sub not in node:
                    known = node if isinstance(node, _FvCfgNode) else {}
                    raise check_mapping_unknown(sub, known, prefix, "command line", str(full_key))
                if depth < len(parts) - 1:
                    node = node[sub]
            default = node[parts[-1]]
            if isinstance(default, _FvCfgNode):
                raise ConfigError(
                    f"command line: config key {full_key} is a section; give one of its keys",
                    key=str(full_key),
                )
            value = decode_override(word, default)
            node[parts[-1]] = coerce_value(default, value, str(full_key), "command line")
        return self


def get_cfg() -> CfgNode:
    """Return a fresh config with the detectron2-style keys (MODEL, INPUT, SOLVER, ...).

    Call `add_sniper_config(cfg)` on it before building a SNIPER model.
    """
    return config_defaults.base_defaults(CfgNode())


def add_sniper_config(cfg: CfgNode) -> CfgNode:
    """Add the `SNIPER` node (chips, label assignment, multi-scale test) to `cfg` in place."""
    config_defaults.sniper_defaults(cfg)
    return cfg


def _sets_key(data: Any, key: str) -> bool:
    for sub in key.split("."):
        if not isinstance(data, dict) or sub not in data:
            return False
        data = data[sub]
    return True


def _source(key: str | None, opts: Sequence[str], chain: list[tuple[str, Any]], top: str) -> str:
    """Where the value of ``key`` came from: "command line", the last file of the chain
    that sets it, else the config file (or "defaults")."""
    if key is not None:
        if key in [str(k) for k in opts[0::2]]:
            return "command line"
        for path, data in reversed(chain):
            if _sets_key(data, key):
                return path
    return top or "defaults"


def resolve_cfg(
    config_file: str,
    opts: Sequence[str],
    add_defaults: Sequence[Callable[[CfgNode], Any]] = (add_sniper_config,),
    validators: Sequence[Callable[[CfgNode], None]] = (validate_cfg,),
) -> CfgNode:
    """Defaults + the YAML chain of ``config_file`` + ``opts``, validated and frozen.

    A validation error is re-raised with its source first (the command line, or the file of
    the chain that set the key): ``"cfg.yaml: config key SOLVER.MAX_ITER = -5: ..."``.

    Args:
        config_file: YAML path ("" for defaults only); may use `_BASE_` inheritance.
        opts: flat ``[KEY, VALUE, ...]`` overrides as on detectron2 command lines.
        add_defaults: functions adding config nodes to `get_cfg()` (in order).
        validators: checks run on the merged config (in order).

    Raises:
        ConfigKeyError: an unknown key (also a KeyError). ConfigError: a bad file, type or
            value (also a ValueError).
    """
    cfg = get_cfg()
    for add in add_defaults:
        add(cfg)
    chain = load_config_chain(config_file) if config_file else []
    cfg.merge_from_chain(chain)
    cfg.merge_from_list(list(opts))
    try:
        for validate in validators:
            validate(cfg)
    except ConfigError as err:
        where = _source(err.key, list(opts), chain, config_file)
        raise ConfigError(f"{where}: {err}", key=err.key) from None
    cfg.freeze()
    return cfg


def setup_cfg(config_file: str, opts: Sequence[str]) -> CfgNode:
    """get_cfg + add_sniper_config + merge YAML (if given) + merge overrides + validate + freeze.

    Args:
        config_file: YAML path ("" for defaults only); may use `_BASE_` inheritance.
        opts: flat `[KEY, VALUE, ...]` overrides as on detectron2 command lines.

    Raises:
        KeyError: naming an unknown key in the file, one of its bases or `opts`
            (`ConfigKeyError`).
        ValueError: naming a bad file or an invalid key/value (`ConfigError`, see
            `resolve_cfg` and `validate_cfg`).
    """
    return resolve_cfg(config_file, opts)


def _dotted(node: ast.expr) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or not parts:
        return None
    return ".".join(reversed(parts))


def key_comments(source_file: str | None = None) -> dict[str, str]:
    """Map every dotted key assigned in the defaults source to its trailing comment.

    Parses `config_defaults.py` (or `source_file`): an assignment `_C.A.B = ...  # text`
    yields `{"A.B": "text"}`; the comment may sit on any line of a multi-line assignment.
    """
    path = Path(source_file or config_defaults.__file__)
    text = path.read_text(encoding="utf-8")
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    result: dict[str, str] = {}
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            key = _dotted(node.targets[0])
            if key is None:
                continue
            end = node.end_lineno or node.lineno
            lines = [comments[n] for n in range(node.lineno, end + 1) if n in comments]
            result[key] = lines[0] if lines else ""
    return result


def load_config_or_exit(
    config_file: str,
    opts: Sequence[str],
    setup: Callable[[str, list[str]], _FvCfgNode] | None = None,
) -> _FvCfgNode:
    """``setup(config_file, opts)`` (default `setup_cfg`), or exit with status 2 and one line
    ``error: <file>: config key KEY = VALUE: <what is wrong>`` (no traceback), as argparse
    does for bad flags.

    Args:
        config_file: YAML path ("" for defaults only).
        opts: flat ``[KEY, VALUE, ...]`` overrides.
        setup: the loader (e.g. `autofocus.config.setup_cfg`); the `ConfigError` and
            `OSError` it raises become the exit (`sniper.cli_errors.cli_errors`).
    """
    loader = setup_cfg if setup is None else setup
    with cli_errors():
        cfg = loader(config_file, list(opts))
    return cfg
