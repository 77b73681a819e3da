"""SNIPER negative chip mining and training, one command (docs/design.md section 4).

    python projects/sniper/mine_negatives.py --config-file configs/sniper/X.yaml --num-gpus 8
    python projects/sniper/mine_negatives.py --config-file X.yaml --resume        # continue
    python projects/sniper/mine_negatives.py --config-file X.yaml --proposals-only
    python projects/sniper/mine_negatives.py --config-file X.yaml --skip-rpn rpn.pth

Stages (see `sniper.engine.negative_mining`; trailing `KEY VALUE` pairs override the config
of all of them): 1. `SniperRPN` trained on positive chips in OUTPUT_DIR/rpn; 2. its proposals
on the training images at SNIPER.TEST_SCALES -> OUTPUT_DIR/proposals.npz; 3. the detector
with negative chips from that file in OUTPUT_DIR, then the evaluation, as train_net.py.
A finished stage is skipped; `--resume` continues stage 1 or 3.
"""

from __future__ import annotations

import argparse
from typing import Any

from sniper.engine.negative_mining import launch_negative_mining, run_negative_mining


def main(args: argparse.Namespace) -> Any:
    """Body of every process: the three stages."""
    return run_negative_mining(args)


if __name__ == "__main__":
    launch_negative_mining(main, epilog=__doc__)
