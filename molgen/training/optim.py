"""The optimisation rules of the training loop that keep their state on the device: EDM's adaptive
gradient clipping over a ring buffer of recent norms, and the warm-up EMA decay."""
from __future__ import annotations

from typing import Callable

import torch


def ema_with_warmup(decay: float) -> Callable:
    """EMA update whose decay ramps up as min(decay, (1 + n) / (10 + n)) after n updates, so that a
    short run's average is not dominated by the initial weights."""

    @torch.no_grad()
    def update(ema_params: list[torch.Tensor], params: list[torch.Tensor], n_averaged: torch.Tensor | int) -> None:
        n = float(n_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        torch._foreach_lerp_(ema_params, params, 1.0 - d)

    return update


class AdaptiveClipper:
    """EDM's adaptive clipping: bound 1.5 x mean + 2 x std of the last ``history`` clipped norms (a fixed
    ``clip_max`` before that many exist), computed on the device so that no step waits for the GPU.
    ``adaptive=False`` clips at ``clip_max`` always."""

    def __init__(self, clip_max: float, adaptive: bool = True, history: int = 50,
                 device: str | torch.device = "cpu") -> None:
        self.clip_max, self.adaptive, self.history = clip_max, adaptive, history
        self.norms = torch.zeros(history, device=device)  # recent clipped norms, a ring buffer
        self.count = 0  # norms recorded so far (the ring buffer holds the last ``history``)

    def load(self, norms: list[float]) -> None:
        """Restore the history from :meth:`saved` (oldest first)."""
        recent = [float(v) for v in norms][-self.history:]
        self.norms.zero_()
        if recent:
            self.norms[:len(recent)] = torch.tensor(recent, dtype=self.norms.dtype)
        self.count = len(recent)

    def saved(self) -> list[float]:
        """The ring buffer as the list of the last (up to) ``history`` norms, oldest first."""
        values = self.norms.tolist()
        if self.count <= self.history:
            return values[:self.count]
        start = self.count % self.history  # the oldest entry, written over next
        return values[start:] + values[:start]

    def clip(self, parameters: list[torch.nn.Parameter]) -> torch.Tensor:
        """Clip the gradients of ``parameters`` in place; returns their norm before clipping."""
        params = [p for p in parameters if p.grad is not None]
        norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        if self.adaptive and self.count >= self.history:
            bound = 1.5 * self.norms.mean() + 2.0 * self.norms.std(unbiased=False)
        else:
            bound = torch.tensor(self.clip_max, device=norm.device)
        torch.nn.utils.clip_grads_with_norm_(params, bound, norm)
        finite = torch.isfinite(norm)
        slot = self.count % self.history
        self.norms[slot] = torch.where(finite, torch.minimum(norm, bound).to(self.norms.dtype), self.norms[slot])
        # a non-finite norm is not recorded; counting it on the host would need a sync, so the
        # slot keeps its old value and the count still advances (only after a divergence)
        self.count += 1
        return norm
