"""Checkpoint files of a folder: resume order and fallback over unreadable files, the strict
fit on resume, stale temporaries, the previous-run refusal, weights that fit nothing, and
crafted pickles (never executed)."""

from __future__ import annotations

import logging
import os
import pickle

import pytest
import torch
from engine_fakes import TinyTrainer, make_cfg
from torch import nn

from sniper.engine.checkpoint import Checkpointer, CheckpointError, load_eval_weights
from sniper.engine.checkpoint_files import (
    check_previous_run,
    checkpoint_names,
    clean_stale_temporaries,
    resume_order,
)
from sniper.modeling.state_dict import load_model_state, read_checkpoint


def _model(seed: int, width: int = 4) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 3), nn.Linear(3, width))


def _sgd(model: nn.Module) -> torch.optim.SGD:
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3)).sum().backward()
    opt.step()  # momentum buffers now exist
    return opt


def _touch(folder, *names: str, data: bytes = b"x") -> None:
    for name in names:
        (folder / name).write_bytes(data)


def test_checkpoint_names_and_resume_order(tmp_path):
    _touch(tmp_path, "model_0000009.pth", "model_0000019.pth", "model_final.pth")
    _touch(tmp_path, "model_x.pth", "other.pth", "model_0000004.pth.bak", "log.txt")
    (tmp_path / "model_0000029.pth").mkdir()  # a folder is not a checkpoint
    assert checkpoint_names(str(tmp_path)) == [
        "model_final.pth",
        "model_0000019.pth",
        "model_0000009.pth",
    ]
    (tmp_path / "last_checkpoint").write_text("model_0000009.pth")
    assert resume_order(str(tmp_path)) == [
        str(tmp_path / n) for n in ("model_0000009.pth", "model_final.pth", "model_0000019.pth")
    ]
    (tmp_path / "last_checkpoint").write_text("model_0000099.pth\n")  # missing: still first
    assert resume_order(str(tmp_path))[0] == str(tmp_path / "model_0000099.pth")
    (tmp_path / "last_checkpoint").write_text("../elsewhere/model_final.pth")
    with pytest.raises(CheckpointError, match=r"not the name of a checkpoint file"):
        resume_order(str(tmp_path))
    assert checkpoint_names(str(tmp_path / "absent")) == []


@pytest.mark.parametrize(
    "corrupt",
    [
        b"",  # empty
        os.urandom(4096),  # random bytes
        "truncated",
    ],
    ids=["empty", "random", "truncated"],
)
def test_resume_skips_unreadable_newest(tmp_path, caplog, corrupt):
    model = _model(0)
    opt = _sgd(model)
    ckpt = Checkpointer(model, str(tmp_path), save_to_disk=True, optimizer=opt)
    ckpt.save("model_0000004", iteration=4)
    good = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model[0].weight.add_(1.0)
    final = ckpt.save("model_final", iteration=9)
    if corrupt == "truncated":
        corrupt = open(final, "rb").read()[:-100]
    open(final, "wb").write(corrupt)

    other = _model(1)
    ckpt2 = Checkpointer(other, str(tmp_path), optimizer=_sgd(other))
    with caplog.at_level(logging.WARNING, logger="sniper.engine.checkpoint"):
        extra = ckpt2.resume()
    assert extra == {"iteration": 4}
    assert ckpt2.loaded_path == str(tmp_path / "model_0000004.pth")
    assert all(torch.equal(other.state_dict()[k], v) for k, v in good.items())
    assert f"cannot resume from {final}: checkpoint {final!r} is not readable" in caplog.text


def test_resume_last_checkpoint_missing_falls_back(tmp_path, caplog):
    model = _model(0)
    Checkpointer(model, str(tmp_path), save_to_disk=True).save("model_0000002", iteration=2)
    (tmp_path / "last_checkpoint").write_text("model_0000005.pth")
    ckpt = Checkpointer(_model(1), str(tmp_path))
    assert ckpt.resume() == {"iteration": 2}
    assert "last_checkpoint names model_0000005.pth, which does not exist" in caplog.text


def test_resume_nothing_readable_is_one_error(tmp_path):
    _touch(tmp_path, "model_final.pth", data=b"")
    _touch(tmp_path, "model_0000003.pth", data=b"PK\x03\x04garbage")
    (tmp_path / "last_checkpoint").write_text("model_0000007.pth")
    with pytest.raises(CheckpointError) as info:
        Checkpointer(_model(0), str(tmp_path)).resume()
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"no readable checkpoint in {tmp_path} to resume from (")
    assert "last_checkpoint names model_0000007.pth, which does not exist" in msg
    assert f"{str(tmp_path / 'model_final.pth')!r} is not readable: EOFError" in msg
    assert f"{str(tmp_path / 'model_0000003.pth')!r} is not readable: RuntimeError" in msg


def test_resume_empty_folder_is_none_and_loads_weights(tmp_path):
    src = _model(0)
    torch.save(src.state_dict(), tmp_path / "w.pth")
    dst = _model(1)
    ckpt = Checkpointer(dst, str(tmp_path / "run"))
    assert ckpt.resume() is None
    assert ckpt.resume_or_load(str(tmp_path / "w.pth"), resume=True) == {}
    assert torch.equal(dst[1].weight, src[1].weight)


def test_resume_refuses_other_shapes_before_loading(tmp_path):
    model = _model(0, width=4)
    Checkpointer(model, str(tmp_path), save_to_disk=True, optimizer=_sgd(model)).save(
        "model_final", iteration=3
    )
    wider = _model(1, width=6)
    ckpt = Checkpointer(wider, str(tmp_path), optimizer=_sgd(wider))
    before = {k: v.clone() for k, v in wider.state_dict().items()}
    with pytest.raises(CheckpointError) as info:
        ckpt.resume()
    msg = str(info.value)
    assert msg.startswith(f"checkpoint {tmp_path / 'model_final.pth'} does not fit this model")
    assert "1.bias has shape (4,), model (6,); 1.weight has shape (4, 3), model (6, 3)" in msg
    assert "optimizer: momentum_buffer of parameter 2 has shape (4, 3)" in msg
    assert f"MODEL.WEIGHTS {tmp_path / 'model_final.pth'}" in msg
    assert all(torch.equal(wider.state_dict()[k], v) for k, v in before.items())


def test_resume_refuses_other_parameter_groups(tmp_path):
    model = _model(0)
    opt = _sgd(model)
    Checkpointer(model, str(tmp_path), save_to_disk=True, optimizer=opt).save("model_final")
    same = _model(1)
    groups = [{"params": same[0].parameters()}, {"params": same[1].parameters()}]
    split = torch.optim.SGD(groups, lr=0.1, momentum=0.9)
    with pytest.raises(CheckpointError, match=r"optimizer: parameter groups of \[4\] "):
        Checkpointer(same, str(tmp_path), optimizer=split).resume()
    # Model only (--eval-only --resume): the optimizer state is not checked.
    assert load_eval_weights(same, str(tmp_path), "", resume=True) == str(
        tmp_path / "model_final.pth"
    )


def test_clean_stale_temporaries_only_ours(tmp_path):
    ours = [".model_0000004.pth.abc123.tmp", ".model_final.pth.x_y.tmp", ".last_checkpoint.q.tmp"]
    theirs = [".other.pth.a.tmp", "model_final.pth", ".model_final.pth", "a.tmp", ".model_x.tmp"]
    _touch(tmp_path, *ours, *theirs)
    assert clean_stale_temporaries(str(tmp_path)) == sorted(ours)
    assert sorted(os.listdir(tmp_path)) == sorted(theirs)
    assert clean_stale_temporaries(str(tmp_path / "absent")) == []


def test_trainer_start_cleans_temporaries(tmp_path):
    cfg = make_cfg(tmp_path)
    os.makedirs(tmp_path, exist_ok=True)
    _touch(tmp_path, ".model_0000002.pth.k3j.tmp", "log.txt")
    TinyTrainer(cfg).resume_or_load(resume=False)
    assert os.listdir(tmp_path) == ["log.txt"]


def test_previous_run_refused_then_overwritten(tmp_path):
    _touch(tmp_path, "model_0000002.pth", "model_final.pth", "metrics.json", "log.txt")
    (tmp_path / "last_checkpoint").write_text("model_final.pth")
    with pytest.raises(CheckpointError) as info:
        check_previous_run(str(tmp_path), overwrite=False)
    assert str(info.value) == (
        f"output folder {tmp_path} holds a finished run (last_checkpoint, "
        "model_0000002.pth, model_final.pth): add --resume to continue it, --overwrite to "
        "delete its checkpoints and train again, or set OUTPUT_DIR to a new folder"
    )
    check_previous_run(str(tmp_path), overwrite=True, delete=False)  # other ranks
    assert len(os.listdir(tmp_path)) == 5
    check_previous_run(str(tmp_path), overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["log.txt", "metrics.json"]
    check_previous_run(str(tmp_path), overwrite=False)  # nothing left in the way
    check_previous_run("", overwrite=False)


def test_unfinished_run_refused_by_trainer(tmp_path):
    cfg = make_cfg(tmp_path)
    _touch(tmp_path, "model_0000002.pth")
    with pytest.raises(CheckpointError, match=r"holds an unfinished run \(model_0000002.pth\)"):
        TinyTrainer(cfg).resume_or_load(resume=False)
    trainer = TinyTrainer(cfg)
    trainer.resume_or_load(resume=False, overwrite=True)
    assert trainer.start_iter == 0 and os.listdir(tmp_path) == []


def test_weights_that_fit_nothing_are_errors(tmp_path):
    classifier = nn.ModuleDict({"features": nn.Conv2d(3, 8, 3), "fc": nn.Linear(8, 10)})
    torch.save(classifier.state_dict(), tmp_path / "classifier.pth")
    model = _model(0)
    with pytest.raises(ValueError) as info:
        Checkpointer(model).load(str(tmp_path / "classifier.pth"))
    assert str(info.value) == (
        f"checkpoint {str(tmp_path / 'classifier.pth')!r} has no tensor that fits this model "
        "(it has 4 keys (e.g. fc.bias, fc.weight, features.bias), the model 4 (e.g. 0.bias, "
        "0.weight, 1.bias)): it is not a weights file of this detector (a classifier, "
        "another backbone?)"
    )
    with pytest.raises(ValueError, match=r"the 4 keys of the same name all differ in shape"):
        load_model_state(_model(0, width=2), {k: v[:1] for k, v in model.state_dict().items()})
    with pytest.raises(ValueError, match=r"entry 'n' \(int\) is not a tensor"):
        load_model_state(model, {"0.weight": torch.zeros(3, 3), "n": 3})
    cfg = make_cfg(tmp_path / "run", "MODEL.WEIGHTS", str(tmp_path / "classifier.pth"))
    with pytest.raises(CheckpointError, match=r"^MODEL.WEIGHTS file .* has no tensor that fits"):
        TinyTrainer(cfg).resume_or_load(resume=False)


def test_eval_weights_needs_something_to_load(tmp_path):
    with pytest.raises(CheckpointError) as info:
        load_eval_weights(_model(0), str(tmp_path), "", resume=True)
    assert str(info.value) == (
        f"--eval-only: no checkpoint in {tmp_path} and MODEL.WEIGHTS is empty: nothing to "
        "evaluate but a random model; give MODEL.WEIGHTS <file> (or --resume with the "
        "OUTPUT_DIR of a run)"
    )
    with pytest.raises(CheckpointError, match=r"^--eval-only: MODEL.WEIGHTS is empty"):
        load_eval_weights(_model(0), str(tmp_path), "", resume=False)
    with pytest.raises(CheckpointError, match=r"MODEL.WEIGHTS file '.*nope.pth' not found"):
        load_eval_weights(_model(0), str(tmp_path), str(tmp_path / "nope.pth"), resume=False)


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_crafted_pickle_is_refused_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        torch.save({"model": _Exploit(str(marker))}, f, pickle_module=pickle)
    with pytest.raises(ValueError, match=r"is not readable: UnpicklingError"):
        read_checkpoint(str(path))
    assert not marker.exists()
