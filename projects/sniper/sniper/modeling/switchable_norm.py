"""Switchable Normalization (Luo et al., "Differentiable Learning-to-Normalize via Switchable
Normalization"): ``SwitchNorm2d``.

For a feature map ``x`` of shape ``(N, C, H, W)`` SN computes three sets of statistics, with
the paper's definitions (population means and variances):

* instance (IN): per sample and channel, over ``H x W``: ``mu_in, var_in`` ``(N, C)``;
* layer (LN): per sample, over ``C x H x W``: ``mu_ln = mean_c mu_in``,
  ``var_ln = mean_c (var_in + mu_in ** 2) - mu_ln ** 2`` ``(N, 1)``;
* batch (BN): per channel, over ``N x H x W``: ``mu_bn = mean_n mu_in``,
  ``var_bn = mean_n (var_in + mu_in ** 2) - mu_bn ** 2`` ``(C,)``.

The mean and the variance are mixed with two separate importance vectors, softmax-normalized
(``mean_weight``, ``var_weight``, learnable, initialised equal, so each statistic starts at
weight 1/3): ``mu = sum_k softmax(mean_weight)_k mu_k``, likewise ``var``; then
``y = weight * (x - mu) / sqrt(var + eps) + bias`` with a per-channel affine.

``using_bn=False`` drops the batch branch (IN + LN only: the paper's "(8, 1)" setting, one
image per GPU, where batch statistics degenerate); the vectors then have 2 entries.

Batch statistics at test time (``using_bn``):

* ``moving_average=True`` (default): in training, ``running = momentum * running +
  (1 - momentum) * batch`` (the paper code's convention: ``momentum`` is the weight of the
  *old* value, 0.997 by default; torch's BatchNorm uses the opposite one);
* ``moving_average=False``: the "batch average" of the paper, recomputed after training:
  ``begin_batch_average()``, then forward passes in training mode over N batches (only
  accumulating), then ``end_batch_average()`` sets ``running_mean`` to the mean of the batch
  means and ``running_var`` to the mean of ``var_bn + mu_bn ** 2`` minus ``running_mean **
  2`` (``sniper.modeling.norms.recompute_batch_average`` does it for a model).

Under DDP the batch statistics are those of the GPU's own chips (no synchronization), as
BatchNorm in SNIPER: SN's point is that the IN and LN branches do not depend on the batch.

The authors' code takes the unbiased IN variance (``x.var()``); this module follows the
paper's equations (population variance), which differ by ``HW / (HW - 1)`` and stay defined
for 1 x 1 maps.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["SwitchNorm2d"]


class SwitchNorm2d(nn.Module):
    """Switchable Normalization of ``(N, C, H, W)`` float inputs (module doc).

    Args:
        num_features: C.
        eps: added to the mixed variance.
        momentum: weight of the old running statistics in the moving average, in [0, 1).
        using_bn: include the batch branch (3 statistics) or not (IN + LN).
        moving_average: keep running batch statistics by moving average (True) or only by
            an explicit batch average (False; see module doc).

    Attributes:
        weight, bias: float32 ``(C,)`` affine.
        mean_weight, var_weight: float32 ``(3,)`` (``(2,)`` without BN) importance logits.
        running_mean, running_var: float32 ``(C,)`` batch statistics used in eval mode
            (initialised 0 and 1; from a BatchNorm's by ``from_batch_norm``).
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.997,
        using_bn: bool = True,
        moving_average: bool = True,
    ) -> None:
        super().__init__()
        if int(num_features) < 1:
            raise ValueError(f"num_features must be >= 1, got {num_features}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), momentum
        self.using_bn, self.moving_average = bool(using_bn), bool(moving_average)
        self.weight = nn.Parameter(torch.ones(self.num_features))
        self.bias = nn.Parameter(torch.zeros(self.num_features))
        branches = 3 if self.using_bn else 2
        self.mean_weight = nn.Parameter(torch.ones(branches))
        self.var_weight = nn.Parameter(torch.ones(branches))
        self.register_buffer("running_mean", torch.zeros(self.num_features))
        self.register_buffer("running_var", torch.ones(self.num_features))
        self._average: list | None = None  # [count, sum of means, sum of second moments]

    @classmethod
    def from_batch_norm(
        cls, bn: nn.Module, using_bn: bool = True, **kwargs: object
    ) -> SwitchNorm2d:
        """An SN layer initialised from a BatchNorm2d / SyncBatchNorm / FrozenBatchNorm2d (with
        running statistics): its affine and running statistics copied, the importance
        weights equal."""
        channels = int(bn.running_mean.numel())
        sn = cls(channels, eps=float(bn.eps), using_bn=using_bn, **kwargs)  # type: ignore[arg-type]
        with torch.no_grad():
            if getattr(bn, "weight", None) is not None:
                sn.weight.copy_(bn.weight.detach().reshape(-1))
                sn.bias.copy_(bn.bias.detach().reshape(-1))
            sn.running_mean.copy_(bn.running_mean.reshape(-1))
            sn.running_var.copy_(bn.running_var.reshape(-1))
        return sn.to(bn.running_mean.device)

    def importance(self) -> tuple[Tensor, Tensor]:
        """``(softmax(mean_weight), softmax(var_weight))``, in the order IN, LN[, BN]."""
        return torch.softmax(self.mean_weight, 0), torch.softmax(self.var_weight, 0)

    def begin_batch_average(self) -> None:
        """Start accumulating batch statistics (forward passes in training mode)."""
        if not self.using_bn:
            raise ValueError("SwitchNorm2d without the batch branch has no batch statistics")
        zeros = torch.zeros_like(self.running_mean)
        self._average = [0, zeros.clone(), zeros.clone()]

    def end_batch_average(self) -> int:
        """Set the running statistics to the batch average; returns the number of batches.

        Raises:
            ValueError: no batch was accumulated since ``begin_batch_average``.
        """
        if self._average is None or self._average[0] == 0:
            raise ValueError("end_batch_average: no batch was accumulated")
        count, means, moments = self._average
        self._average = None
        with torch.no_grad():
            mean = means / count
            self.running_mean.copy_(mean)
            self.running_var.copy_((moments / count - mean**2).clamp_min(0.0))
        return int(count)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` -> same shape and dtype (module doc)."""
        if x.dim() != 4 or x.shape[1] != self.num_features:
            raise ValueError(
                f"SwitchNorm2d({self.num_features}) expects (N, {self.num_features}, H, W), "
                f"got {tuple(x.shape)}"
            )
        n, c, h, w = x.shape
        flat = x.reshape(n, c, h * w)
        mean_in = flat.mean(-1)  # (N, C)
        var_in = ((flat - mean_in[..., None]) ** 2).mean(-1)  # population variance
        second_in = var_in + mean_in**2  # E[x^2] per (n, c)
        mean_ln = mean_in.mean(1, keepdim=True)  # (N, 1)
        var_ln = (second_in.mean(1, keepdim=True) - mean_ln**2).clamp_min(0.0)
        mean_w, var_w = self.importance()
        mean = mean_w[0] * mean_in + mean_w[1] * mean_ln
        var = var_w[0] * var_in + var_w[1] * var_ln
        if self.using_bn:
            if self.training:
                mean_bn = mean_in.mean(0)  # (C,)
                second_bn = second_in.mean(0)
                var_bn = (second_bn - mean_bn**2).clamp_min(0.0)
                self._track(mean_bn.detach(), var_bn.detach())
            else:
                mean_bn, var_bn = self.running_mean, self.running_var
            mean = mean + mean_w[2] * mean_bn
            var = var + var_w[2] * var_bn
        out = (flat - mean[..., None]) / torch.sqrt(var[..., None] + self.eps)
        out = out.reshape(n, c, h, w)
        return out * self.weight.reshape(1, c, 1, 1) + self.bias.reshape(1, c, 1, 1)

    def _track(self, mean_bn: Tensor, var_bn: Tensor) -> None:
        """Update the running statistics (moving average) or the batch-average sums."""
        with torch.no_grad():
            if self._average is not None:
                self._average[0] += 1
                self._average[1] += mean_bn
                self._average[2] += var_bn + mean_bn**2
            elif self.moving_average:
                self.running_mean.mul_(self.momentum).add_((1 - self.momentum) * mean_bn)
                self.running_var.mul_(self.momentum).add_((1 - self.momentum) * var_bn)

    def extra_repr(self) -> str:
        branches = "IN, LN, BN" if self.using_bn else "IN, LN"
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, [{branches}]"
