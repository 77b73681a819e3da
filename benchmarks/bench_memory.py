"""Peak memory of inference on large images: SNIPER multi-scale vs the AutoFocus cascade,
tiled (the runner's pixel budget) and untiled, each run in its own process.

Every case runs ``python benchmarks/bench_memory.py --child ...`` in a fresh process that
builds the model of ``--config-file`` (the CPU quickstart model; random weights unless
MODEL.WEIGHTS is given: memory does not depend on them, and a random FocusPixel head fires
everywhere, the cascade's worst case: every FocusChip is the whole image), makes one random
uint8 image of each size, runs the engine once and reports its peak resident set size
(``getrusage`` ``ru_maxrss``), the largest network input and the wall time. The image itself
(``H * W * 3`` bytes) is part of the peak.

    python benchmarks/bench_memory.py --sizes 2000 4000 8000 16000

Sizes above ``--full-scales-up-to`` (default 0: all) run with the scales of ``--big-scales``
(one coarse and one fine long side, default 512 and 3072 px: a 9.4 MP canvas, above the 8 MP
budget, so 4 tiles) instead of the config's, so that a 16k image takes minutes rather than
hours on a CPU (the config's 2.0x scale makes a 1 GP canvas of it); memory depends on the
largest input and the image, not on the number of tiles. The table says which. Untiled runs
(``max_pixels = 0``) are limited to ``--untiled-up-to`` px (default 2000): beyond, one input
needs tens of GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    if args.engine == "autofocus":
        from autofocus.cascade import AutoFocusCascade
        from autofocus.config import setup_cfg
        from autofocus.modeling import build_autofocus_model as build
    else:
        from sniper.config import setup_cfg
        from sniper.inference import MultiScaleInference
        from sniper.modeling import build_model as build
    cfg = setup_cfg(args.config_file, args.opts)
    model = build(cfg).eval()
    if cfg.MODEL.WEIGHTS:
        from sniper.modeling.state_dict import load_model_weights

        load_model_weights(model, cfg.MODEL.WEIGHTS)
    tiling = {} if args.max_pixels < 0 else {"max_pixels": args.max_pixels}
    if args.engine == "autofocus":
        engine = AutoFocusCascade.from_config(cfg, model, **tiling)
    else:
        engine = MultiScaleInference.from_config(cfg, model, **tiling)
    largest = 0
    forward = engine.forward_inputs

    def spy(sources, inputs):
        nonlocal largest
        largest = max([largest] + [i.area for i in inputs])
        return forward(sources, inputs)

    engine.forward_inputs = spy  # type: ignore[method-assign]
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    start = time.perf_counter()
    (out,) = engine([image])
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "peak_gib": peak_kib / 2**20,
                "largest_input_px": largest,
                "inputs_per_scale": out["inputs_per_scale"],
                "seconds": seconds,
            }
        )
    )


def run_case(args: argparse.Namespace, engine: str, size: int, tiled: bool) -> dict:
    config = args.autofocus_config if engine == "autofocus" else args.config_file
    opts = list(args.opts)
    if size > args.full_scales_up_to:
        scales = "[" + ", ".join(f"[{s}, {s}]" for s in args.big_scales) + "]"
        if engine == "autofocus":
            opts += ["AUTOFOCUS.SCALES", scales, "AUTOFOCUS.VALID_RANGES", "[[-1, -1], [-1, -1]]"]
            opts += ["AUTOFOCUS.THRESHOLDS", "[0.0]", "AUTOFOCUS.DILATIONS", "[1]"]
            opts += ["AUTOFOCUS.MIN_SIZES", "[1]"]
        else:
            opts += ["SNIPER.TEST_SCALES", scales, "SNIPER.TEST_VALID_RANGES"]
            opts += ["[" + ", ".join("[-1, -1]" for _ in args.big_scales) + "]"]
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--engine", engine]
    cmd += ["--size", str(size), "--config-file", config, "--threads", str(args.threads)]
    cmd += ["--max-pixels", "-1" if tiled else "0", *opts]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
        return {"error": f"exit {proc.returncode}: {' '.join(tail)}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config-file", default="configs/sniper/synthetic_mobilenet.yaml")
    ap.add_argument("--autofocus-config", default="configs/autofocus/synthetic_mobilenet.yaml")
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 4000, 8000, 16000])
    ap.add_argument("--engines", nargs="+", default=["sniper", "autofocus"])
    ap.add_argument("--full-scales-up-to", type=int, default=0)
    ap.add_argument("--big-scales", type=int, nargs="+", default=[512, 3072])
    ap.add_argument("--untiled-up-to", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--output", default="output/bench_memory.json")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--engine", default="sniper", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--max-pixels", type=int, default=-1, help=argparse.SUPPRESS)
    ap.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE")
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    print(
        f"{'engine':10} {'size':>6} {'tiled':>5} {'scales':>7} {'largest input':>14} "
        f"{'inputs/scale':>16} {'peak RSS':>9} {'time':>8}"
    )
    rows = []
    for size in args.sizes:
        for engine in args.engines:
            for tiled in (True, False):
                if not tiled and size > args.untiled_up_to:
                    continue
                res = run_case(args, engine, size, tiled)
                scales = "config" if size <= args.full_scales_up_to else "big"
                rows.append(
                    {"engine": engine, "size": size, "tiled": tiled, "scales": scales, **res}
                )
                if "error" in res:
                    print(f"{engine:10} {size:>6} {tiled!s:>5} {scales:>7} {res['error']}")
                    continue
                print(
                    f"{engine:10} {size:>6} {tiled!s:>5} {scales:>7} "
                    f"{res['largest_input_px'] / 1e6:>12.1f}MP "
                    f"{str(res['inputs_per_scale']):>16} {res['peak_gib']:>7.2f}Gi "
                    f"{res['seconds']:>7.0f}s",
                    flush=True,
                )
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    tmp = args.output + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=1)
    os.replace(tmp, args.output)


if __name__ == "__main__":
    main()
