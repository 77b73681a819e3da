"""Checkpointer: atomic saves, last_checkpoint, round trips, RNG states, bare state dicts."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch
from torch import nn

from sniper.engine.checkpoint import Checkpointer, get_rng_state, set_rng_state


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def _equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_save_load_round_trip(tmp_path):
    model = _model(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    ckpt = Checkpointer(model, str(tmp_path), save_to_disk=True, optimizer=opt)
    path = ckpt.save("model_0000009", iteration=9, data_loader={"epoch": 1})
    assert path == os.path.join(str(tmp_path), "model_0000009.pth")
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009.pth"
    assert ckpt.get_checkpoint_file() == path

    other = _model(1)
    opt2 = torch.optim.SGD(other.parameters(), lr=0.5, momentum=0.9)
    ckpt2 = Checkpointer(other, str(tmp_path), save_to_disk=True, optimizer=opt2)
    extra = ckpt2.resume_or_load("", resume=True)
    assert extra == {"iteration": 9, "data_loader": {"epoch": 1}}
    assert _equal(model, other)
    assert opt2.param_groups[0]["lr"] == 0.1
    assert opt2.state_dict()["state"].keys() == opt.state_dict()["state"].keys()


def test_interrupted_save_leaves_previous_checkpoint(tmp_path, monkeypatch):
    model = _model(0)
    ckpt = Checkpointer(model, str(tmp_path), save_to_disk=True)
    first = ckpt.save("model_0000004", iteration=4)
    before = open(first, "rb").read()
    saved_weight = model[0].weight.detach().clone()

    real_save = torch.save

    def broken_save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)  # write a full payload, then "crash" mid-way
        f.write(b"partial")
        raise KeyboardInterrupt("killed during save")

    monkeypatch.setattr(torch, "save", broken_save)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save("model_0000009", iteration=9)
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000004.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000004.pth"
    assert open(first, "rb").read() == before
    monkeypatch.setattr(torch, "save", real_save)
    restored = _model(2)
    extra = Checkpointer(restored, str(tmp_path)).resume_or_load("", resume=True)
    assert extra["iteration"] == 4
    assert torch.equal(restored[0].weight, saved_weight)


def test_load_weights_only_and_bare_state_dict(tmp_path):
    model = _model(0)
    wrapped = {"module." + k: v for k, v in model.state_dict().items()}
    torch.save(wrapped, tmp_path / "bare.pth")
    target = _model(1)
    opt = torch.optim.SGD(target.parameters(), lr=0.3)
    ckpt = Checkpointer(target, str(tmp_path / "out"), optimizer=opt)
    assert not ckpt.has_checkpoint()
    assert ckpt.resume_or_load(str(tmp_path / "bare.pth"), resume=True) == {}
    assert _equal(model, target)
    assert opt.param_groups[0]["lr"] == 0.3
    assert ckpt.resume_or_load("", resume=False) == {}
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        ckpt.load(str(tmp_path / "missing.pth"))


def test_shape_mismatch_is_skipped(tmp_path, caplog):
    src = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 4))
    torch.save({"model": src.state_dict()}, tmp_path / "w.pth")
    dst = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 5))
    bias = dst[1].bias.detach().clone()
    Checkpointer(dst).load(str(tmp_path / "w.pth"))
    assert torch.equal(dst[1].bias, bias)
    assert torch.equal(dst[0].weight, src[0].weight)
    assert "skip 1.bias" in caplog.text


def test_rng_state_round_trip(tmp_path):
    state = get_rng_state()
    torch.save(state, tmp_path / "rng.pth")
    a = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    set_rng_state(torch.load(tmp_path / "rng.pth", weights_only=True))
    b = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_non_main_process_does_not_write(tmp_path):
    ckpt = Checkpointer(_model(0), str(tmp_path), save_to_disk=False)
    assert ckpt.save("model_final", iteration=1) is None
    assert os.listdir(tmp_path) == []
