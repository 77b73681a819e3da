"""Result containers of the planner: plain numpy arrays, no torch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from chipping._numbers import check_int

_INT32 = np.iinfo(np.int32)


def _field(
    value: object, name: str, kind: str, shape: tuple, dtype: type, owner: str = "ChipPlan"
) -> np.ndarray:
    """``value`` as a C-contiguous ``dtype`` array of ``shape`` (-1 = any length), its dtype of
    numpy kind ``kind`` ("i": signed/unsigned integers, "f": integers or floats); errors name
    ``owner.name``."""
    name = f"{owner}.{name}"
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError, OverflowError) as e:
        raise ValueError(f"{name} is not an array: {e}") from None
    kinds = "iu" if kind == "i" else "iuf"
    if arr.dtype.kind not in kinds:
        what = "integers" if kind == "i" else "real numbers"
        raise ValueError(f"{name} must hold {what}, got dtype {arr.dtype}")
    if arr.ndim != len(shape) or any(
        want not in (-1, got) for want, got in zip(shape, arr.shape, strict=True)
    ):
        raise ValueError(f"{name} must have shape {shape} (-1: any), got {arr.shape}")
    if kind == "i" and arr.size and (arr.min() < _INT32.min or arr.max() > _INT32.max):
        raise ValueError(f"{name} holds values outside int32")
    return np.ascontiguousarray(arr, dtype=dtype)


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask.reshape(len(mask), -1).any(axis=1))[0])


@dataclass(frozen=True)
class ChipPlan:
    """Chips of one or many images.

    Construction validates every field (dtypes, shapes, lengths, ``scale_index`` within the
    ``valid_ranges`` rows, non-empty chips at non-negative corners, finite positive factors,
    ranges ``0 <= lo < hi``); a problem is a ``ValueError`` naming the field, the row and the
    value. Fields are stored with the dtypes below whatever integer/float dtype was given.

    Attributes:
        image_index: int32 ``(N,)`` image of each chip (0 for single-image plans).
        scale_index: int32 ``(N,)`` index into the scales the plan was made with.
        chips_scaled: int32 ``(N, 4)`` XYXY chip corners on the scaled canvas (exact integers;
            the canvas is the image resized by ``factors``).
        factors: float64 ``(N,)`` resize factor of each chip's scale for its image.
        counts: int32 ``(N,)`` boxes (or proposals) the chip newly covered when it was picked.
        valid_ranges: float64 ``(S, 2)`` ``[lo, hi)`` box-size ranges in image px per scale.
    """

    image_index: np.ndarray
    scale_index: np.ndarray
    chips_scaled: np.ndarray
    factors: np.ndarray
    counts: np.ndarray
    valid_ranges: np.ndarray

    def __post_init__(self) -> None:
        ranges = _field(self.valid_ranges, "valid_ranges", "f", (-1, 2), np.float64)
        bad = np.isnan(ranges).any(axis=1) | ~np.isfinite(ranges[:, 0])
        bad |= (ranges[:, 0] < 0) | (ranges[:, 1] <= ranges[:, 0])
        if bad.any():
            i = _first(bad)
            raise ValueError(
                f"ChipPlan.valid_ranges[{i}] = {ranges[i].tolist()}: need 0 <= lo < hi"
            )
        chips = _field(self.chips_scaled, "chips_scaled", "i", (-1, 4), np.int32)
        n = len(chips)
        fields = {"chips_scaled": chips, "valid_ranges": ranges}
        for name, kind, dtype in (
            ("image_index", "i", np.int32),
            ("scale_index", "i", np.int32),
            ("factors", "f", np.float64),
            ("counts", "i", np.int32),
        ):
            fields[name] = _field(getattr(self, name), name, kind, (n,), dtype)
        checks = (
            ("image_index", fields["image_index"] < 0, "must be >= 0"),
            (
                "scale_index",
                (fields["scale_index"] < 0) | (fields["scale_index"] >= len(ranges)),
                f"must index the {len(ranges)} rows of valid_ranges",
            ),
            (
                "chips_scaled",
                (chips[:, :2] < 0).any(axis=1) | (chips[:, 2:] <= chips[:, :2]).any(axis=1),
                "must be XYXY with 0 <= x1 < x2 and 0 <= y1 < y2",
            ),
            (
                "factors",
                ~np.isfinite(fields["factors"]) | (fields["factors"] <= 0),
                "must be finite and > 0",
            ),
            ("counts", fields["counts"] < 0, "must be >= 0"),
        )
        for name, mask, rule in checks:
            if mask.any():
                i = _first(mask)
                raise ValueError(f"ChipPlan.{name}[{i}] = {fields[name][i].tolist()} {rule}")
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    @classmethod
    def _trusted(cls, **fields: np.ndarray) -> ChipPlan:
        """A plan from arrays already of the right dtypes and shapes (the planner's outputs and
        their subsets), without the checks of construction."""
        plan = object.__new__(cls)
        plan.__dict__.update(fields)
        return plan

    @staticmethod
    def from_raw(raw: dict, valid_ranges: np.ndarray) -> ChipPlan:
        """The plan of a backend's raw output dict (trusted: made by the planner)."""
        return ChipPlan._trusted(
            image_index=np.asarray(raw["image_index"], dtype=np.int32),
            scale_index=np.asarray(raw["scale_index"], dtype=np.int32),
            chips_scaled=np.asarray(raw["chips_scaled"], dtype=np.int32).reshape(-1, 4),
            factors=np.asarray(raw["factors"], dtype=np.float64),
            counts=np.asarray(raw["counts"], dtype=np.int32),
            valid_ranges=np.asarray(valid_ranges, dtype=np.float64).reshape(-1, 2),
        )

    def __len__(self) -> int:
        return int(self.chips_scaled.shape[0])

    @property
    def chips(self) -> np.ndarray:
        """float32 ``(N, 4)`` XYXY chips in original-image pixels."""
        return (self.chips_scaled / self.factors[:, None]).astype(np.float32)

    @property
    def chip_ranges(self) -> np.ndarray:
        """float64 ``(N, 2)`` valid range ``[lo, hi)`` (image px) of each chip's scale."""
        return self.valid_ranges[self.scale_index]

    def select(self, index: np.ndarray | slice) -> ChipPlan:
        """The chips at ``index`` (a boolean mask of ``len(self)``, integer indices or a
        slice); a subset of a valid plan is valid, so it is not checked again."""
        if not isinstance(index, slice):
            index = np.asarray(index)
            if index.dtype == bool and index.shape != (len(self),):
                raise ValueError(f"index mask must have shape ({len(self)},), got {index.shape}")
            if index.dtype != bool and (index.dtype.kind not in "iu" or index.ndim != 1):
                raise ValueError(
                    f"index must be a slice, a boolean mask or 1-D integers, got "
                    f"dtype {index.dtype} shape {index.shape}"
                )
            if index.dtype != bool and index.size:
                if index.min() < -len(self) or index.max() >= len(self):
                    raise ValueError(f"index holds values outside [0, {len(self)})")
        return ChipPlan._trusted(
            image_index=self.image_index[index],
            scale_index=self.scale_index[index],
            chips_scaled=self.chips_scaled[index],
            factors=self.factors[index],
            counts=self.counts[index],
            valid_ranges=self.valid_ranges,
        )

    def for_image(self, image: int) -> ChipPlan:
        """The chips of image ``image``."""
        return self.select(self.image_index == image)


@dataclass(frozen=True)
class ChipAssignment:
    """Boxes of each chip, in CSR form: chip ``k`` owns rows ``splits[k]:splits[k + 1]``.

    Construction checks the fields (splits rising from 0 to the row count, equal lengths,
    non-negative indices, finite ``(V, 4)`` boxes); ``valid(k)`` / ``ignore(k)`` refuse a chip
    outside ``[0, len)`` (no negative wrap-around).

    Attributes:
        valid_splits: int64 ``(N + 1,)``.
        valid_index: int64 ``(V,)`` index of each valid box in its image's box array.
        valid_boxes: float32 ``(V, 4)`` XYXY in chip pixels, clipped to the chip.
        ignore_splits, ignore_index, ignore_boxes: the same for ignore boxes.
    """

    valid_splits: np.ndarray
    valid_index: np.ndarray
    valid_boxes: np.ndarray
    ignore_splits: np.ndarray
    ignore_index: np.ndarray
    ignore_boxes: np.ndarray

    def __post_init__(self) -> None:
        fields = {}
        for kind in ("valid", "ignore"):
            splits = _field(
                getattr(self, f"{kind}_splits"),
                f"{kind}_splits",
                "f",
                (-1,),
                float,
                "ChipAssignment",
            )
            if splits.size == 0 or not (splits == np.round(splits)).all():
                raise ValueError(f"ChipAssignment.{kind}_splits must be N + 1 >= 1 integers")
            index = _field(
                getattr(self, f"{kind}_index"),
                f"{kind}_index",
                "i",
                (-1,),
                np.int64,
                "ChipAssignment",
            )
            boxes = _field(
                getattr(self, f"{kind}_boxes"),
                f"{kind}_boxes",
                "f",
                (len(index), 4),
                np.float32,
                "ChipAssignment",
            )
            if splits[0] != 0 or splits[-1] != len(index) or (np.diff(splits) < 0).any():
                raise ValueError(
                    f"ChipAssignment.{kind}_splits must rise from 0 to {len(index)}, got "
                    f"{splits.tolist()[:8]}"
                )
            if len(index) and index.min() < 0:
                raise ValueError(f"ChipAssignment.{kind}_index holds negative values")
            if not np.isfinite(boxes).all():
                raise ValueError(f"ChipAssignment.{kind}_boxes must be finite")
            fields[f"{kind}_splits"] = splits.astype(np.int64)
            fields[f"{kind}_index"], fields[f"{kind}_boxes"] = index, boxes
        if len(fields["valid_splits"]) != len(fields["ignore_splits"]):
            raise ValueError(
                f"ChipAssignment.valid_splits and ignore_splits differ in length "
                f"({len(fields['valid_splits'])} vs {len(fields['ignore_splits'])})"
            )
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    @staticmethod
    def from_raw(raw: dict) -> ChipAssignment:
        """The assignment of a backend's raw output dict (trusted: made by the planner)."""
        out = object.__new__(ChipAssignment)
        out.__dict__.update(
            valid_splits=np.asarray(raw["valid_splits"], dtype=np.int64),
            valid_index=np.asarray(raw["valid_index"], dtype=np.int64),
            valid_boxes=np.asarray(raw["valid_boxes"], dtype=np.float32).reshape(-1, 4),
            ignore_splits=np.asarray(raw["ignore_splits"], dtype=np.int64),
            ignore_index=np.asarray(raw["ignore_index"], dtype=np.int64),
            ignore_boxes=np.asarray(raw["ignore_boxes"], dtype=np.float32).reshape(-1, 4),
        )
        return out

    def _chip(self, chip: object) -> int:
        if len(self) == 0:
            raise ValueError("chip: this assignment has no chips")
        return check_int(chip, "chip", 0, len(self) - 1)

    def __len__(self) -> int:
        return int(self.valid_splits.shape[0] - 1)

    def valid(self, chip: int) -> tuple[np.ndarray, np.ndarray]:
        """(box indices int64 (V,), chip-pixel boxes float32 (V, 4)) of chip ``chip``."""
        chip = self._chip(chip)
        a, b = self.valid_splits[chip], self.valid_splits[chip + 1]
        return self.valid_index[a:b], self.valid_boxes[a:b]

    def ignore(self, chip: int) -> tuple[np.ndarray, np.ndarray]:
        """(box indices int64 (G,), chip-pixel boxes float32 (G, 4)) of chip ``chip``."""
        chip = self._chip(chip)
        a, b = self.ignore_splits[chip], self.ignore_splits[chip + 1]
        return self.ignore_index[a:b], self.ignore_boxes[a:b]
