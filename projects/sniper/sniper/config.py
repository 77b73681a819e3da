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
import sys
import tokenize
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fvcore.common.config import CfgNode as _FvCfgNode

from sniper import config_defaults
from sniper.config_validation import parse_scale_list, parse_valid_ranges, validate_cfg

__all__ = [
    "CfgNode",
    "add_sniper_config",
    "get_cfg",
    "key_comments",
    "load_config_or_exit",
    "parse_scale_list",
    "parse_valid_ranges",
    "setup_cfg",
    "validate_cfg",
]


class CfgNode(_FvCfgNode):
    """fvcore CfgNode whose command-line overrides raise KeyError naming an unknown key.

    yacs reports unknown keys in `merge_from_list` with an `AssertionError` (stripped under
    `python -O`); this subclass raises `KeyError("Non-existent config key: A.B")`, the same
    error `merge_from_file` raises for unknown keys in YAML files.
    """

    def merge_from_list(self, cfg_list: list[Any]) -> CfgNode:
        """Merge `[KEY, VALUE, KEY, VALUE, ...]` (VALUEs as strings, literal-evaluated)."""
        if len(cfg_list) % 2 != 0:
            raise ValueError(f"override list has odd length {len(cfg_list)}: {cfg_list}")
        for full_key in cfg_list[0::2]:
            node: Any = self
            for sub in str(full_key).split("."):
                if not isinstance(node, _FvCfgNode) or sub not in node:
                    raise KeyError(f"Non-existent config key: {full_key}")
                node = node[sub]
        super().merge_from_list(cfg_list)
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


def setup_cfg(config_file: str, opts: list[str]) -> CfgNode:
    """get_cfg + add_sniper_config + merge YAML (if given) + merge overrides + validate + freeze.

    Args:
        config_file: YAML path ("" for defaults only); may use `_BASE_` inheritance.
        opts: flat `[KEY, VALUE, ...]` overrides as on detectron2 command lines.

    Raises:
        KeyError: naming an unknown key in the file, one of its bases or `opts`.
        ValueError: naming an invalid key/value (see `validate_cfg`).
    """
    cfg = add_sniper_config(get_cfg())
    if config_file:
        cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    validate_cfg(cfg)
    cfg.freeze()
    return cfg


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
    """``setup(config_file, opts)`` (default `setup_cfg`), or exit with status 2 and a one-line
    message naming the bad key / value / file (no traceback), as argparse does for bad flags.

    Args:
        config_file: YAML path ("" for defaults only).
        opts: flat ``[KEY, VALUE, ...]`` overrides.
        setup: the loader (e.g. `autofocus.config.setup_cfg`); KeyError, ValueError and
            FileNotFoundError it raises become the exit.
    """
    loader = setup_cfg if setup is None else setup
    try:
        return loader(config_file, list(opts))
    except (KeyError, ValueError, FileNotFoundError) as err:
        message = err.args[0] if err.args else repr(err)
        print(f"error: bad config: {message}", file=sys.stderr)
        raise SystemExit(2) from None
