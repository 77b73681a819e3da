"""Negative chip mining: the RPN schedule (`sniper.engine.negative_mining`) and the whole
pipeline (`projects/sniper/mine_negatives.py`) on `synthetic_digits_mini`; proposal
extraction and the proposals file are in test_proposal_extraction.py.

The slow test runs the command line with `--num-gpus 2` (two gloo processes) and checks that
the sharded extraction writes the same file as one process.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from engine_fakes import restore_loggers

from sniper.config import setup_cfg
from sniper.data.build import build_chip_sampler, get_records
from sniper.data.proposals import load_proposals
from sniper.engine import negative_mining as nm
from sniper.modeling import SniperRCNN, SniperRPN, build_model

PROJECT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "projects", "sniper"
)
SCRIPT = os.path.join(PROJECT, "mine_negatives.py")
TRAIN_NET = os.path.join(PROJECT, "train_net.py")
MINI_NAME = "synthetic_digits_mini"
MINI = f"('{MINI_NAME}',)"
TINY = [
    "MODEL.BACKBONE.NAME",
    "mobilenet_v2_fpn",
    "MODEL.BACKBONE.WEIGHTS",
    "",
    "MODEL.FPN.OUT_CHANNELS",
    "16",
    "MODEL.ROI_BOX_HEAD.FC_DIM",
    "32",
    "MODEL.NUM_CLASSES",
    "10",
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN",
    "200",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN",
    "100",
    "MODEL.RPN.PRE_NMS_TOPK_TEST",
    "200",
    "MODEL.RPN.POST_NMS_TOPK_TEST",
    "100",
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE",
    "64",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
    "32",
    # Chips of 128 px at 0.25x; only digits of >= 100 image px are positives, so the RPN's
    # proposals elsewhere make negative chips; proposals at 0.25x and 0.125x.
    "SNIPER.TRAIN_SCALES",
    "[0.25]",
    "SNIPER.VALID_RANGES",
    "[[100, -1]]",
    "SNIPER.NEG_MIN_PROPOSALS",
    "[0]",
    "SNIPER.CHIP_SIZE",
    "128",
    "SNIPER.NEG_RPN_EPOCHS",
    "1",
    "SNIPER.TEST_SCALES",
    "[0.25, 0.125]",
    "SNIPER.TEST_VALID_RANGES",
    "[[-1, -1], [-1, -1]]",
    "SOLVER.IMS_PER_BATCH",
    "4",
    "SOLVER.MAX_ITER",
    "3",
    "SOLVER.STEPS",
    "(2,)",
    "SOLVER.WARMUP_ITERS",
    "1",
    "SOLVER.CHECKPOINT_PERIOD",
    "100",
    "DATALOADER.NUM_WORKERS",
    "0",
    "DATASETS.TRAIN",
    MINI,
]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def keep_loggers():
    """`default_setup` (in `main`) stops the package loggers' propagation; undo it."""
    with restore_loggers():
        yield


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """`synthetic_digits_mini` cached in a temporary folder, registered only meanwhile."""
    from sniper.data.catalog import DatasetCatalog, MetadataCatalog
    from sniper.data.synthetic import SYNTHETIC_SPLITS

    def clear() -> None:
        for name in SYNTHETIC_SPLITS:
            if name in DatasetCatalog.list():
                DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)

    root = str(tmp_path_factory.mktemp("datasets"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SNIPER_DATASETS", root)
        clear()
        yield root
        clear()


def _script():
    spec = importlib.util.spec_from_file_location("sniper_mine_negatives", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.usefixtures("mini")
def test_rpn_schedule(tmp_path):
    assert nm.rpn_iterations(2, 14, 4) == 7 and nm.rpn_iterations(1, 16, 4) == 4
    assert nm.rpn_iterations(1, 1, 16) == 1
    with pytest.raises(ValueError):
        nm.rpn_iterations(0, 10, 4)
    cfg = setup_cfg(
        "",
        [
            *TINY,
            "OUTPUT_DIR",
            str(tmp_path),
            "DATASETS.TEST",
            MINI,
            "SNIPER.NEG_RPN_EPOCHS",
            "2",
            "SOLVER.MAX_ITER",
            "40000",
            "SOLVER.STEPS",
            "(30000,)",
            "SOLVER.WARMUP_ITERS",
            "1000",
        ],
    )
    records = get_records(cfg.DATASETS.TRAIN)
    chips = nm.epoch_chip_count(cfg, records)
    assert chips == len(build_chip_sampler(cfg, records).epoch_chips(0)) > 0
    rpn = nm.rpn_stage_config(cfg, 100)  # 2 epochs x 100 chips / 4 = 50 iterations
    assert rpn.MODEL.META_ARCHITECTURE == "SniperRPN"
    assert rpn.OUTPUT_DIR == os.path.join(str(tmp_path), "rpn")
    assert (rpn.SOLVER.MAX_ITER, tuple(rpn.SOLVER.STEPS), rpn.SOLVER.WARMUP_ITERS) == (50, (38,), 1)
    assert rpn.DATASETS.TEST == () and rpn.SNIPER.PROPOSALS_FILE == ""
    det = nm.detector_stage_config(cfg, "p.npz")
    assert det.MODEL.META_ARCHITECTURE == "SniperRCNN" and det.SNIPER.PROPOSALS_FILE == "p.npz"
    assert isinstance(build_model(rpn), SniperRPN) and isinstance(build_model(det), SniperRCNN)
    # a mask detector mines with a plain RPN (no mask branch) and keeps its masks after
    masked = cfg.clone()
    masked.defrost()
    masked.MODEL.MASK_ON = True
    rpn = nm.rpn_stage_config(masked, 100)
    assert not rpn.MODEL.MASK_ON and isinstance(build_model(rpn), SniperRPN)
    assert nm.detector_stage_config(masked, "p.npz").MODEL.MASK_ON


def _main(mn, *flags_and_opts: str):
    return mn.main(nm.argument_parser().parse_args(list(flags_and_opts)))


@pytest.mark.usefixtures("mini")
def test_pipeline_end_to_end_resume_and_reuse(tmp_path):
    mn = _script()
    out = tmp_path / "run"
    opts = [*TINY, "DATASETS.TEST", MINI, "OUTPUT_DIR", str(out)]
    results = _main(mn, *opts)
    assert "AP" in results["synthetic_digits_mini"]["bbox"]
    rpn_cfg = setup_cfg(str(out / "rpn" / "config.yaml"), [])
    assert rpn_cfg.MODEL.META_ARCHITECTURE == "SniperRPN" and rpn_cfg.DATASETS.TEST == ()
    records = get_records([MINI_NAME])
    chips = nm.epoch_chip_count(rpn_cfg, records)
    assert rpn_cfg.SOLVER.MAX_ITER == nm.rpn_iterations(1, chips, 4)
    for name in (
        "rpn/model_final.pth",
        "rpn/metrics.json",
        "proposals.npz",
        "model_final.pth",
        "metrics.json",
        "inference/synthetic_digits_mini/coco_instances_results.json",
    ):
        assert (out / name).is_file(), name
    det_cfg = setup_cfg(str(out / "config.yaml"), [])
    assert det_cfg.SNIPER.PROPOSALS_FILE == str(out / "proposals.npz")
    assert det_cfg.MODEL.META_ARCHITECTURE == "SniperRCNN" and det_cfg.SOLVER.MAX_ITER == 3
    proposals = load_proposals(str(out / "proposals.npz"), records)
    assert all(0 < len(p) <= 100 for p in proposals)
    sampler = build_chip_sampler(det_cfg, records)
    negative = [c for c in sampler.epoch_chips(0) if c.negative]
    assert 0 < len(negative) <= 2 * len(records)

    # Stage 3 is train_net.py with SNIPER.PROPOSALS_FILE: the same weights.
    spec = importlib.util.spec_from_file_location("sniper_train_net", TRAIN_NET)
    train_net = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_net)
    alone = tmp_path / "train_net"
    train_net.main(
        nm.argument_parser().parse_args(
            [*TINY, "SNIPER.PROPOSALS_FILE", str(out / "proposals.npz"), "OUTPUT_DIR", str(alone)]
        )
    )
    a = torch.load(out / "model_final.pth", weights_only=True)["model"]
    b = torch.load(alone / "model_final.pth", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # Rerun with --resume: stages 1-2 are skipped, stage 3 is already at its end.
    stamps = [os.path.getmtime(out / n) for n in ("rpn/model_final.pth", "proposals.npz")]
    _main(mn, "--resume", *opts)
    log = (out / "log.txt").read_text()
    assert "stage 1-2 skipped" in log and "resuming at iteration 3" in log
    assert stamps == [os.path.getmtime(out / n) for n in ("rpn/model_final.pth", "proposals.npz")]

    # Reuse the RPN: --skip-rpn WEIGHTS --proposals-only gives the same proposals.
    again = tmp_path / "again"
    res = _main(
        mn,
        "--skip-rpn",
        str(out / "rpn" / "model_final.pth"),
        "--proposals-only",
        *TINY,
        "OUTPUT_DIR",
        str(again),
    )
    assert res == {"proposals_file": str(again / "proposals.npz")}
    assert not (again / "rpn").exists() and not (again / "model_final.pth").exists()
    for a, b in zip(proposals, load_proposals(res["proposals_file"], records), strict=True):
        np.testing.assert_array_equal(a, b)


def test_bad_arguments_exit_2(tmp_path, capsys):
    mn = _script()
    opts = [*TINY, "OUTPUT_DIR", str(tmp_path)]
    for flags, extra in (
        (["--skip-rpn", str(tmp_path / "nope.pth")], []),
        ([], ["SNIPER.PROPOSALS_FILE", "x.npz"]),
        ([], ["MODEL.META_ARCHITECTURE", "SniperRPN"]),
        ([], ["SNIPER.NEG_RPN_EPOCHS", "0"]),
        (["--eval-only"], []),
    ):
        with pytest.raises(SystemExit) as err:
            _main(mn, *flags, *opts, *extra)
        assert err.value.code == 2, (flags, extra)
        assert "error:" in capsys.readouterr().err
    assert not os.listdir(tmp_path)


@pytest.mark.slow
def test_command_line_two_processes_same_proposals(mini, tmp_path):
    mn = _script()
    weights = tmp_path / "rpn.pth"
    cfg = setup_cfg("", [*TINY, "MODEL.META_ARCHITECTURE", "SniperRPN"])
    torch.manual_seed(0)
    torch.save({"model": build_model(cfg).state_dict()}, weights)
    one = _main(
        mn,
        "--skip-rpn",
        str(weights),
        "--proposals-only",
        *TINY,
        "OUTPUT_DIR",
        str(tmp_path / "one"),
    )["proposals_file"]
    env = dict(os.environ, SNIPER_DATASETS=mini, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        SCRIPT,
        "--num-gpus",
        "2",
        "--skip-rpn",
        str(weights),
        "--proposals-only",
        *TINY,
        "OUTPUT_DIR",
        str(tmp_path / "two"),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    with np.load(one) as a, np.load(tmp_path / "two" / "proposals.npz") as b:
        for key in ("image_ids", "splits", "boxes", "scores"):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
