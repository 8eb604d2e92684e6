"""Dynamic Weight Average (DWA).

Liu, Johns & Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019
(arXiv 1803.10704), eq. 7: ``lambda_k(t) = T exp(r_k(t-1)/temp) / sum_i exp(r_i(t-1)/temp)`` with
``r_k(t-1) = Lbar_k(t-1) / Lbar_k(t-2)`` the ratio of epoch-mean training losses; lambda = 1 in the
first two epochs; ``L = sum_k lambda_k L_k``; temp = 2.

``variant="window"`` is the iteration-window form of the Nash-MTL/FAMO code: a FIFO of the last
2 x ``window`` loss vectors (initialised to 1, current losses pushed first); from step
``window + 2`` on (step 27 for window 25, as in that code) r_k = mean(newest ``window``) /
mean(older ``window``), and ``L = mean_k(lambda_k L_k)``.
"""
from __future__ import annotations

import torch

from .base import LossWeighting


class DynamicWeightAverage(LossWeighting):
    paper = "Liu et al. CVPR 2019, arXiv 1803.10704, eq. 7"

    def __init__(self, n_tasks: int, temp: float = 2.0, variant: str = "epoch", window: int = 25):
        super().__init__(n_tasks)
        if variant not in ("epoch", "window"):
            raise ValueError(f"strategy.variant={variant!r}: choose 'epoch' or 'window'")
        if temp <= 0:
            raise ValueError(f"strategy.temp must be positive, got {temp}")
        self.temp = float(temp)
        self.variant = variant
        self.window = int(window)
        self.register_buffer("lambdas", torch.ones(n_tasks))
        # epoch variant: the last two epoch-mean loss vectors (oldest first) and how many were seen
        self.register_buffer("epoch_losses", torch.zeros(2, n_tasks))
        self.register_buffer("epochs_seen", torch.zeros((), dtype=torch.long))
        # window variant: FIFO of loss vectors, newest first, and how many real losses it holds
        self.register_buffer("fifo", torch.ones(2 * self.window, n_tasks))
        self.register_buffer("pushed", torch.zeros((), dtype=torch.long))

    def _softmax_weights(self, ratios: torch.Tensor) -> torch.Tensor:
        return self.n_tasks * torch.softmax(ratios / self.temp, dim=0)

    def weights(self, losses, gramian=None):
        if self.variant == "epoch":
            return self.lambdas.to(losses.dtype)
        self.fifo.copy_(torch.cat([losses.detach().unsqueeze(0).to(self.fifo.dtype), self.fifo[:-1]]))
        self.pushed.add_(1)
        ratios = self.fifo[: self.window].mean(0) / self.fifo[self.window :].mean(0)
        ready = self.pushed > self.window + 1
        return torch.where(ready, self._softmax_weights(ratios), torch.ones_like(ratios)).to(losses.dtype)

    def combine(self, losses):
        w = self.weights(losses.detach())
        total = (w * losses).sum()
        if self.variant == "window":
            total = total / self.n_tasks
        return total, w.detach()

    def on_epoch_end(self, epoch, mean_train_losses):
        if self.variant != "epoch":
            return
        current = mean_train_losses.detach().to(self.epoch_losses.dtype)
        self.epoch_losses.copy_(torch.stack([self.epoch_losses[1], current]))
        self.epochs_seen.add_(1)
        if int(self.epochs_seen) >= 2:
            self.lambdas.copy_(self._softmax_weights(self.epoch_losses[1] / self.epoch_losses[0]))
