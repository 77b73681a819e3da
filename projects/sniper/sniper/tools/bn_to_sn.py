"""Command line: write a Switchable-Normalization checkpoint from a BatchNorm one.

Usage::

    python -m sniper.tools.bn_to_sn --config-file configs/sniper/synthetic_mobilenet.yaml \\
        --input output/synthetic_mobilenet/model_final.pth --output model_sn.pth \\
        MODEL.BACKBONE.NORM SN [KEY VALUE ...]

The model of the config (with its ``KEY VALUE`` overrides; at least one of
MODEL.BACKBONE.NORM, MODEL.FPN.NORM, MODEL.ROI_BOX_HEAD.NORM, MODEL.ROI_MASK_HEAD.NORM must be
``SN`` or ``SN_INLN``) is built and the BatchNorm checkpoint ``--input`` (ours, a bare state
dict, or a torchvision / ImageNet-style file) is loaded into it. ``SwitchNorm2d`` keeps
BatchNorm's parameter names, so every BN layer's affine (``weight``, ``bias``) and running
statistics (``running_mean``, ``running_var``) land in the SN layer that replaces it, and
the importance logits (``mean_weight``, ``var_weight``) keep their initialization: equal
weights. Frozen stages stay FrozenBatchNorm2d (same names). ``--output`` gets ``{"model":
state_dict}`` (written to a temporary name, then renamed), loadable as MODEL.WEIGHTS with
the same config, and the load report is printed (BN's ``num_batches_tracked`` counters are
the expected unused keys).

Bad input (missing or unreadable file, a config without an SN norm, a checkpoint none of
whose tensors fits) is one ``error: ...`` line, exit status 2. Files are read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Sequence

import torch

from sniper.cli_errors import cli_errors, exit_with_error
from sniper.config import load_config_or_exit
from sniper.modeling import build_model
from sniper.modeling.state_dict import load_model_weights
from sniper.modeling.switchable_norm import SwitchNorm2d
from sniper.output_files import atomic_write

__all__ = ["main", "parse_args"]

SN_NORMS = ("SN", "SN_INLN")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments (module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m sniper.tools.bn_to_sn",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", default="", metavar="FILE", help="YAML config")
    parser.add_argument("--input", required=True, help="BatchNorm checkpoint")
    parser.add_argument("--output", required=True, help="SN checkpoint to write")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE")
    args = parser.parse_args(argv)
    if args.opts[:1] == ["--"]:
        args.opts = args.opts[1:]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m sniper.tools.bn_to_sn``; 0, or exit 2 with one line."""
    args = parse_args(argv)
    with cli_errors():
        cfg = load_config_or_exit(args.config_file, args.opts)
        m = cfg.MODEL
        norms = (m.BACKBONE.NORM, m.FPN.NORM, m.ROI_BOX_HEAD.NORM, m.ROI_MASK_HEAD.NORM)
        if not any(n in SN_NORMS for n in norms):
            exit_with_error(
                "no SN norm in the config: set MODEL.BACKBONE.NORM (or MODEL.FPN.NORM, "
                "MODEL.ROI_BOX_HEAD.NORM, MODEL.ROI_MASK_HEAD.NORM) to SN or SN_INLN"
            )
        model = build_model(cfg)
        try:
            report = load_model_weights(model, args.input)
        except ValueError as err:
            exit_with_error(str(err))
        layers = sum(isinstance(mod, SwitchNorm2d) for mod in model.modules())
        buffer = io.BytesIO()
        torch.save({"model": model.state_dict()}, buffer)
        atomic_write(args.output, lambda f: f.write(buffer.getvalue()))
    print(report.table())
    print(f"wrote {args.output}: {layers} SwitchNorm2d layers (importance weights equal)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
