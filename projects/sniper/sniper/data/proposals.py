"""The proposals file: RPN proposals per image, for negative chip mining.

Format (one ``.npz`` file, written atomically):

- ``image_ids``: int64 ``(N,)`` dataset image ids (the COCO ``image_id`` of each record);
- ``splits``: int64 ``(N + 1,)`` rows ``splits[i]:splits[i + 1]`` belong to ``image_ids[i]``;
- ``boxes``: float32 ``(P, 4)`` XYXY proposals in original-image pixels;
- ``scores``: float32 ``(P,)`` objectness scores;
- ``version``: int64 scalar, currently 1.

Any external proposals (e.g. from another detector) work if written in this format, for
instance with ``save_proposals``.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Sequence

import numpy as np

logger = logging.getLogger("sniper.data")
FORMAT_VERSION = 1


def save_proposals(
    path: str, image_ids: Sequence[int], boxes: Sequence[np.ndarray], scores: Sequence[np.ndarray]
) -> None:
    """Writes per-image proposals (image px) to ``path`` atomically (temp file + rename)."""
    if not (len(image_ids) == len(boxes) == len(scores)):
        raise ValueError(
            f"image_ids, boxes and scores must have one entry per image, got "
            f"{len(image_ids)}, {len(boxes)}, {len(scores)}"
        )
    b = [np.asarray(x, dtype=np.float32).reshape(-1, 4) for x in boxes]
    s = [np.asarray(x, dtype=np.float32).reshape(-1) for x in scores]
    for i, (bi, si) in enumerate(zip(b, s, strict=True)):
        if len(bi) != len(si):
            raise ValueError(f"image {image_ids[i]}: {len(bi)} boxes but {len(si)} scores")
    splits = np.zeros(len(b) + 1, dtype=np.int64)
    np.cumsum([len(x) for x in b], out=splits[1:])
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".proposals-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f,
                image_ids=np.asarray(image_ids, dtype=np.int64),
                splits=splits,
                boxes=np.concatenate(b) if b else np.zeros((0, 4), np.float32),
                scores=np.concatenate(s) if s else np.zeros(0, np.float32),
                version=np.int64(FORMAT_VERSION),
            )
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_proposals(path: str, records: Sequence[dict]) -> list[np.ndarray]:
    """Proposals aligned with ``records`` (by ``image_id``): float32 ``(P_i, 4)`` per image.

    Boxes are clipped to their image; non-finite or empty rows are dropped; images absent
    from the file get no proposals. One warning summarizes what was dropped or missing.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"proposals file not found: {path}")
    try:
        with np.load(path) as data:
            ids, splits = data["image_ids"], data["splits"]
            boxes = data["boxes"].astype(np.float32).reshape(-1, 4)
    except (KeyError, ValueError, OSError) as e:
        raise ValueError(
            f"{path} is not a proposals file (need image_ids, splits, boxes, scores): {e}"
        ) from e
    if len(splits) != len(ids) + 1 or splits[-1] != len(boxes):
        raise ValueError(
            f"{path}: splits do not match image_ids/boxes "
            f"({len(splits)} splits, {len(ids)} images, {len(boxes)} boxes)"
        )
    where = {int(i): k for k, i in enumerate(ids)}
    out, missing, dropped = [], 0, 0
    for rec in records:
        k = where.get(int(rec["image_id"]))
        if k is None:
            missing += 1
            out.append(np.zeros((0, 4), np.float32))
            continue
        b = boxes[splits[k] : splits[k + 1]]
        b = np.clip(b, 0, [rec["width"], rec["height"], rec["width"], rec["height"]])
        keep = np.isfinite(b).all(axis=1) & (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
        dropped += int((~keep).sum())
        out.append(np.ascontiguousarray(b[keep], dtype=np.float32))
    if missing or dropped:
        msg = (
            f"load_proposals({path}): {missing} of {len(records)} images have no "
            f"proposals; dropped {dropped} empty or non-finite boxes"
        )
        logger.warning(msg)
        warnings.warn(msg, stacklevel=2)
    return out
