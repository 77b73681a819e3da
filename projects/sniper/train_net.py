"""Train or evaluate a SNIPER detector (detectron2's `tools/train_net.py`).

    python projects/sniper/train_net.py --config-file configs/sniper/X.yaml --num-gpus 8
    python projects/sniper/train_net.py --config-file X.yaml --resume          # continue
    python projects/sniper/train_net.py --config-file X.yaml --eval-only MODEL.WEIGHTS m.pth

Trailing `KEY VALUE` pairs override the config. Outputs in OUTPUT_DIR: config.yaml,
log.txt, metrics.json, TensorBoard events, model_*.pth, last_checkpoint, inference/.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from sniper.engine import (
    Checkpointer,
    SniperTrainer,
    default_argument_parser,
    default_setup,
    launch,
    load_config_or_exit,
)

logger = logging.getLogger("sniper.train_net")


def main(args: argparse.Namespace) -> Any:
    """Body of every process: set up, then evaluate (`--eval-only`) or train."""
    cfg = load_config_or_exit(args.config_file, args.opts)
    default_setup(cfg, args)
    if args.eval_only:
        model = SniperTrainer.build_model(cfg)
        if not cfg.MODEL.WEIGHTS and not args.resume:
            logger.warning("--eval-only without MODEL.WEIGHTS: evaluating a random model")
        Checkpointer(model, cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        return SniperTrainer.test(cfg, model)
    trainer = SniperTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    cli_args = default_argument_parser().parse_args()
    load_config_or_exit(cli_args.config_file, cli_args.opts)  # fail before spawning workers
    launch(
        main,
        cli_args.num_gpus,
        num_machines=cli_args.num_machines,
        machine_rank=cli_args.machine_rank,
        dist_url=cli_args.dist_url,
        args=(cli_args,),
    )
