"""SN in the trainer: a short run of the real model with NORM SN trains the importance
weights, and TEST.SN_BATCH_AVERAGE_ITERS replaces the moving averages in model_final by the
batch average over the next training batches."""

from __future__ import annotations

import os

import torch
from engine_fakes import SLIM_MODEL_OPTS, FakeChipLoader, SlimTrainer, make_cfg

from sniper.engine.defaults import seed_all_rng
from sniper.engine.trainer import _to_device
from sniper.modeling import build_model
from sniper.modeling.norms import recompute_batch_average
from sniper.modeling.switchable_norm import SwitchNorm2d


def test_final_checkpoint_holds_the_batch_average(tmp_path):
    opts = [*SLIM_MODEL_OPTS, "MODEL.BACKBONE.NORM", "SN", "MODEL.BACKBONE.FREEZE_AT", "0"]
    opts += ["SOLVER.SN_IMPORTANCE_LR_FACTOR", "10", "TEST.SN_BATCH_AVERAGE_ITERS", "2"]
    cfg = make_cfg(tmp_path, *opts)
    seed_all_rng(cfg.SEED)
    trainer = SlimTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    final = torch.load(os.path.join(tmp_path, "model_final.pth"), weights_only=True)["model"]
    model = build_model(cfg)
    model.load_state_dict(final)
    layers = {n: m for n, m in model.named_modules() if isinstance(m, SwitchNorm2d)}
    assert layers
    # the importance logits trained (equal at the start)
    assert any(not torch.allclose(m.mean_weight, m.mean_weight[0]) for m in layers.values())
    # the batch average over batches 6 and 7 of the loader (the 6 steps took 0-5)
    loader = FakeChipLoader(seed=cfg.SEED, chips=cfg.SOLVER.IMS_PER_BATCH)
    batches = [next(loader) for _ in range(8)][6:]
    saved = {n: (m.running_mean.clone(), m.running_var.clone()) for n, m in layers.items()}

    def forward(m, batch):
        images, targets = _to_device(batch, torch.device("cpu"))
        m(images, targets)

    assert recompute_batch_average(model, batches, forward) == 2
    for name, layer in layers.items():
        torch.testing.assert_close(layer.running_mean, saved[name][0], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(layer.running_var, saved[name][1], rtol=1e-4, atol=1e-5)
