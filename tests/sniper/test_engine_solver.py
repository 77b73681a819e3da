"""LR schedule (warm-up then steps), optimizer parameter groups and gradient clipping."""

from __future__ import annotations

import math

import pytest
import torch
from engine_fakes import make_cfg
from torch import nn

from sniper.engine.solver import (
    build_lr_scheduler,
    build_optimizer,
    clip_gradients,
    make_sgd,
    warmup_multistep_schedule,
)


def _lrs(cfg, iters: int) -> list[float]:
    model = nn.Linear(2, 2)
    opt = build_optimizer(cfg, model)
    sched = build_lr_scheduler(cfg, opt)
    lrs = []
    for _ in range(iters):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_warmup_then_steps(tmp_path):
    cfg = make_cfg(
        tmp_path,
        "SOLVER.MAX_ITER",
        100,
        "SOLVER.STEPS",
        "(60, 80)",
        "SOLVER.WARMUP_ITERS",
        10,
        "SOLVER.WARMUP_FACTOR",
        0.001,
        "SOLVER.BASE_LR",
        0.1,
        "SOLVER.GAMMA",
        0.1,
    )
    lrs = _lrs(cfg, 100)
    expected = {
        0: 0.1 * 0.001,
        5: 0.1 * (0.001 + 0.999 * 0.5),
        9: 0.1 * (0.001 + 0.999 * 0.9),
        10: 0.1,
        30: 0.1,
        59: 0.1,
        60: 0.01,
        79: 0.01,
        80: 0.001,
        99: 0.001,
    }
    for it, lr in expected.items():
        assert lrs[it] == pytest.approx(lr, rel=1e-9), it
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:11], strict=True))  # warm-up rises


def test_resumed_scheduler_continues(tmp_path):
    cfg = make_cfg(
        tmp_path, "SOLVER.MAX_ITER", 20, "SOLVER.STEPS", "(12,)", "SOLVER.WARMUP_ITERS", 4
    )
    full = _lrs(cfg, 20)
    model = nn.Linear(2, 2)
    opt = build_optimizer(cfg, model)
    sched = build_lr_scheduler(cfg, opt)
    for _ in range(7):
        opt.step()
        sched.step()
    opt2 = build_optimizer(cfg, model)
    opt2.load_state_dict(opt.state_dict())
    sched2 = build_lr_scheduler(cfg, opt2)
    sched2.load_state_dict(sched.state_dict())
    rest = []
    for _ in range(13):
        rest.append(opt2.param_groups[0]["lr"])
        opt2.step()
        sched2.step()
    assert rest == pytest.approx(full[7:], rel=1e-12)


def test_schedule_edge_cases():
    # no warm-up, no steps: constant
    assert warmup_multistep_schedule(10, [], 0.1, 0, 0.001)(0.5) == 1.0
    # steps outside (0, max_iter) are dropped; warm-up is clamped to max_iter - 1 iterations
    sched = warmup_multistep_schedule(10, [0, 10, 15], 0.1, 50, 0.5)
    assert sched(0.0) == pytest.approx(0.5)
    assert sched(0.9) == pytest.approx(1.0)


def test_no_weight_decay_on_norm():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.GroupNorm(2, 4))
    model[0].weight.requires_grad_(False)
    opt = make_sgd(model, 0.1, 0.9, 1e-4)
    decays = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert decays[id(model[0].bias)] == 1e-4
    assert id(model[0].weight) not in decays  # frozen
    for norm in (model[1], model[2]):
        assert decays[id(norm.weight)] == 0.0 and decays[id(norm.bias)] == 0.0
    assert all(g["momentum"] == 0.9 for g in opt.param_groups)


def test_clip_gradients():
    p = nn.Parameter(torch.zeros(4))
    p.grad = torch.tensor([3.0, 4.0, 0.0, 0.0])
    norm = clip_gradients([p], "norm", 1.0)
    assert norm == pytest.approx(5.0)
    assert math.isclose(float(p.grad.norm()), 1.0, rel_tol=1e-5)
    p.grad = torch.tensor([3.0, -4.0, 0.5, 0.0])
    assert clip_gradients([p], "value", 1.0) is None
    assert p.grad.tolist() == [1.0, -1.0, 0.5, 0.0]
    with pytest.raises(ValueError, match="clip_type"):
        clip_gradients([p], "bogus", 1.0)
