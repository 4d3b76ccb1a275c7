"""Helpers shared by the models' discrete choices."""
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
