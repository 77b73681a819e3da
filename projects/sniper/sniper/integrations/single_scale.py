"""One test scale of one of our models on whatever image it is given (a SAHI or supervision
slice), and the dotted-path lookup of the adapters' class / function arguments."""

from __future__ import annotations

import importlib
from typing import Any

from chipping.scales import ScaleSpec
from sniper.cli_errors import ConfigError
from sniper.inference import SniperPredictor

__all__ = ["import_attr", "single_scale_predictor"]


def single_scale_predictor(
    cfg: Any, scale: ScaleSpec = 1.0, input_format: str = "RGB", predictor_class: Any = None
) -> Any:
    """A predictor of ``cfg`` running one test scale on whatever it is given (a slice).

    ``scales=[scale]``, ``valid_ranges=[(-1, -1)]`` (every box kept), ``merge="nms"`` (one
    scale: no cross-scale soft-NMS decaying the model's own NMS output); inputs over the
    tiling threshold (``max_pixels``, 8,000,000 px) are tiled as everywhere (design section 6).

    Args:
        cfg: our config (``sniper.config.setup_cfg``).
        scale: a factor or a ``(short, long)`` pair (``chipping.scales``).
        input_format: channel order of the images given (SAHI's slices are RGB).
        predictor_class: a ``SniperPredictor`` subclass or one with its constructor
            (``AutoFocusPredictor`` is not: it runs its own cascade); default
            ``SniperPredictor``.
    """
    cls = SniperPredictor if predictor_class is None else predictor_class
    if isinstance(scale, list | tuple):
        scale = tuple(scale)
    return cls(
        cfg,
        input_format=input_format,
        scales=[scale],
        valid_ranges=[(-1, -1)],
        merge="nms",
    )


def import_attr(path: str, field: str) -> Any:
    """The object named by the dotted ``path`` (``module.name``); ``field`` names the argument.

    Raises:
        ValueError: (``sniper.cli_errors.ConfigError``) not a dotted path, or not importable.
    """
    module, _, name = str(path).rpartition(".")
    if not module:
        raise ConfigError(f"{field} must be a dotted path module.name, got {path!r}")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"{field} {path!r} cannot be imported: {err}") from err
