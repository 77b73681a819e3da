"""Time one SNIPER training step (forward + backward + SGD) on a batch of chips, on CPU.

Prints the median wall and CPU seconds per iteration for the slim model (MobileNetV2-FPN,
64-channel FPN, small box head, fewer RPN proposals and RoI samples) next to the same
backbone with torchvision's default head sizes (256-channel FPN, 1024-wide box head,
2000/1000 proposals, 512 RoIs), measured in one run with the same inputs and threads.
With ``--masks`` each model is also timed with its mask branch (MODEL.MASK_ON: 64 channels
for the slim model, as configs/sniper/synthetic_mobilenet_mask.yaml; torchvision's 256 for
the default heads), on the same chips with an elliptic mask inside each GT box, and the cost
of the mask branch is printed as a ratio.

Usage: python benchmarks/bench_model_step.py [--chips 4] [--size 512] [--iters 7]
       [--norm BN] [--tune-malloc] [--masks]
(run with PYTHONPATH=projects/sniper:. until the package is installed).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import statistics
import time

import torch

from sniper.config import add_sniper_config, get_cfg
from sniper.modeling import build_model

SLIM = [
    "MODEL.FPN.OUT_CHANNELS",
    "64",
    "MODEL.ROI_BOX_HEAD.FC_DIM",
    "256",
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN",
    "1000",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN",
    "500",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
    "128",
]
DEFAULT_HEADS: list[str] = []
SLIM_MASKS = [*SLIM, "MODEL.MASK_ON", "True", "MODEL.ROI_MASK_HEAD.CONV_DIM", "64"]
DEFAULT_MASKS = ["MODEL.MASK_ON", "True"]


def tune_glibc_malloc() -> bool:
    """Keep large freed blocks in the heap instead of unmapping them (glibc `mallopt`).

    CPU PyTorch frees and re-allocates the same >32 MB activation buffers every step; glibc
    serves those with mmap/munmap, so each step page-faults them in again. Returns False
    where glibc is not available.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "mallopt"):
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    return bool(
        libc.mallopt(m_mmap_threshold, 1 << 30)
        and libc.mallopt(m_trim_threshold, (1 << 31) - 1)
        and libc.mallopt(m_top_pad, 1 << 28)
    )


def make_batch(
    chips: int, size: int, gen: torch.Generator
) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """`chips` random (3, size, size) 0-255 images with 8 GT and 2 ignore boxes each; the
    targets also hold `masks` uint8 (8, size, size), an ellipse inscribed in each GT box
    (only models with MODEL.MASK_ON read them)."""
    images = [torch.rand(3, size, size, generator=gen) * 255 for _ in range(chips)]
    targets = []
    for _ in range(chips):
        xy = torch.rand(10, 2, generator=gen) * (size - 160)
        wh = 8 + torch.rand(10, 2, generator=gen) * 150
        boxes = torch.cat([xy, xy + wh], dim=1)
        yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
        centre, half = (boxes[:8, :2] + boxes[:8, 2:]) / 2, wh[:8] / 2
        dx = (xx[None] - centre[:, 0, None, None]) / half[:, 0, None, None]
        dy = (yy[None] - centre[:, 1, None, None]) / half[:, 1, None, None]
        masks = (dx * dx + dy * dy <= 1).to(torch.uint8)
        targets.append(
            {
                "boxes": boxes[:8],
                "labels": torch.randint(1, 4, (8,), generator=gen),
                "ignore_boxes": boxes[8:],
                "valid_range": torch.tensor([0.0, float("inf")]),
                "masks": masks,
            }
        )
    return images, targets


def time_step(opts: list[str], args: argparse.Namespace) -> tuple[float, float]:
    """Build the model with `opts`; return the median (wall, process CPU) seconds per training
    iteration. Medians because the first steps fault memory in and a shared machine stalls
    single steps; CPU seconds are less sensitive to other load than wall seconds."""
    cfg = add_sniper_config(get_cfg())
    cfg.merge_from_list(
        [
            "MODEL.BACKBONE.NAME",
            "mobilenet_v2_fpn",
            "MODEL.BACKBONE.NORM",
            args.norm,
            "MODEL.NUM_CLASSES",
            "3",
            *opts,
        ]
    )
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.SGD(params, lr=0.001, momentum=0.9, weight_decay=1e-4)
    images, targets = make_batch(args.chips, args.size, torch.Generator().manual_seed(0))
    wall, cpu = [], []
    for it in range(args.warmup + args.iters):
        start, start_cpu = time.perf_counter(), time.process_time()
        losses = model(images, targets)
        loss = sum(losses.values())
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        if it >= args.warmup:
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chips", type=int, default=4, help="chips per batch")
    parser.add_argument("--size", type=int, default=512, help="chip side (px)")
    parser.add_argument("--iters", type=int, default=7, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations first")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--norm", default="BN", help="MODEL.BACKBONE.NORM")
    parser.add_argument(
        "--tune-malloc",
        action="store_true",
        help="glibc mallopt: no mmap/trim for large blocks (see tune_glibc_malloc)",
    )
    parser.add_argument("--masks", action="store_true", help="also time the mask branch")
    args = parser.parse_args()
    tuned = tune_glibc_malloc() if args.tune_malloc else False
    torch.set_num_threads(args.threads)
    slim = time_step(SLIM, args)
    default = time_step(DEFAULT_HEADS, args)
    print(
        f"batch: {args.chips} chips of {args.size}x{args.size}, {args.threads} threads, "
        f"norm {args.norm}, mobilenet_v2_fpn, malloc tuned: {tuned}"
    )
    print(f"{'model':<16}{'wall s/iter':>12}{'CPU s/iter':>12}")
    print(f"{'slim heads':<16}{slim[0]:>12.3f}{slim[1]:>12.3f}")
    print(f"{'default heads':<16}{default[0]:>12.3f}{default[1]:>12.3f}")
    print(f"default / slim: {default[0] / slim[0]:.2f}x wall, {default[1] / slim[1]:.2f}x CPU")
    if args.masks:
        slim_m = time_step(SLIM_MASKS, args)
        default_m = time_step(DEFAULT_MASKS, args)
        print(f"{'slim + masks':<16}{slim_m[0]:>12.3f}{slim_m[1]:>12.3f}")
        print(f"{'default + masks':<16}{default_m[0]:>12.3f}{default_m[1]:>12.3f}")
        for name, box, mask in (("slim", slim, slim_m), ("default", default, default_m)):
            print(
                f"mask branch, {name}: {mask[0] / box[0]:.2f}x wall, {mask[1] / box[1]:.2f}x CPU "
                f"per step (+{mask[0] - box[0]:.3f} s)"
            )


if __name__ == "__main__":
    main()
