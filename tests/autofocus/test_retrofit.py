"""AUTOFOCUS.FREEZE_DETECTOR: the builder's RetrofitAutoFocusRCNN trains only the FocusPixel
head on a frozen detector (no RPN / RoI heads in a step, BN statistics fixed), and a SNIPER
state dict loads into it with only the head's keys missing."""

from __future__ import annotations

import pytest
import torch
from retrofit_fakes import TINY_MODEL, training_batch

from autofocus.config import add_autofocus_config, setup_cfg
from autofocus.modeling import (
    AutoFocusRCNN,
    RetrofitAutoFocusRCNN,
    build_autofocus_model,
    check_detector_loaded,
)
from sniper.config import add_sniper_config, get_cfg
from sniper.engine.solver import build_optimizer, make_sgd
from sniper.modeling import SniperRCNN, build_model
from sniper.modeling.state_dict import load_model_state


def _cfg(*opts: str):
    cfg = add_autofocus_config(add_sniper_config(get_cfg()))
    cfg.merge_from_list([*TINY_MODEL, *opts])
    return cfg


def _retrofit(seed: int = 0) -> RetrofitAutoFocusRCNN:
    torch.manual_seed(seed)
    model = build_autofocus_model(_cfg("AUTOFOCUS.FREEZE_DETECTOR", "True"))
    assert type(model) is RetrofitAutoFocusRCNN
    return model


def _sniper_state(seed: int = 5, *opts: str) -> dict[str, torch.Tensor]:
    """State dict of a random SniperRCNN of the same MODEL.* settings (no focus head)."""
    torch.manual_seed(seed)
    model = build_model(_cfg("MODEL.META_ARCHITECTURE", "SniperRCNN", *opts))
    assert type(model) is SniperRCNN
    return model.state_dict()


def _head_names(model: AutoFocusRCNN) -> set[str]:
    return {f"focus_head.{n}" for n, _ in model.focus_head.named_parameters()}


def test_without_weights_or_on_another_architecture_is_a_config_error() -> None:
    with pytest.raises(ValueError, match=r"AUTOFOCUS.FREEZE_DETECTOR = True: needs MODEL.WEIGHTS"):
        setup_cfg("", [*TINY_MODEL, "AUTOFOCUS.FREEZE_DETECTOR", "True"])
    opts = [*TINY_MODEL, "AUTOFOCUS.FREEZE_DETECTOR", "True", "MODEL.WEIGHTS", "sniper.pth"]
    assert setup_cfg("", opts).AUTOFOCUS.FREEZE_DETECTOR is True
    with pytest.raises(ValueError, match="not MODEL.META_ARCHITECTURE = 'SniperRCNN'"):
        setup_cfg("", [*opts, "MODEL.META_ARCHITECTURE", "SniperRCNN"])


def test_only_the_head_requires_grad_and_reaches_the_optimizer() -> None:
    model = _retrofit()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == _head_names(model) and len(trainable) == 6
    optimizer = build_optimizer(_cfg(), model)
    given = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert given == {id(p) for p in model.focus_head.parameters()}
    # the joint model trains everything (the flag, not the config, makes the difference)
    torch.manual_seed(0)
    joint = build_autofocus_model(_cfg())
    assert type(joint) is AutoFocusRCNN
    assert any(p.requires_grad for n, p in joint.named_parameters() if "focus_head" not in n)


def test_train_mode_keeps_the_detector_in_eval_mode() -> None:
    model = _retrofit().train()
    assert model.training and model.focus_head.training
    others = [m for n, m in model.named_modules() if n and not n.startswith("focus_head")]
    assert others and not any(m.training for m in others)
    model.eval()
    assert not model.training and not model.focus_head.training
    model.train()
    assert model.focus_head.training and not model.backbone.training


def test_steps_move_the_head_and_nothing_else() -> None:
    """Three SGD steps: every detector tensor (parameters and BN running statistics) stays
    bit-identical; every head parameter moves."""
    model = _retrofit().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert any(
        "running_mean" in k for k in before
    )  # MODEL.BACKBONE.NORM "BN": buffers move in train
    optimizer = make_sgd(model, 0.1, 0.9, 1e-4)
    images, targets = training_batch()
    for _ in range(3):
        losses = model(images, targets)
        assert set(losses) == {"loss_focus"}
        optimizer.zero_grad()
        losses["loss_focus"].backward()
        optimizer.step()
    after = model.state_dict()
    heads = {k for k in after if k.startswith("focus_head.")}
    assert heads == _head_names(model)
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed == heads


def test_a_step_runs_neither_the_rpn_nor_the_roi_heads() -> None:
    model = _retrofit()
    calls = {"rpn": 0, "roi_heads": 0, "backbone": 0, "focus_head": 0}
    for name in calls:

        def spy(module, args, name=name):
            calls[name] += 1

        getattr(model, name).register_forward_pre_hook(spy)
    images, targets = training_batch()
    model.train()(images, targets)["loss_focus"].backward()
    assert calls == {"rpn": 0, "roi_heads": 0, "backbone": 1, "focus_head": 1}
    model.eval()
    with torch.no_grad():
        outputs = model(images)
    assert calls == {"rpn": 1, "roi_heads": 1, "backbone": 2, "focus_head": 2}
    assert {"boxes", "scores", "labels", "focus_prob"} <= set(outputs[0])


def test_the_loss_is_the_joint_models_focus_loss_on_the_same_weights() -> None:
    """Same weights, same batch: the retrofit's loss_focus equals the joint model's."""
    retrofit, joint = _retrofit(), build_autofocus_model(_cfg())
    joint.load_state_dict(retrofit.state_dict())
    images, targets = training_batch()
    mine = retrofit.train()(images, targets)["loss_focus"]
    # the same features need the same BN mode: the joint model's detector in eval mode
    joint.train()
    for child in joint.children():
        if child is not joint.focus_head:
            child.eval()
    theirs = joint(images, targets)["loss_focus"]
    assert torch.allclose(mine, theirs)


def test_a_sniper_state_dict_loads_with_only_the_head_missing() -> None:
    model, state = _retrofit(), _sniper_state()
    head_init = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("focus_head")}
    report = load_model_state(model, state)
    assert set(report.missing) == set(head_init) and not report.mismatched
    check_detector_loaded(report, "MODEL.WEIGHTS file 'sniper.pth'")
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in state.items())
    assert all(torch.equal(own[k], v) for k, v in head_init.items())


def test_a_state_dict_missing_detector_keys_is_refused() -> None:
    state = _sniper_state()
    del state["roi_heads.box_predictor.cls_score.weight"]
    report = load_model_state(_retrofit(), state)
    with pytest.raises(ValueError, match=r"'s.pth' does not hold .*\(1 detector keys .*cls_score"):
        check_detector_loaded(report, "'s.pth'")
    # another NUM_CLASSES: the predictor's shapes differ (skipped by the lenient loader)
    other = load_model_state(_retrofit(), _sniper_state(5, "MODEL.NUM_CLASSES", "4"))
    with pytest.raises(
        ValueError, match=r"\(4 detector keys .*bbox_pred.bias \(file \(20,\), model \(16,\)\)"
    ):
        check_detector_loaded(other, "'s.pth'")
    with pytest.raises(ValueError, match="nothing was loaded from 'x'"):
        check_detector_loaded(None, "'x'")


def test_a_head_of_another_width_in_the_file_is_not_an_error() -> None:
    """An AutoFocus checkpoint with a wider head: the head keeps its initialization."""
    torch.manual_seed(1)
    wide = build_autofocus_model(_cfg("AUTOFOCUS.HEAD_CHANNELS", "12")).state_dict()
    report = load_model_state(_retrofit(), wide)
    assert report.mismatched and all(k.startswith("focus_head.") for k, _, _ in report.mismatched)
    check_detector_loaded(report, "'af.pth'")
