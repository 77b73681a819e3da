"""Inference contenders side by side on one trained model: AP, pixels processed, images/s.

(a) one scale: the whole image at one test scale (default: the middle one), every detection
    kept; (b) SNIPER: the whole image at every SNIPER.TEST_SCALES entry, each scale's
    detections kept in its TEST_VALID_RANGES, soft-NMS merge; (c) uniform tiling at the
    finest test scale (SAHI-style slicing, our own code): tiles of --tile px with --overlap,
    every detection kept, tiles de-duplicated with NMS.

    python benchmarks/bench_inference.py --config-file configs/sniper/synthetic_mobilenet.yaml \\
        MODEL.WEIGHTS output/synthetic_mobilenet/model_final.pth [--num-images 50]
"""

from __future__ import annotations

import argparse
import os
import platform

import torch

from chipping.scales import parse_scales
from sniper.cli_errors import exit_with_error
from sniper.config import parse_scale_list, setup_cfg
from sniper.data.build import build_test_records
from sniper.data.registration import build_dataset_catalog_or_exit
from sniper.engine.checkpoint import Checkpointer
from sniper.engine.evaluation import COCOEvaluator, inference_on_dataset
from sniper.inference import MultiScaleInference
from sniper.modeling import build_model
from sniper.output_files import OutputDirError, check_output_dir
from sniper.register_args import add_register_coco_argument, register_coco_opts

OPEN = [(-1, -1)]


def finest_scale(scales: list) -> object:
    """The largest factor of the test scales ``scales`` (the first entry when none is a
    factor): the scale tiling runs at."""
    rows = parse_scales(scales)
    factor_rows = [i for i, r in enumerate(rows) if r[0] == 0]
    return scales[max(factor_rows, key=lambda i: rows[i, 1])] if factor_rows else scales[0]


def contenders(cfg, model, args) -> dict[str, MultiScaleInference]:
    scales = parse_scale_list(cfg.SNIPER.TEST_SCALES)
    one = scales[args.one_scale if args.one_scale >= 0 else len(scales) // 2]
    finest = finest_scale(scales)
    common = dict(
        input_format=cfg.INPUT.FORMAT,
        top_k=cfg.SNIPER.DETECTIONS_PER_IMAGE,
        tile_nms_iou=cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST,
    )
    return {
        f"one scale ({one})": MultiScaleInference(model, [one], OPEN, merge="nms", **common),
        f"SNIPER {len(scales)} scales": MultiScaleInference.from_config(cfg, model),
        f"tiling at {finest} ({args.tile}px, overlap {args.overlap})": MultiScaleInference(
            model,
            [finest],
            OPEN,
            merge="nms",
            max_pixels=args.tile**2,
            tile_size=args.tile,
            tile_overlap=args.overlap,
            **common,
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config-file", default="configs/sniper/synthetic_mobilenet.yaml")
    ap.add_argument("--dataset", default="", help="default: DATASETS.TEST[0]")
    ap.add_argument("--num-images", type=int, default=50)
    ap.add_argument("--one-scale", type=int, default=-1, help="index of the single scale")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--overlap", type=int, default=128)
    ap.add_argument("--output", default="output/bench_inference")
    add_register_coco_argument(ap)
    ap.add_argument("opts", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    try:
        check_output_dir(args.output)
    except OutputDirError as err:
        exit_with_error(str(err))
    cfg = setup_cfg(
        args.config_file,
        register_coco_opts(args.config_file, args.opts, args.register_coco, setup_cfg),
    )
    build_dataset_catalog_or_exit(cfg, check=False)
    name = args.dataset or cfg.DATASETS.TEST[0]
    records = build_test_records(name)[: args.num_images]
    model = build_model(cfg).to(cfg.MODEL.DEVICE).eval()
    Checkpointer(model).load(cfg.MODEL.WEIGHTS)
    print(
        f"{name}: {len(records)} images; {platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads, device {cfg.MODEL.DEVICE}"
    )
    print(
        f"\n{'inference':<40}{'AP':>6}{'AP50':>6}{'APs':>6}{'MP/img':>8}{'img/s':>7}"
        f"{'pixels vs SNIPER':>18}"
    )
    results = {}
    for label, engine in contenders(cfg, model, args).items():
        out = os.path.join(args.output, label.split(" (")[0].replace(" ", "_"))
        res = inference_on_dataset(
            engine, records, COCOEvaluator(name, out), input_format=cfg.INPUT.FORMAT
        )
        results[label] = res
    ref = next(r for k, r in results.items() if k.startswith("SNIPER"))["speed"]
    for label, res in results.items():
        b, sp = res["bbox"], res["speed"]
        print(
            f"{label:<40}{b['AP']:>6.1f}{b['AP50']:>6.1f}{b['APs']:>6.1f}"
            f"{sp['pixels_per_image'] / 1e6:>8.2f}{sp['images_per_s']:>7.2f}"
            f"{sp['input_pixels'] / ref['input_pixels']:>17.2f}x"
        )


if __name__ == "__main__":
    main()
