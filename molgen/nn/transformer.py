"""One pre-norm transformer block whose attention takes an additive bias, with a KV-cache step.

Both graph decoders use it: the autoregressive model (``molgen.models.ar``) adds a learned bias per
graph relation between tokens, the VAE decoder (``molgen.models.vae``) one per bond order. The
bias carries the causal mask as ``-inf`` entries; :meth:`BiasedBlock.step` runs one new position
against cached keys and values and gives exactly what :meth:`BiasedBlock.forward` gives at that
position (tested).

Parameter names: ``norm1``, ``norm2``, ``qkv``, ``out``, ``mlp`` (the VAE decoder's names, so its
checkpoints load as they are). Checkpoints of the autoregressive model written before the blocks
were shared name them ``ln1``, ``ln2``, ``qkv``, ``proj``, ``ff``; :data:`LEGACY_NAMES` maps them on
load, so those files load unchanged (the files are not rewritten).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: Old parameter-name prefixes (the autoregressive model's own block) -> the names used here.
LEGACY_NAMES = {"ln1.": "norm1.", "ln2.": "norm2.", "proj.": "out.", "ff.": "mlp."}


class BiasedBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x), bias)``, then ``x + mlp(norm2(x))``.

    Args:
        dim: model width (a multiple of ``heads``).
        heads: attention heads.
        ff_dim: hidden width of the GELU feed-forward network.
        dropout: dropout on both residual branches (training only).
        attn_dropout: dropout on the attention weights (training only).
    """

    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float = 0.0, attn_dropout: float = 0.0) -> None:
        super().__init__()
        self.heads, self.attn_dropout = heads, attn_dropout
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, ff_dim), nn.GELU(), nn.Linear(ff_dim, dim))
        self.drop = nn.Dropout(dropout)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, length, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        return q, k, v

    def _finish(self, x: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
        b, heads, length, dh = att.shape
        x = x + self.drop(self.out(att.transpose(1, 2).reshape(b, length, heads * dh)))
        return x + self.drop(self.mlp(self.norm2(x)))

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Whole sequences: x (B, L, dim), bias (B, heads, L, L) added to the attention logits."""
        q, k, v = self._qkv(x)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype),
                                             dropout_p=self.attn_dropout if self.training else 0.0)
        return self._finish(x, att)

    def step(self, x: torch.Tensor, bias: torch.Tensor, cache: Sequence[torch.Tensor], p: int) -> torch.Tensor:
        """One new position ``p`` (x: (B, 1, dim), bias (B, heads, 1, p + 1)) attending to itself and
        to the cached keys and values of positions 0..p-1 (``cache``: two (B, heads, capacity,
        dim / heads) buffers; position p is written into them in place)."""
        q, k, v = self._qkv(x)
        keys, values = cache
        keys[:, :, p] = k[:, :, 0]
        values[:, :, p] = v[:, :, 0]
        att = F.scaled_dot_product_attention(q, keys[:, :, :p + 1], values[:, :, :p + 1], attn_mask=bias.to(q.dtype))
        return self._finish(x, att)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        for old, new in LEGACY_NAMES.items():
            for key in [k for k in state_dict if k.startswith(prefix + old)]:
                state_dict[prefix + new + key[len(prefix + old):]] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
