"""Switchable Normalization against a readable reference of the paper's equations, in train
and eval mode, batch sizes 1, 2 and 8, odd map sizes; moving and batch averages; BN
conversion; the NORM options wherever BN can be chosen."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from sniper.modeling.norms import (
    convert_norm,
    head_norm_layer,
    recompute_batch_average,
    to_frozen_bn,
)
from sniper.modeling.switchable_norm import SwitchNorm2d


def reference(x, weight, bias, mean_logits, var_logits, eps, batch_stats=None):
    """The paper's SN, written out statistic by statistic (float64, plain loops).

    batch_stats: ``(mean (C,), var (C,))`` for eval mode; None computes the batch's own
    statistics over N x H x W (training); an empty tuple means no BN branch.
    """
    x = x.double()
    n, c, h, w = x.shape
    m = h * w
    w_mean = [math.exp(v) for v in mean_logits.tolist()]
    w_var = [math.exp(v) for v in var_logits.tolist()]
    w_mean = [v / sum(w_mean) for v in w_mean]
    w_var = [v / sum(w_var) for v in w_var]
    out = torch.empty_like(x)
    for i in range(n):
        sample = x[i]
        mu_ln = sample.sum().item() / (c * m)
        var_ln = ((sample - mu_ln) ** 2).sum().item() / (c * m)
        for k in range(c):
            plane = sample[k]
            mu_in = plane.sum().item() / m
            var_in = ((plane - mu_in) ** 2).sum().item() / m
            mus, vars_ = [mu_in, mu_ln], [var_in, var_ln]
            if batch_stats is None:
                column = x[:, k]
                mu_bn = column.sum().item() / (n * m)
                mus.append(mu_bn)
                vars_.append(((column - mu_bn) ** 2).sum().item() / (n * m))
            elif batch_stats != ():
                mus.append(float(batch_stats[0][k]))
                vars_.append(float(batch_stats[1][k]))
            mu = sum(a * b for a, b in zip(w_mean, mus, strict=True))
            var = sum(a * b for a, b in zip(w_var, vars_, strict=True))
            out[i, k] = weight[k].item() * (plane - mu) / math.sqrt(var + eps) + bias[k].item()
    return out


def _random_sn(channels, using_bn=True, seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    sn = SwitchNorm2d(channels, using_bn=using_bn, **kw)
    with torch.no_grad():
        sn.weight.copy_(torch.rand(channels, generator=g) + 0.5)
        sn.bias.copy_(torch.randn(channels, generator=g))
        sn.mean_weight.copy_(torch.randn(sn.mean_weight.shape, generator=g))
        sn.var_weight.copy_(torch.randn(sn.var_weight.shape, generator=g))
        sn.running_mean.copy_(torch.randn(channels, generator=g))
        sn.running_var.copy_(torch.rand(channels, generator=g) + 0.1)
    return sn


@pytest.mark.parametrize("batch", [1, 2, 8])
@pytest.mark.parametrize("size", [(1, 1), (3, 5), (7, 2)])
@pytest.mark.parametrize("using_bn", [True, False])
def test_train_and_eval_equal_the_reference(batch, size, using_bn):
    torch.manual_seed(batch * 10 + size[0])
    x = torch.randn(batch, 5, *size) * 3 + 1
    sn = _random_sn(5, using_bn)
    args = (sn.weight, sn.bias, sn.mean_weight.detach(), sn.var_weight.detach(), sn.eps)
    sn.train()
    expected = reference(x, *args, batch_stats=None if using_bn else ())
    torch.testing.assert_close(sn(x).double(), expected, rtol=1e-5, atol=1e-5)
    sn.eval()
    stats = (sn.running_mean.clone(), sn.running_var.clone()) if using_bn else ()
    expected = reference(x, *args, batch_stats=stats)
    torch.testing.assert_close(sn(x).double(), expected, rtol=1e-5, atol=1e-5)


def test_importance_weights_start_equal_and_are_separate_softmaxes():
    sn = SwitchNorm2d(4)
    mean_w, var_w = sn.importance()
    torch.testing.assert_close(mean_w, torch.full((3,), 1 / 3))
    assert SwitchNorm2d(4, using_bn=False).importance()[0].shape == (2,)
    with torch.no_grad():
        sn.mean_weight.copy_(torch.tensor([0.0, 0.0, 100.0]))  # all BN for the mean
        sn.var_weight.copy_(torch.tensor([100.0, 0.0, 0.0]))  # all IN for the variance
    x = torch.randn(3, 4, 6, 5)
    sn.train()
    flat = x.transpose(0, 1).reshape(4, -1)
    mu_bn = flat.mean(1).reshape(1, 4, 1, 1)
    var_in = x.var(dim=(2, 3), unbiased=False, keepdim=True)
    torch.testing.assert_close(sn(x), (x - mu_bn) / torch.sqrt(var_in + sn.eps))


def test_moving_average_uses_the_paper_momentum_convention():
    sn = SwitchNorm2d(3, momentum=0.9)
    x = torch.randn(4, 3, 5, 5) + 2
    mean = x.mean(dim=(0, 2, 3))
    var = x.var(dim=(0, 2, 3), unbiased=False)
    sn.train()
    sn(x)
    torch.testing.assert_close(sn.running_mean, 0.1 * mean)
    torch.testing.assert_close(sn.running_var, 0.9 * 1.0 + 0.1 * var)
    frozen = SwitchNorm2d(3, moving_average=False)
    frozen.train()
    frozen(x)  # no moving average: the statistics wait for a batch average
    assert frozen.running_mean.eq(0).all() and frozen.running_var.eq(1).all()


def test_batch_average_is_the_average_over_the_batches():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), SwitchNorm2d(4, moving_average=False))
    batches = [torch.randn(2, 3, 9, 7) * (i + 1) for i in range(3)]
    with torch.no_grad():
        feats = [model[0](b) for b in batches]
    means = torch.stack([f.mean(dim=(0, 2, 3)) for f in feats])
    seconds = torch.stack([(f**2).mean(dim=(0, 2, 3)) for f in feats])
    model.eval()
    count = recompute_batch_average(model, batches, lambda m, b: m(b))
    assert count == 3 and not model.training
    torch.testing.assert_close(model[1].running_mean, means.mean(0))
    torch.testing.assert_close(model[1].running_var, seconds.mean(0) - means.mean(0) ** 2)
    with pytest.raises(ValueError, match="no batch"):
        recompute_batch_average(model, [], lambda m, b: m(b))
    with pytest.raises(ValueError, match="no SwitchNorm2d"):
        recompute_batch_average(nn.Conv2d(1, 1, 1), batches, lambda m, b: m(b))


def test_conversion_from_batch_norm_keeps_affine_and_statistics():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(6)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2)
    trunk = nn.Sequential(nn.Conv2d(3, 6, 1), bn, nn.Sequential(FrozenBatchNorm2d(6)))
    frozen = trunk[2][0]
    frozen.weight.fill_(3.0)
    frozen.running_var.fill_(4.0)
    sn_model = convert_norm(trunk, "SN")
    sn = sn_model[1]
    assert isinstance(sn, SwitchNorm2d) and sn.using_bn
    assert sn_model[2][0] is frozen  # a frozen layer stays frozen BN
    torch.testing.assert_close(sn.weight, bn.weight)
    torch.testing.assert_close(sn.bias, bn.bias)
    torch.testing.assert_close(sn.running_mean, bn.running_mean)
    torch.testing.assert_close(sn.running_var, bn.running_var)
    torch.testing.assert_close(sn.importance()[1], torch.full((3,), 1 / 3))
    # freezing a stage after the conversion gives back the BN it came from
    back = to_frozen_bn(nn.Sequential(sn))[0]
    assert isinstance(back, FrozenBatchNorm2d)
    x = torch.randn(2, 6, 4, 4)
    bn.eval()
    torch.testing.assert_close(back(x), bn(x))
    inln = convert_norm(nn.Sequential(nn.BatchNorm2d(2)), "SN_INLN")[0]
    assert isinstance(inln, SwitchNorm2d) and not inln.using_bn and inln.mean_weight.numel() == 2


def test_head_norms_and_bad_arguments():
    assert head_norm_layer("SN")(8).using_bn and not head_norm_layer("SN_INLN")(8).using_bn
    with pytest.raises(ValueError, match="SN_INLN"):
        head_norm_layer("IN")
    with pytest.raises(ValueError, match="momentum"):
        SwitchNorm2d(3, momentum=1.0)
    with pytest.raises(ValueError, match=r"expects \(N, 3, H, W\)"):
        SwitchNorm2d(3)(torch.zeros(1, 4, 2, 2))
    with pytest.raises(ValueError, match="no batch statistics"):
        SwitchNorm2d(3, using_bn=False).begin_batch_average()


def test_gradients_reach_the_importance_weights():
    sn = SwitchNorm2d(4)
    sn.train()
    (sn(torch.randn(2, 4, 3, 3)) * torch.randn(2, 4, 3, 3)).sum().backward()
    assert sn.mean_weight.grad.abs().sum() > 0 and sn.var_weight.grad.abs().sum() > 0


def test_one_sample_makes_the_batch_branch_the_instance_branch():
    """With N = 1 the batch statistics are the instance statistics: the IN and BN importance
    logits get the same gradient (bench_norms' SN runs at 1 chip keep them equal); with
    N = 2 they differ."""
    torch.manual_seed(0)
    for n, equal in ((1, True), (2, False)):
        sn = SwitchNorm2d(6)
        with torch.no_grad():
            sn.mean_weight.copy_(torch.tensor([0.3, -0.2, 0.5]))
            sn.var_weight.copy_(torch.tensor([-0.1, 0.4, 0.2]))
        x = torch.randn(n, 6, 5, 7) * 3 + 1
        (sn(x) * torch.randn(n, 6, 5, 7)).sum().backward()
        for w in (sn.mean_weight, sn.var_weight):
            g = w.grad
            # softmax couples the logits: equal branch statistics give dL/dz_k = p_k * c
            # with the same c for IN and BN, so the gradients divided by p are equal
            p = torch.softmax(w.detach(), 0)
            ratio_in, ratio_bn = g[0] / p[0], g[2] / p[2]
            assert torch.isclose(ratio_in, ratio_bn, rtol=1e-4, atol=1e-6) == equal, (n, g)


def test_a_backbone_with_sn_keeps_its_frozen_stem_and_runs():
    from sniper.modeling.backbone import BACKBONE_REGISTRY

    torch.manual_seed(0)
    build = BACKBONE_REGISTRY.get("mobilenet_v2_fpn")
    backbone = build("SN", 1, "", 16, 3, False, fpn_norm="SN_INLN")
    kinds = {type(m).__name__ for m in backbone.modules()}
    assert "BatchNorm2d" not in kinds and {"SwitchNorm2d", "FrozenBatchNorm2d"} <= kinds
    fpn_norms = [
        m for n, m in backbone.named_modules() if "fpn" in n and isinstance(m, SwitchNorm2d)
    ]
    assert fpn_norms and not any(m.using_bn for m in fpn_norms)
    backbone.train()
    feats = backbone(torch.randn(2, 3, 64, 96))
    assert all(torch.isfinite(f).all() for f in feats.values())


def test_importance_logits_have_their_own_decay_and_learning_rate():
    from sniper.engine.solver import make_sgd

    model = nn.Sequential(nn.Conv2d(3, 4, 1), SwitchNorm2d(4))
    opt = make_sgd(model, 0.1, 0.9, 1e-4, 0.0, importance_weight_decay=1e-3, importance_lr_factor=5)
    groups = [{id(p) for p in g["params"]} for g in opt.param_groups]
    conv, sn = model
    assert groups == [
        {id(conv.weight), id(conv.bias)},
        {id(sn.weight), id(sn.bias)},
        {id(sn.mean_weight), id(sn.var_weight)},
    ]
    assert [g["weight_decay"] for g in opt.param_groups] == [1e-4, 0.0, 1e-3]
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.1, pytest.approx(0.5)]


def test_config_accepts_sn_everywhere_and_checks_the_solver_options():
    from sniper.config import setup_cfg

    cfg = setup_cfg(
        "",
        [
            "MODEL.BACKBONE.NORM", "SN", "MODEL.FPN.NORM", "SN_INLN",
            "MODEL.ROI_BOX_HEAD.NORM", "SN", "SOLVER.SN_IMPORTANCE_LR_FACTOR", "10",
        ],
    )  # fmt: skip
    assert cfg.MODEL.BACKBONE.NORM == "SN" and cfg.SOLVER.SN_IMPORTANCE_LR_FACTOR == 10
    with pytest.raises(Exception, match="SN_IMPORTANCE_LR_FACTOR"):
        setup_cfg("", ["SOLVER.SN_IMPORTANCE_LR_FACTOR", "0"])
    with pytest.raises(Exception, match="MODEL.BACKBONE.NORM"):
        setup_cfg("", ["MODEL.BACKBONE.NORM", "IN"])
