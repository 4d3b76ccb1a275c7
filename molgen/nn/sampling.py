"""Discrete choices of the graph decoders: one masked log-softmax, temperature / top-k / top-p
filtering, and seeded draws (every draw takes a ``torch.Generator``; none touches the global RNG)."""
from __future__ import annotations

import torch


def masked_log_softmax(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """``log_softmax`` over the ``allowed`` entries of the last dimension, ``-inf`` elsewhere (float32).

    A row with nothing allowed is an impossible state: every entry is ``-inf`` (probability 0 for
    each choice), never NaN, and its gradient is zero, so a caller that selects such a row away
    with ``torch.where`` (padding, finished molecules) gets finite gradients.
    """
    some = allowed.any(-1, keepdim=True)
    logp = torch.log_softmax(logits.float().masked_fill(~(allowed | ~some), float("-inf")), dim=-1)
    return logp.masked_fill(~allowed, float("-inf"))


def filter_logits(logp: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> torch.Tensor:
    """Temperature, top-k and nucleus (top-p) filtering of log-probabilities (last dim): divided by
    ``temperature``, then ``-inf`` outside the ``top_k`` largest and outside the smallest set whose
    probability reaches ``top_p``."""
    x = logp / temperature if temperature != 1.0 else logp
    if top_k is not None and top_k < x.shape[-1]:
        kth = torch.topk(x, top_k, dim=-1).values[..., -1:]
        x = x.masked_fill(x < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        srt, idx = torch.sort(x, dim=-1, descending=True)
        cum = torch.softmax(srt, -1).cumsum(-1)
        drop_sorted = (cum - torch.softmax(srt, -1)) >= top_p  # keep the smallest set reaching top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, idx, drop_sorted)
        x = x.masked_fill(drop, float("-inf"))
    return x


def gumbel_draw(logp: torch.Tensor, generator: torch.Generator | None, temperature: float = 1.0,
                top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """An index per row of ``logp`` (..., K), drawn by Gumbel-max from :func:`filter_logits`."""
    x = filter_logits(logp, temperature, top_k, top_p)
    u = torch.rand(x.shape, generator=generator, device=x.device).clamp_(1e-20, 1.0)
    return torch.argmax(x - torch.log(-torch.log(u)), dim=-1)


def masked_choice(logits: torch.Tensor, allowed: torch.Tensor, temperature: float = 1.0, greedy: bool = False,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A choice per row of (B, K) ``logits`` among the ``allowed`` entries (the argmax with
    ``greedy``, else a multinomial draw at ``temperature``) and its log-probability in nats under
    the masked distribution at temperature 1 (:func:`masked_log_softmax`)."""
    masked = logits.float().masked_fill(~allowed, float("-inf"))
    if greedy:
        choice = masked.argmax(-1)
    else:
        choice = torch.multinomial(torch.softmax(masked / temperature, dim=-1), 1, generator=generator)[:, 0]
    return choice, masked_log_softmax(logits, allowed).gather(-1, choice[:, None])[:, 0]
