"""Train or evaluate an AutoFocus detector (detectron2's `tools/train_net.py`).

    python projects/autofocus/train_net.py --config-file configs/autofocus/X.yaml --num-gpus 8
    python projects/autofocus/train_net.py --config-file X.yaml --resume          # continue
    python projects/autofocus/train_net.py --config-file X.yaml --eval-only MODEL.WEIGHTS m.pth

The flags are sniper's (`--config-file --resume --eval-only --num-gpus --num-machines
--machine-rank --dist-url` and trailing `KEY VALUE` overrides); the config also has the
`AUTOFOCUS` node. Training is SNIPER chip training with the FocusPixel loss added;
evaluation (after training and with `--eval-only`) runs the AutoFocus cascade over
DATASETS.TEST and reports COCO AP, images/s and the pixels processed (per scale and as a
fraction of the full pyramid). Outputs in OUTPUT_DIR as for sniper: config.yaml, log.txt,
metrics.json, TensorBoard events, model_*.pth, last_checkpoint, inference/.
"""

from __future__ import annotations

import argparse
from typing import Any

from autofocus.config import load_config_or_exit
from autofocus.engine import AutoFocusTrainer
from sniper.engine.defaults import launch_train_net, run_train_net


def main(args: argparse.Namespace) -> Any:
    """Body of every process: set up, then evaluate (`--eval-only`, AutoFocus cascade) or
    train (SNIPER chips + FocusPixel loss)."""
    return run_train_net(args, AutoFocusTrainer, load_config_or_exit)


if __name__ == "__main__":
    launch_train_net(main, load_config_or_exit)
