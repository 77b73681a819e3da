"""Inference over a dataset (detectron2's `inference_on_dataset`) and the evaluator
interface it feeds (`DatasetEvaluator`); re-exported by `sniper.engine.evaluation`.

`inference_on_dataset(inference, records, evaluator)` reads every record's image and runs an
*inference engine* on it: any callable mapping a list of ``(H, W, 3)`` images to detections
in original-image pixels with the number of network-input pixels it processed (SNIPER's
`sniper.inference.MultiScaleInference`, one scale of it, or AutoFocus's cascade). Records are
split across processes (`records[rank::world_size]`), with a progress bar (or a log line
every 50 images without a terminal) on rank 0. An image that cannot be read, or whose size
differs from its record's (its boxes are in the record's frame), is skipped with a warning
and counted (``speed/skipped_images``); its ground truth is left out of the evaluation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import torch

from sniper.progress import track

from .coco_ground_truth import read_test_image
from .comm import all_gather, get_rank, get_world_size, is_main_process

__all__ = ["DatasetEvaluator", "inference_on_dataset"]

logger = logging.getLogger("sniper.engine.evaluation")  # the logger these lines always had


class DatasetEvaluator(Protocol):
    """What `inference_on_dataset` needs of an evaluator (detectron2's interface)."""

    def reset(self) -> None: ...

    def process(self, records: Sequence[dict], outputs: Sequence[dict[str, Any]]) -> None: ...

    def evaluate(self) -> dict[str, dict[str, float]]: ...


def inference_on_dataset(
    inference: Callable[[list[np.ndarray]], list[dict[str, Any]]],
    records: Sequence[dict],
    evaluator: DatasetEvaluator,
    *,
    input_format: str = "RGB",
    on_output: Callable[[dict, dict[str, Any]], None] | None = None,
) -> dict[str, dict[str, float]]:
    """Run ``inference`` on this process's share of ``records`` and evaluate.

    Args:
        inference: maps ``[image]`` (uint8 ``(H, W, 3)`` in ``input_format``) to one dict
            per image with ``boxes`` (N, 4) XYXY original-image px, ``scores`` (N,),
            ``classes`` (N,) contiguous 0..C-1 and ``pixels`` (int, network-input pixels
            processed); optionally ``pixels_per_scale`` (list of int) and ``masks`` (N COCO
            RLE dicts of the image, aligned with ``boxes``; passed to the evaluator as they
            are).
        records: dataset records (file_name, image_id, height, width, ...).
        evaluator: receives the detections.
        input_format: channel order the images are read in.
        on_output: called with ``(record, output)`` for every evaluated image, ``output``
            being the engine's whole dict (e.g. AutoFocus's ``chips_per_scale``), on the
            process that ran it (gathering is the caller's).

    Returns:
        The evaluator's results plus "speed": {"images_per_s", "input_pixels",
        "pixels_per_image", "images" (evaluated), "skipped_images" (unreadable, or of
        another size than their record: warned about and left out of the evaluation), and
        "pixels_scale<k>" per scale when reported} (summed over all processes); {} on
        ranks > 0.
    """
    shard = list(records)[get_rank() :: get_world_size()]
    name = getattr(evaluator, "dataset_name", "dataset")
    evaluator.reset()
    pixels, per_scale, skipped, start = 0, [], 0, time.perf_counter()
    with torch.no_grad():
        for record in track(shard, desc=f"evaluate {name}", enabled=is_main_process()):
            image = read_test_image(record, input_format, name)
            if image is None:
                skipped += 1
                continue
            out = inference([image])[0]
            if on_output is not None:
                on_output(record, out)
            pixels += int(out["pixels"])
            for k, px in enumerate(out.get("pixels_per_scale", [])):
                per_scale += [0] * (k + 1 - len(per_scale))
                per_scale[k] += int(px)
            detections = {
                "boxes": torch.as_tensor(out["boxes"]),
                "scores": torch.as_tensor(out["scores"]),
                "labels": torch.as_tensor(out["classes"]).long() + 1,
            }
            if out.get("masks") is not None:
                detections["masks"] = out["masks"]
            evaluator.process([record], [detections])
    seconds = time.perf_counter() - start
    stats = all_gather((len(shard) - skipped, pixels, seconds, per_scale, skipped))
    results = evaluator.evaluate()
    if not is_main_process():
        return {}
    images = sum(s[0] for s in stats)
    slowest = max(s[2] for s in stats)
    total = float(sum(s[1] for s in stats))
    speed = {
        "images_per_s": images / slowest if slowest > 0 else 0.0,
        "input_pixels": total,
        "pixels_per_image": total / max(images, 1),
        "images": float(images),
        "skipped_images": float(sum(s[4] for s in stats)),
    }
    for k in range(max(len(s[3]) for s in stats)):
        speed[f"pixels_scale{k}"] = float(sum(s[3][k] for s in stats if k < len(s[3])))
    results["speed"] = speed
    logger.info(
        "inference on %d images: %.2f images/s, %.4g input pixels per image",
        images,
        speed["images_per_s"],
        speed["pixels_per_image"],
    )
    if speed["skipped_images"]:
        logger.warning(
            "%s: %d images skipped (unreadable or of another size than their record); the "
            "results cover the other %d",
            name,
            int(speed["skipped_images"]),
            images,
        )
    return results
