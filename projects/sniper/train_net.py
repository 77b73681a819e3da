"""Train or evaluate a SNIPER detector (detectron2's `tools/train_net.py`).

    python projects/sniper/train_net.py --config-file configs/sniper/X.yaml --num-gpus 8
    python projects/sniper/train_net.py --config-file X.yaml --resume          # continue
    python projects/sniper/train_net.py --config-file X.yaml --eval-only MODEL.WEIGHTS m.pth

Trailing `KEY VALUE` pairs override the config. Outputs in OUTPUT_DIR: config.yaml,
log.txt, metrics.json, TensorBoard events, model_*.pth, last_checkpoint, inference/.
"""

from __future__ import annotations

import argparse
from typing import Any

from sniper.config import load_config_or_exit
from sniper.engine import SniperTrainer
from sniper.engine.defaults import launch_train_net, run_train_net


def main(args: argparse.Namespace) -> Any:
    """Body of every process: set up, then evaluate (`--eval-only`) or train."""
    return run_train_net(args, SniperTrainer, load_config_or_exit)


if __name__ == "__main__":
    launch_train_net(main, load_config_or_exit)
