"""Cross-check `bench_peers.py`'s SAHI row with a separate run of SAHI's own command line.

`bench_peers.py` calls ``sahi.predict.get_sliced_prediction`` in its own loop. This script
runs ``sahi predict`` itself (``python -m sniper.integrations.sahi_cli predict --model_type
sniper``: SAHI's CLI app with our model type registered) on the same first N images of a
registered dataset, with the same settings as the benchmark's SAHI contenders (512 px slices,
overlap 0.2, GREEDYNMM / IOS 0.5, model confidence 0 with ``force_postprocess_type``, model
input size finest factor x 512), in a fresh process. SAHI writes ``result.json`` (COCO
results, its ``--dataset_json_path`` export); this script maps SAHI's category names back to
the dataset's category ids, scores them with pycocotools and prints the AP beside the
benchmark's row from ``--bench-json`` (a ``bench_peers.json``), if given.

    python benchmarks/check_sahi_cli.py --config-file configs/autofocus/synthetic_mobilenet.yaml \\
        --weights output/autofocus_synthetic_mobilenet/model_final.pth --num-images 6 \\
        [--no-standard-prediction] [--bench-json output/bench_peers/bench_peers.json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
from typing import Any

METRICS = ("AP", "AP50", "APs", "APm", "APl")
SLICE, OVERLAP, MATCH = 512, 0.2, 0.5  # SAHI's get_sliced_prediction defaults


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config-file", default="configs/autofocus/synthetic_mobilenet.yaml")
    ap.add_argument("--weights", required=True, help="MODEL.WEIGHTS of the benchmarked model")
    ap.add_argument("--dataset", default="synthetic_digits_test2048")
    ap.add_argument("--num-images", type=int, default=None, help="first N images (all)")
    ap.add_argument(
        "--no-standard-prediction", action="store_true", help="slices only (sahi-slices row)"
    )
    ap.add_argument("--bench-json", default=None, help="bench_peers.json to compare with")
    ap.add_argument("--output", default="output/check_sahi_cli", help="SAHI's --project")
    return ap.parse_args(argv)


def subset_json(dataset: str, num_images: int | None, folder: str) -> tuple[str, Any]:
    """The first ``num_images`` records of ``dataset`` (`sniper.data.build.get_records`, the
    images `bench_peers.py` reads) as SAHI's input: links in ``folder`` to the image files
    and the COCO images json SAHI iterates (ids the records' ``image_id``). Returns that json's
    path and the ground truth as the evaluation builds it (`coco_from_ground_truth`: the
    loader's cleaned boxes, the dataset's category ids, named by its ``thing_classes``)."""
    from sniper.data.build import get_records
    from sniper.engine.coco_ground_truth import coco_from_ground_truth, record_ground_truth
    from sniper.inputs import dataset_labels

    records = get_records([dataset])[:num_images]
    names, to_id = dataset_labels([dataset])
    if names is None:
        raise SystemExit(f"error: --dataset {dataset}: its metadata has no thing_classes")
    to_id = to_id or {c: c + 1 for c in range(len(names))}
    images = []
    for r in records:
        link = f"{int(r['image_id'])}_{os.path.basename(r['file_name'])}"
        os.symlink(os.path.abspath(r["file_name"]), os.path.join(folder, link))
        images.append(
            {
                "id": int(r["image_id"]),
                "file_name": link,
                "height": int(r["height"]),
                "width": int(r["width"]),
            }
        )
    path = os.path.join(folder, "images.json")
    categories = [{"id": to_id[c], "name": n} for c, n in enumerate(names)]
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"images": images, "annotations": [], "categories": categories}, f)
    gt = coco_from_ground_truth([record_ground_truth(r) for r in records], to_id, names)
    return path, gt


def sahi_command(args: argparse.Namespace, folder: str, json_path: str, factor: float) -> list:
    """The ``sahi predict`` command line (our entry point to SAHI's CLI app)."""
    cmd = [sys.executable, "-m", "sniper.integrations.sahi_cli", "predict"]
    flags = {
        "model_type": "sniper",
        "model_config_path": args.config_file,
        "model_path": args.weights,
        "config_setup": "autofocus.config.setup_cfg",
        "modules": "autofocus.modeling",
        "model_device": "cpu",
        "model_confidence_threshold": 0.0,
        "source": folder,
        "dataset_json_path": json_path,
        "image_size": round(factor * SLICE),
        "slice_height": SLICE,
        "slice_width": SLICE,
        "overlap_height_ratio": OVERLAP,
        "overlap_width_ratio": OVERLAP,
        "postprocess_type": "GREEDYNMM",
        "postprocess_match_metric": "IOS",
        "postprocess_match_threshold": MATCH,
        "project": os.path.abspath(args.output),
        "name": "exp",
        "verbose": 0,
    }
    cmd += [f"--{k}={v}" for k, v in flags.items()]
    cmd += ["--novisual", "--force_postprocess_type"]
    if args.no_standard_prediction:
        cmd.append("--no_standard_prediction")
    return cmd


def score(results: list[dict], gt: Any) -> dict[str, float]:
    """COCO box AP (percent) of SAHI's ``results`` on ``gt`` (a pycocotools ``COCO``);
    SAHI's categories mapped to the ground truth's by name."""
    from pycocotools.cocoeval import COCOeval

    by_name = {c["name"]: c["id"] for c in gt.dataset["categories"]}
    dets = []
    for r in results:
        name = str(r["category_name"])
        if name not in by_name:
            raise SystemExit(f"error: SAHI category {name!r} is not in the dataset's categories")
        dets.append({**r, "category_id": by_name[name]})
    if not dets:
        return dict.fromkeys(METRICS, 0.0)
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {m: 100.0 * float(ev.stats[i]) for i, m in zip((0, 1, 3, 4, 5), METRICS, strict=True)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    from bench_inference import finest_scale

    from autofocus.config import setup_cfg
    from sniper.config import parse_scale_list

    cfg = setup_cfg(args.config_file, [])
    factor = float(finest_scale(parse_scale_list(cfg.SNIPER.TEST_SCALES)))
    os.makedirs(args.output, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        json_path, gt = subset_json(args.dataset, args.num_images, tmp)
        cmd = sahi_command(args, tmp, json_path, factor)
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    result_path = os.path.join(args.output, "exp", "result.json")
    with open(result_path, encoding="utf-8") as f:
        row = score(json.load(f), gt)
    key = "sahi-slices" if args.no_standard_prediction else "sahi"
    print(f"\n{'':<28}" + "".join(f"{m:>7}" for m in METRICS))
    print(f"{'sahi predict (CLI)':<28}" + "".join(f"{row[m]:>7.1f}" for m in METRICS))
    if args.bench_json:
        with open(args.bench_json, encoding="utf-8") as f:
            bench = {r["key"]: r for r in json.load(f)["rows"]}
        if key in bench and "skipped" not in bench[key]:
            other = bench[key]
            print(
                f"{'bench_peers ' + key:<28}"
                + "".join(
                    f"{'-' if other[m] is None else format(other[m], '.1f'):>7}" for m in METRICS
                )
            )
    return row


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
