"""SAHI's own command line with ``--model_type sniper`` (extra ``[sahi]``).

``sahi predict`` looks ``--model_type`` up in a fixed table of SAHI's own model modules, so
a model from another package cannot be named there. This entry point registers ours
(``sniper.integrations.sahi_model.register_model_type``) and runs SAHI's CLI app itself
(``sahi.cli.sahi_app`` under ``fire``: same commands, flags and outputs)::

    python -m sniper.integrations.sahi_cli predict --model_type sniper \\
        --model_config_path configs/sniper/synthetic_mobilenet.yaml \\
        --model_path output/model_final.pth --source images/ \\
        --slice_height 512 --slice_width 512 --model_device cpu --scale 2.0

``--scale``, ``--opts``, ``--predictor_class``, ``--config_setup`` and ``--modules`` reach
``SniperDetectionModel`` (a trained AutoFocus detector: ``--config_setup
autofocus.config.setup_cfg --modules autofocus.modeling``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from sniper.cli_errors import cli_errors

from ._optional import import_optional
from .sahi_model import register_model_type

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> None:
    """Run SAHI's CLI on ``argv`` (default ``sys.argv[1:]``) with model type ``sniper``; a
    bad config, flag of ours or path is one ``error: ...`` line, exit status 2
    (``sniper.cli_errors``)."""
    fire = import_optional("fire", "sahi")
    cli = import_optional("sahi.cli", "sahi")
    register_model_type()
    command = list(sys.argv[1:] if argv is None else argv)
    with cli_errors():
        fire.Fire(cli.sahi_app, command=command, name="sahi")


if __name__ == "__main__":
    main()
