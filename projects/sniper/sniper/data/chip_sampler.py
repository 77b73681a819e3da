"""Per-epoch SNIPER chip sampler: plans, assigns and batches the chips of every image.

Each epoch (seeded by ``(seed, epoch)``): positive chips of every image at every scale from the
compiled planner (optionally with stride jitter), negative chips planned from proposals and
``neg_per_image`` of them sampled per image, box assignment (valid / ignore per chip), a random
flip per chip, then batches: images in a random order, the chips of one image together (so
a batch decodes each image once), cut into batches and dealt to distributed ranks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from chipping import (
    ChipPlan,
    assign_boxes_batch,
    plan_negative_chips_batch,
    plan_positive_chips_batch,
)
from chipping.scales import image_seed
from sniper.structures import ChipSpec

from .proposals import load_proposals
from .seeding import resolve_seed

logger = logging.getLogger("sniper.data")


def _concat_plans(a: ChipPlan, b: ChipPlan) -> ChipPlan:
    return ChipPlan(
        *(
            np.concatenate([getattr(a, f), getattr(b, f)])
            for f in ("image_index", "scale_index", "chips_scaled", "factors", "counts")
        ),
        valid_ranges=a.valid_ranges,
    )


class ChipSampler:
    """Plans the training chips of a dataset, epoch by epoch.

    Args:
        records: dataset records (``file_name, height, width, boxes, classes, crowd_boxes``;
            optional ``segmentations``, one per box, carried to each chip's valid boxes as
            ``ChipSpec.segmentations``).
        scales, valid_ranges, chip_size, stride: as ``chipping.plan_positive_chips``.
        jitter: stride jitter and random tie order, re-drawn every epoch.
        min_box_size: chip px; clipped boxes thinner than this are removed.
        min_inside: fraction of a GT box that must lie in a chip for it to be a valid target.
        proposals: per-record float32 ``(P_i, 4)`` proposals (image px), or None for no
            negative chips.
        neg_per_image: negative chips sampled per image per epoch.
        neg_min_proposals: per scale, proposals a negative chip must newly cover (more than).
        flip: draw a horizontal flip with probability 0.5 per chip.
        seed: base seed; epoch ``e`` uses ``image_seed(seed, e)``.
    """

    def __init__(
        self,
        records: Sequence[dict],
        scales: Sequence,
        valid_ranges: Sequence,
        chip_size: int = 512,
        stride: int = 32,
        *,
        jitter: bool = False,
        min_box_size: float = 2.0,
        min_inside: float = 0.5,
        proposals: Sequence[np.ndarray] | None = None,
        neg_per_image: int = 2,
        neg_min_proposals: Sequence[int] = (25, 10, 10),
        flip: bool = True,
        seed: int = 0,
        num_threads: int = 0,
    ) -> None:
        if len(records) == 0:
            raise ValueError("ChipSampler needs at least one record")
        self.records = list(records)
        self.scales, self.valid_ranges = list(scales), list(valid_ranges)
        self.chip_size, self.stride, self.jitter = int(chip_size), int(stride), bool(jitter)
        self.min_box_size, self.min_inside = float(min_box_size), float(min_inside)
        self.neg_per_image, self.flip = int(neg_per_image), bool(flip)
        self.neg_min_proposals = list(neg_min_proposals)
        self.seed, self.num_threads = int(seed), int(num_threads)
        self.sizes = np.array([(r["height"], r["width"]) for r in self.records], np.int64)
        gt = [np.asarray(r["boxes"], np.float32).reshape(-1, 4) for r in self.records]
        crowd = [
            np.asarray(r.get("crowd_boxes", np.zeros((0, 4))), np.float32).reshape(-1, 4)
            for r in self.records
        ]
        self._gt, self._gt_splits = self._flatten(gt)
        # Assignment sees GT then crowd boxes of each image; crowd rows are always ignore.
        self._all, self._all_splits = self._flatten(
            [np.concatenate([g, c]) for g, c in zip(gt, crowd, strict=True)]
        )
        self._crowd = np.concatenate(
            [
                np.r_[np.zeros(len(g), bool), np.ones(len(c), bool)]
                for g, c in zip(gt, crowd, strict=True)
            ]
        )
        self._num_gt = np.array([len(g) for g in gt], np.int64)
        for i, r in enumerate(self.records):
            if "segmentations" in r and len(r["segmentations"]) != len(gt[i]):
                raise ValueError(
                    f"record {i} ({r['file_name']}): {len(r['segmentations'])} segmentations "
                    f"for {len(gt[i])} boxes"
                )
        self.proposals = None
        if proposals is not None:
            if len(proposals) != len(self.records):
                raise ValueError(
                    f"proposals has {len(proposals)} entries for {len(self.records)} records"
                )
            self.proposals = self._flatten(
                [np.asarray(p, np.float32).reshape(-1, 4) for p in proposals]
            )

    @classmethod
    def from_config(cls, cfg, records: Sequence[dict]) -> ChipSampler:
        """The sampler of ``cfg.SNIPER`` (scales, ranges, chip grid, negatives from
        SNIPER.PROPOSALS_FILE) and INPUT.RANDOM_FLIP over ``records``, seeded with
        ``resolve_seed(cfg.SEED)``."""
        s = cfg.SNIPER
        proposals = load_proposals(s.PROPOSALS_FILE, records) if s.PROPOSALS_FILE else None
        return cls(
            records,
            list(s.TRAIN_SCALES),
            [list(r) for r in s.VALID_RANGES],
            s.CHIP_SIZE,
            s.CHIP_STRIDE,
            jitter=s.STRIDE_JITTER,
            min_box_size=s.MIN_BOX_SIZE,
            proposals=proposals,
            neg_per_image=s.NEG_CHIPS_PER_IMAGE,
            neg_min_proposals=list(s.NEG_MIN_PROPOSALS),
            flip=cfg.INPUT.RANDOM_FLIP == "horizontal",
            seed=resolve_seed(cfg.SEED),
        )

    @staticmethod
    def _flatten(parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        splits = np.zeros(len(parts) + 1, np.int64)
        np.cumsum([len(p) for p in parts], out=splits[1:])
        flat = np.concatenate(parts) if parts else np.zeros((0, 4), np.float32)
        return np.ascontiguousarray(flat, np.float32), splits

    def _plan_kwargs(self) -> dict:
        return dict(
            scales=self.scales,
            valid_ranges=self.valid_ranges,
            chip_size=self.chip_size,
            stride=self.stride,
            jitter=self.jitter,
            num_threads=self.num_threads,
        )

    def plan_chips(self, epoch: int) -> tuple[ChipPlan, np.ndarray]:
        """The epoch's chips (positives, then sampled negatives) and their negative flags."""
        seed = image_seed(self.seed, epoch)
        pos = plan_positive_chips_batch(
            self._gt, self.sizes, box_splits=self._gt_splits, seed=seed, **self._plan_kwargs()
        )
        negative = np.zeros(len(pos), bool)
        if self.proposals is None or self.neg_per_image <= 0:
            return pos, negative
        props, splits = self.proposals
        neg = plan_negative_chips_batch(
            props,
            self.sizes,
            pos,
            proposal_splits=splits,
            min_proposals=self.neg_min_proposals,
            seed=image_seed(seed, 1 << 32),
            **self._plan_kwargs(),
        )
        rng = np.random.default_rng([self.seed, epoch, 1])
        keep = np.zeros(len(neg), bool)
        for first, last in self._runs(neg.image_index):
            take = rng.permutation(last - first)[: self.neg_per_image]
            keep[first + take] = True
        neg = neg.select(keep)
        return _concat_plans(pos, neg), np.r_[negative, np.ones(len(neg), bool)]

    @staticmethod
    def _runs(image_index: np.ndarray) -> list[tuple[int, int]]:
        """[first, last) row ranges of equal image_index (rows are grouped by image)."""
        if len(image_index) == 0:
            return []
        cuts = np.flatnonzero(np.diff(image_index)) + 1
        edges = np.r_[0, cuts, len(image_index)]
        return list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))

    def epoch_chips(self, epoch: int) -> list[ChipSpec]:
        """All chips of ``epoch`` with their targets, in plan order."""
        plan, negative = self.plan_chips(epoch)
        assign = assign_boxes_batch(
            plan,
            self._all,
            box_splits=self._all_splits,
            crowd=self._crowd,
            min_inside=self.min_inside,
            min_box_size=self.min_box_size,
            num_threads=self.num_threads,
        )
        flips = np.random.default_rng([self.seed, epoch, 2]).random(len(plan)) < 0.5
        ranges = plan.chip_ranges
        chips = []
        for k in range(len(plan)):
            i = int(plan.image_index[k])
            rec = self.records[i]
            vi, vb = assign.valid(k)
            _, gb = assign.ignore(k)
            segms = rec.get("segmentations")
            chips.append(
                ChipSpec(
                    image_index=i,
                    file_name=rec["file_name"],
                    image_size=(int(rec["height"]), int(rec["width"])),
                    scale_index=int(plan.scale_index[k]),
                    factor=float(plan.factors[k]),
                    canvas_box=tuple(int(v) for v in plan.chips_scaled[k]),
                    chip_size=self.chip_size,
                    boxes=vb,
                    classes=np.asarray(rec["classes"], np.int64)[vi],
                    ignore_boxes=gb,
                    valid_range=(float(ranges[k, 0]), float(ranges[k, 1])),
                    negative=bool(negative[k]),
                    flip=bool(self.flip and flips[k]),
                    chip_id=k,
                    segmentations=None if segms is None else tuple(segms[j] for j in vi.tolist()),
                )
            )
        return chips

    def epoch_batches(
        self,
        epoch: int,
        chips_per_batch: int,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> list[list[ChipSpec]]:
        """This rank's batches of ``epoch``.

        Images come in a random order with each image's chips together (shuffled); the
        sequence is cut into batches of ``chips_per_batch`` (`cut_batches`; ``drop_last``
        drops the shorter ones), and batch ``j`` goes to rank
        ``j % world_size``. Every rank gets the same number of batches: the last ranks
        repeat batches from the start of the epoch when the count does not divide.
        """
        if chips_per_batch <= 0 or world_size <= 0 or not 0 <= rank < world_size:
            raise ValueError(
                f"need chips_per_batch > 0 and 0 <= rank < world_size, got "
                f"{chips_per_batch}, {rank}, {world_size}"
            )
        chips = self.epoch_chips(epoch)
        rng = np.random.default_rng([self.seed, epoch, 3])
        by_image: dict[int, list[ChipSpec]] = {}
        for c in chips:
            by_image.setdefault(c.image_index, []).append(c)
        order = []
        for i in rng.permutation(len(self.records)):
            own = by_image.get(int(i), [])
            order += [own[j] for j in rng.permutation(len(own))]
        batches = self.cut_batches(order, chips_per_batch)
        if drop_last:
            batches = [b for b in batches if len(b) == chips_per_batch]
        return deal_batches(batches, rank, world_size)

    def cut_batches(self, order: list[ChipSpec], chips_per_batch: int) -> list[list[ChipSpec]]:
        """The epoch's chips in ``order`` cut into consecutive batches of ``chips_per_batch``
        (the last one may be shorter); subclasses group them otherwise."""
        return [order[k : k + chips_per_batch] for k in range(0, len(order), chips_per_batch)]


def deal_batches(batches: list[list[ChipSpec]], rank: int, world_size: int) -> list[list]:
    """Batch ``j`` to rank ``j % world_size``; every rank gets the same number of batches
    (the last ranks repeat batches from the start when the count does not divide)."""
    if not batches:
        return []
    per_rank = -(-len(batches) // world_size)
    padded = [batches[j % len(batches)] for j in range(per_rank * world_size)]
    return padded[rank::world_size]
