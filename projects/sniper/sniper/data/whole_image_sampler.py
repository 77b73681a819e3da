"""Whole-image training samples (the Detectron baseline) and aspect-ratio grouping.

`WholeImageSampler` has `ChipSampler`'s interface, so the same loader, mapper, trainer and
DDP split serve chips and whole images. Each epoch (seeded by ``(seed, epoch)``), every image
gives one sample: the whole image resized by one of the training scales, drawn uniformly per
image and epoch when there are several (Detectron's multi-scale training: a random short side
of TRAIN.SCALES per image). The boxes are assigned as for a chip covering the canvas (the
scale's valid range decides valid and ignore boxes; ``[-1, -1]`` keeps every box), the flip is
drawn per sample, and the sample is not padded to a square: its ``pad_size`` is the canvas,
and the model pads each batch to its largest height and width (`NoResizeTransform`, to a
multiple of 32).

Aspect-ratio grouping (``aspect_grouping``, as detectron2's ``AspectRatioGroupedDataset`` and
Detectron's ASPECT_GROUPING): the images still come in the epoch's random order, but go to
one of two buckets (landscape ``w > h``, else portrait) and a bucket becomes a batch when it
holds ``chips_per_batch`` samples, so that a batch never mixes a wide and a tall image and
pads less. The buckets' remainders end the epoch as shorter batches (every image is seen once
per epoch; ``drop_last`` drops them). `padded_pixels` measures the saving.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from chipping import ChipPlan
from chipping.scales import factors_for_sizes, parse_ranges, parse_scales, scaled_size
from sniper.structures import ChipSpec

from .chip_sampler import ChipSampler
from .seeding import resolve_seed

__all__ = ["WholeImageSampler", "aspect_bucket", "padded_pixels"]


def aspect_bucket(height: int, width: int) -> int:
    """0 for a landscape sample (``width > height``), 1 otherwise (detectron2's rule)."""
    return 0 if width > height else 1


def padded_pixels(batches: Sequence[Sequence[ChipSpec]], size_divisible: int = 32) -> int:
    """Network-input pixels of ``batches`` as the model pads them: per batch, its length x the
    largest ``padded_shape`` height x the largest width, each rounded up to a multiple of
    ``size_divisible`` (`NoResizeTransform.batch_images`)."""
    if size_divisible < 1:
        raise ValueError(f"size_divisible must be >= 1, got {size_divisible}")
    total = 0
    for batch in batches:
        if not batch:
            continue
        h = max(s.padded_shape[0] for s in batch)
        w = max(s.padded_shape[1] for s in batch)
        h, w = -(-h // size_divisible) * size_divisible, -(-w // size_divisible) * size_divisible
        total += len(batch) * h * w
    return total


class WholeImageSampler(ChipSampler):
    """One whole-image sample per image per epoch (module doc).

    Args:
        records, scales, valid_ranges, min_box_size, min_inside, flip, seed, num_threads:
            as `ChipSampler` (no chip grid, no negative chips: a whole image has no
            background left to mine).
        aspect_grouping: batch landscape and portrait samples apart (module doc).
    """

    def __init__(
        self,
        records: Sequence[dict],
        scales: Sequence,
        valid_ranges: Sequence,
        *,
        aspect_grouping: bool = True,
        min_box_size: float = 2.0,
        min_inside: float = 0.5,
        flip: bool = True,
        seed: int = 0,
        num_threads: int = 0,
    ) -> None:
        super().__init__(
            records,
            scales,
            valid_ranges,
            min_box_size=min_box_size,
            min_inside=min_inside,
            proposals=None,
            neg_per_image=0,
            flip=flip,
            seed=seed,
            num_threads=num_threads,
        )
        self.aspect_grouping = bool(aspect_grouping)
        self._scale_rows = parse_scales(self.scales)
        self._ranges = parse_ranges(self.valid_ranges, len(self._scale_rows))
        self._factors = factors_for_sizes(self._scale_rows, self.sizes)  # (N, S)

    @classmethod
    def from_config(cls, cfg, records: Sequence[dict]) -> WholeImageSampler:
        """SNIPER.TRAIN_SCALES / VALID_RANGES / MIN_BOX_SIZE, DATALOADER.ASPECT_RATIO_GROUPING
        and INPUT.RANDOM_FLIP over ``records``, seeded with ``resolve_seed(cfg.SEED)``
        (the chip grid and negative-chip keys do not apply)."""
        s = cfg.SNIPER
        return cls(
            records,
            list(s.TRAIN_SCALES),
            [list(r) for r in s.VALID_RANGES],
            aspect_grouping=bool(cfg.DATALOADER.ASPECT_RATIO_GROUPING),
            min_box_size=s.MIN_BOX_SIZE,
            flip=cfg.INPUT.RANDOM_FLIP == "horizontal",
            seed=resolve_seed(cfg.SEED),
        )

    def plan_chips(self, epoch: int) -> tuple[ChipPlan, np.ndarray]:
        """One sample per image: the whole canvas at a scale drawn per image (seeded by
        ``(seed, epoch)``); no negatives."""
        n, num_scales = self._factors.shape
        rng = np.random.default_rng([self.seed, epoch, 4])
        scale = rng.integers(0, num_scales, n) if num_scales > 1 else np.zeros(n, np.int64)
        factors = self._factors[np.arange(n), scale]
        canvases = np.zeros((n, 4), np.int64)
        for i in range(n):
            h, w = scaled_size((int(self.sizes[i, 0]), int(self.sizes[i, 1])), float(factors[i]))
            canvases[i, 2:] = (w, h)
        plan = ChipPlan(
            image_index=np.arange(n),
            scale_index=scale,
            chips_scaled=canvases,
            factors=factors,
            counts=self._num_gt,
            valid_ranges=self._ranges,
        )
        return plan, np.zeros(n, bool)

    def epoch_chips(self, epoch: int) -> list[ChipSpec]:
        """The epoch's samples, each padded to its own canvas (``pad_size``) only."""
        return [
            replace(c, chip_size=max(c.height, c.width), pad_size=(c.height, c.width))
            for c in super().epoch_chips(epoch)
        ]

    def cut_batches(self, order: list[ChipSpec], chips_per_batch: int) -> list[list[ChipSpec]]:
        """Consecutive batches, or with ``aspect_grouping`` a batch per full bucket, in the
        order the buckets fill, then the buckets' remainders (module doc)."""
        if not self.aspect_grouping:
            return super().cut_batches(order, chips_per_batch)
        buckets: tuple[list[ChipSpec], list[ChipSpec]] = ([], [])
        batches = []
        for spec in order:
            bucket = buckets[aspect_bucket(spec.height, spec.width)]
            bucket.append(spec)
            if len(bucket) == chips_per_batch:
                batches.append(list(bucket))
                bucket.clear()
        batches += [list(b) for b in buckets if b]
        return batches
