"""FocusPixel head and loss: shapes, CE over non-ignored cells only, all-ignored batches."""

from __future__ import annotations

import math

import torch

from autofocus.head import FocusPixelHead, focus_loss, focus_probability


def test_head_keeps_the_cells_and_gives_two_logits() -> None:
    head = FocusPixelHead(in_channels=8, channels=4)
    logits = head(torch.randn(3, 8, 5, 7))
    assert logits.shape == (3, 2, 5, 7)
    layers = [m for m in head.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size) for m in layers] == [
        (8, 4, (3, 3)),
        (4, 4, (1, 1)),
        (4, 2, (1, 1)),
    ]


def test_loss_is_the_hand_computed_ce_over_non_ignored_cells() -> None:
    logits = torch.tensor(
        [[[[2.0, 0.0], [1.0, -1.0]], [[0.0, 3.0], [1.0, 5.0]]]]
    )  # (1, 2, 2, 2): class 0, class 1
    labels = torch.tensor([[[0, 1], [-1, 0]]])
    # cells (0,0) label 0: logits (2, 0); (0,1) label 1: (0, 3); (1,1) label 0: (-1, 5)
    ce = [
        -(2.0 - math.log(math.exp(2.0) + math.exp(0.0))),
        -(3.0 - math.log(math.exp(0.0) + math.exp(3.0))),
        -(-1.0 - math.log(math.exp(-1.0) + math.exp(5.0))),
    ]
    expected = sum(ce) / 3
    assert math.isclose(float(focus_loss(logits, labels)), expected, rel_tol=1e-6)
    assert math.isclose(float(focus_loss(logits, labels, weight=0.5)), expected / 2, rel_tol=1e-6)
    changed = logits.clone()
    changed[0, :, 1, 0] = torch.tensor([-50.0, 50.0])  # the ignored cell does not matter
    assert math.isclose(float(focus_loss(changed, labels)), expected, rel_tol=1e-6)


def test_all_ignored_gives_zero_loss_connected_to_the_graph() -> None:
    logits = torch.randn(2, 2, 3, 3, requires_grad=True)
    loss = focus_loss(logits, torch.full((2, 3, 3), -1))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert logits.grad is not None and torch.equal(logits.grad, torch.zeros_like(logits))


def test_probability_is_the_softmax_of_the_focus_class() -> None:
    logits = torch.tensor([[[[0.0]], [[math.log(3.0)]]]])
    assert torch.allclose(focus_probability(logits), torch.tensor([[[0.75]]]))
