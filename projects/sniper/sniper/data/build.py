"""Data built from the config: the infinite, resumable training chip loader and test records.

The training loader plans each epoch's chips in the main process (fast: the C++ planner), then
a ``torch.utils.data.DataLoader`` maps whole batches in worker processes (one worker decodes
each image of its batch once). ``state_dict()`` gives ``{"epoch", "batch_in_epoch"}``;
``load_state_dict`` resumes at that exact batch with the same chips, order and flips.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

import torch
from fvcore.common.registry import Registry
from torch.utils.data import DataLoader, Dataset

from sniper.data.catalog import DatasetCatalog
from sniper.data.chip_mapper import ChipMapper
from sniper.data.chip_sampler import ChipSampler
from sniper.data.registration import register_builtin_datasets, register_coco_entries
from sniper.data.seeding import resolve_seed
from sniper.data.whole_image_sampler import WholeImageSampler
from sniper.structures import ChipSpec

logger = logging.getLogger("sniper.data")

SAMPLER_REGISTRY = Registry("SAMPLER")
SAMPLER_REGISTRY.__doc__ = (
    "Training samplers by DATALOADER.SAMPLER_TRAIN: classes with from_config(cfg, records)."
)
SAMPLER_REGISTRY.register(ChipSampler)
SAMPLER_REGISTRY.register(WholeImageSampler)


__all__ = [
    "TrainChipLoader",
    "build_chip_mapper",
    "SAMPLER_REGISTRY",
    "build_chip_sampler",
    "build_test_records",
    "build_train_loader",
    "get_records",
    "pad_value",
    "register_builtin_datasets",
    "resolve_seed",
]


def get_records(names: Sequence[str]) -> list[dict]:
    """Concatenated records of registered datasets ``names`` (built-ins registered first)."""
    if isinstance(names, str):
        names = [names]
    if len(names) == 0:
        raise ValueError("no dataset given (DATASETS.TRAIN / DATASETS.TEST is empty)")
    register_builtin_datasets()
    records: list[dict] = []
    for name in names:
        records += DatasetCatalog.get(name)
    return records


class _BatchDataset(Dataset):
    """Map-style dataset whose items are whole batches of ``ChipSpec``."""

    def __init__(self, batches: list[list[ChipSpec]], mapper: ChipMapper) -> None:
        self.batches, self.mapper = batches, mapper

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> tuple[list[tuple[torch.Tensor, dict]], list]:
        """(mapped chips, ``(file_name, reason)`` of each file skipped); mappers without
        ``map_batch`` report no failures."""
        specs = self.batches[index]
        if hasattr(self.mapper, "map_batch"):
            return self.mapper.map_batch(specs)
        return self.mapper(specs), []


def _identity(batch):
    return batch


class TrainChipLoader:
    """Infinite iterator over training batches (lists of ``(image, target)``), epoch by epoch.

    Args:
        sampler: plans each epoch's chips.
        mapper: turns chip specs into tensors.
        chips_per_batch: chips per batch on this rank.
        rank, world_size: distributed position; each rank gets its share of every epoch.
        num_workers: DataLoader worker processes (0 = map in the main process).
    """

    def __init__(
        self,
        sampler: ChipSampler,
        mapper: ChipMapper,
        chips_per_batch: int,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
    ) -> None:
        self.sampler, self.mapper = sampler, mapper
        self.chips_per_batch, self.rank, self.world_size = chips_per_batch, rank, world_size
        self.num_workers = num_workers
        self.epoch, self.batch_in_epoch = 0, 0
        self._iter: Iterator | None = None
        # Files that could not be used: first reason, warned once per loader.
        self.bad_files: dict[str, str] = {}
        self._epoch_from_start = True  # this epoch was iterated from its first batch
        self._epoch_chips = self._epoch_skipped = 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.batch_in_epoch = int(state["epoch"]), int(state["batch_in_epoch"])
        self._iter = None
        self._epoch_from_start = self.batch_in_epoch == 0

    def epoch_batches(self, epoch: int) -> list[list[ChipSpec]]:
        return self.sampler.epoch_batches(epoch, self.chips_per_batch, self.rank, self.world_size)

    def _start_epoch(self) -> Iterator:
        batches = self.epoch_batches(self.epoch)
        if not batches:
            raise RuntimeError(
                "the training set yields no chips: no image has a box in any "
                "scale's valid range (check SNIPER.VALID_RANGES and the data)"
            )
        # A seeded generator: creating this loader must not draw from torch's global RNG,
        # or a resumed run would sample RPN/RoI targets differently from an uninterrupted one.
        generator = torch.Generator().manual_seed(
            self.sampler.seed * 1_000_003 + self.epoch * 7919 + self.rank
        )
        loader = DataLoader(
            _BatchDataset(batches[self.batch_in_epoch :], self.mapper),
            batch_size=None,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=_identity,
            persistent_workers=False,
            generator=generator,
        )
        logger.info(
            "epoch %d: %d batches of %d chips on rank %d",
            self.epoch,
            len(batches),
            self.chips_per_batch,
            self.rank,
        )
        return iter(loader)

    def __iter__(self) -> TrainChipLoader:
        return self

    def __next__(self) -> list[tuple[torch.Tensor, dict]]:
        """The next non-empty batch (chips of unusable images are skipped and counted).

        Raises:
            ValueError: a whole epoch gave no chip (every image with chips is unreadable or
                of another size than its record), naming how many files failed and the
                first few with their reasons.
        """
        while True:
            if self._iter is None:
                self._iter = self._start_epoch()
                self._epoch_chips = self._epoch_skipped = 0
            try:
                batch, failures = next(self._iter)
            except StopIteration:
                self._end_epoch()
                self.epoch, self.batch_in_epoch, self._iter = self.epoch + 1, 0, None
                self._epoch_from_start = True
                continue
            self.batch_in_epoch += 1
            self._note_failures(failures)
            self._epoch_chips += len(batch)
            if batch:  # all chips of a batch can be skipped (unusable images)
                return batch

    def _note_failures(self, failures: list[tuple[str, str]]) -> None:
        """Warn once per file (over the loader's life) and count the skipped files."""
        for file_name, reason in failures:
            self._epoch_skipped += 1
            if file_name not in self.bad_files:
                self.bad_files[file_name] = reason
                logger.warning("skipping the chips of %s: %s", file_name, reason)

    def _end_epoch(self) -> None:
        """The epoch's summary line; the error when the whole epoch gave no chip."""
        if self._epoch_chips == 0 and self._epoch_from_start and self.bad_files:
            raise ValueError(no_usable_images_message(self.bad_files, self.epoch))
        if self._epoch_skipped:
            logger.warning(
                "epoch %d: skipped the chips of %d unusable image(s) on rank %d "
                "(%d distinct file(s) so far)",
                self.epoch,
                self._epoch_skipped,
                self.rank,
                len(self.bad_files),
            )


def no_usable_images_message(bad_files: dict[str, str], epoch: int, first: int = 3) -> str:
    """The one-line error of an epoch without a usable image (``bad_files``: file ->
    reason, in the order met)."""
    shown = "; ".join(f"{f} ({r})" for f, r in list(bad_files.items())[:first])
    more = f"; and {len(bad_files) - first} more" if len(bad_files) > first else ""
    return (
        f"no training chip could be made in epoch {epoch}: {len(bad_files)} image file(s) "
        f"failed and no other image has chips: {shown}{more}"
    )


def build_chip_sampler(cfg, records: list[dict]) -> ChipSampler:
    """The training sampler named by DATALOADER.SAMPLER_TRAIN (`SAMPLER_REGISTRY`: SNIPER's
    "ChipSampler" or "WholeImageSampler") over ``records``, from its ``from_config(cfg,
    records)``, seeded with ``cfg.SEED`` (negative: a random seed shared by all ranks, see
    ``resolve_seed``)."""
    return SAMPLER_REGISTRY.get(cfg.DATALOADER.SAMPLER_TRAIN).from_config(cfg, records)


def pad_value(cfg) -> list[float]:
    """Chip padding colour: the pixel mean in ``cfg.INPUT.FORMAT`` channel order."""
    mean = list(cfg.MODEL.PIXEL_MEAN)  # RGB order
    return mean if cfg.INPUT.FORMAT == "RGB" else mean[::-1]


def build_chip_mapper(cfg, records: Sequence[dict] | None = None) -> ChipMapper:
    """The ``ChipMapper`` of ``cfg``, with masks when MODEL.MASK_ON (``records`` unused; the
    signature of a mapper factory)."""
    return ChipMapper(cfg.INPUT.FORMAT, pad_value(cfg), with_masks=bool(cfg.MODEL.MASK_ON))


def build_train_loader(
    cfg,
    rank: int = 0,
    world_size: int = 1,
    *,
    mapper_factory: Callable[..., ChipMapper] | None = None,
) -> TrainChipLoader:
    """The infinite training loader of ``cfg`` for this rank (see ``TrainChipLoader``).

    ``mapper_factory(cfg, records)`` builds the chip mapper (default ``build_chip_mapper``);
    projects that need more targets per chip (AutoFocus) pass their own.
    """
    total = int(cfg.SOLVER.IMS_PER_BATCH)
    if total % world_size:
        raise ValueError(
            f"SOLVER.IMS_PER_BATCH = {total} must be divisible by the number of "
            f"processes ({world_size})"
        )
    register_coco_entries(cfg.DATASETS.REGISTER_COCO)
    records = get_records(cfg.DATASETS.TRAIN)
    mapper = (mapper_factory or build_chip_mapper)(cfg, records)
    return TrainChipLoader(
        build_chip_sampler(cfg, records),
        mapper,
        total // world_size,
        rank,
        world_size,
        cfg.DATALOADER.NUM_WORKERS,
    )


def build_test_records(dataset_name: str) -> list[dict]:
    """The records (dicts, not a loader) of test dataset ``dataset_name``; inference engines
    read and rescale the images themselves (``sniper.engine.evaluation``)."""
    return get_records([dataset_name])
