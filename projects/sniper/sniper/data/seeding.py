"""The seed of the chip plans: the config's, or one random seed shared by all ranks."""

from __future__ import annotations

import logging
import os

__all__ = ["resolve_seed"]

logger = logging.getLogger("sniper.data")


def resolve_seed(seed: int) -> int:
    """``seed`` if it is >= 0; else a random seed, the same on every rank, logged.

    The draw is made on rank 0 and broadcast when a process group is initialized, so that all
    ranks plan the same chips (every rank must then call this, as every rank builds its
    loader). As in detectron2, a negative seed makes the run non-reproducible: ``--resume``
    continues with newly drawn chips.
    """
    seed = int(seed)
    if seed >= 0:
        return seed
    import torch.distributed as dist  # only for a random seed: samplers stay numpy-only

    drawn = [int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF]
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.broadcast_object_list(drawn, src=0)
    logger.info("SEED %d < 0: chips are planned with the random seed %d", seed, drawn[0])
    return drawn[0]
