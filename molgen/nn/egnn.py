"""E(n)-equivariant graph network (Satorras et al. 2021) in EDM's variant, over dense padded batches.

All pairs of real atoms are edges (a fully connected graph, as in EDM). Shapes: h (B, N, F),
x (B, N, 3), node_mask (B, N, 1). Padding is masked out of every sum, so a batch can be trimmed to
its largest molecule. The first layer of each edge MLP is split into per-node products that are
broadcast over pairs, which saves a (B, N, N, 2F) concatenation.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _pair_mask(node_mask: torch.Tensor) -> torch.Tensor:
    """(B, N, N, 1) mask of edges between distinct real atoms."""
    m = node_mask[..., 0]
    n = m.shape[1]
    eye = torch.eye(n, dtype=m.dtype, device=m.device)
    return (m[:, :, None] * m[:, None, :] * (1 - eye)).unsqueeze(-1)


class _PairLinear(nn.Module):
    """Linear layer on concat(h_i, h_j, e_ij) computed as A h_i + B h_j + C e_ij."""

    def __init__(self, node_dim: int, edge_dim: int, out_dim: int) -> None:
        super().__init__()
        self.src = nn.Linear(node_dim, out_dim)
        self.dst = nn.Linear(node_dim, out_dim, bias=False)
        self.edge = nn.Linear(edge_dim, out_dim, bias=False)

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        out = torch.add(self.src(h)[:, :, None, :], self.dst(h)[:, None, :, :])  # (B, N, N, out), one write
        # the edge term, accumulated by the matrix product itself (beta = 1): one more pass over the pair
        # tensor instead of three (a product with K = edge_dim is memory-bound). In place, autocast leaves
        # the operands alone: they take the pair tensor's dtype.
        out.view(-1, out.shape[-1]).addmm_(e.reshape(-1, e.shape[-1]).to(out.dtype),
                                           self.edge.weight.t().to(out.dtype))
        return out


class _SiLU(nn.Module):
    """SiLU, in place when no gradient is recorded (sampling), where its inputs are fresh pair tensors."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x, inplace=not torch.is_grad_enabled())


def _fused_linear_silu_op():
    """oneDNN's product with a fused activation (``torch.ops.mkldnn._linear_pointwise``, the kernel
    Inductor's CPU backend emits), or None where this torch build lacks it."""
    try:
        return torch.ops.mkldnn._linear_pointwise if torch.backends.mkldnn.is_available() else None
    except (AttributeError, RuntimeError):
        return None


_LINEAR_SILU = _fused_linear_silu_op()


def _linear_silu(linear: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``silu(linear(x))``. On a CPU without autograd (sampling) one oneDNN product with the bias and the
    SiLU fused into it: two passes fewer over a pair tensor (16 % of an fp32 sampling pass). Elsewhere
    (training, CUDA, a build without the op) the plain modules."""
    if (_LINEAR_SILU is None or torch.is_grad_enabled() or x.device.type != "cpu"
            or x.dtype not in (torch.float32, torch.bfloat16)):
        return F.silu(linear(x), inplace=not torch.is_grad_enabled())
    weight = linear.weight.to(x.dtype)  # autocast does not see this op: the pair tensor's dtype rules
    bias = None if linear.bias is None else linear.bias.to(x.dtype)
    out = _LINEAR_SILU(x.reshape(-1, x.shape[-1]), weight, bias, "swish", [], "")
    return out.view(*x.shape[:-1], weight.shape[0])


def _pair_sum(m: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """sum_j w_ij m_ij: (B, N, N, F) and (B, N, N, 1) -> (B, N, F), as one batched product that reads
    the pair tensor once (instead of writing m * w, then summing it)."""
    return torch.matmul(w.transpose(-1, -2), m).squeeze(-2)


class GCL(nn.Module):
    """Invariant message passing layer with optional attention and a residual node update."""

    def __init__(self, hidden: int, edge_dim: int, normalization_factor: float, attention: bool) -> None:
        super().__init__()
        self.edge_in = _PairLinear(hidden, edge_dim, hidden)
        self.edge_mlp = nn.Sequential(_SiLU(), nn.Linear(hidden, hidden), _SiLU())  # run by forward
        self.att = nn.Sequential(nn.Linear(hidden, 1), nn.Sigmoid()) if attention else None
        self.node_mlp = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.norm = normalization_factor

    def forward(self, h: torch.Tensor, e: torch.Tensor, node_mask: torch.Tensor,
                pair_mask: torch.Tensor) -> torch.Tensor:
        m = _linear_silu(self.edge_mlp[1], self.edge_mlp[0](self.edge_in(h, e)))
        w = pair_mask if self.att is None else self.att(m) * pair_mask
        agg = _pair_sum(m, w) / self.norm
        return (h + self.node_mlp(torch.cat([h, agg], dim=-1))) * node_mask


class EquivariantUpdate(nn.Module):
    """x_i += sum_j (x_i - x_j) / (|x_i - x_j| + 1) * phi(h_i, h_j, e_ij), phi bounded by tanh."""

    def __init__(self, hidden: int, edge_dim: int, normalization_factor: float, tanh: bool,
                 coords_range: float) -> None:
        super().__init__()
        self.inp = _PairLinear(hidden, edge_dim, hidden)
        last = nn.Linear(hidden, 1, bias=False)
        nn.init.xavier_uniform_(last.weight, gain=0.001)
        self.mlp = nn.Sequential(_SiLU(), nn.Linear(hidden, hidden), _SiLU(), last)  # run by forward
        self.tanh, self.range, self.norm = tanh, coords_range, normalization_factor

    def forward(self, h: torch.Tensor, x: torch.Tensor, e: torch.Tensor, diff: torch.Tensor,
                node_mask: torch.Tensor, pair_mask: torch.Tensor) -> torch.Tensor:
        w = self.mlp[3](_linear_silu(self.mlp[1], self.mlp[0](self.inp(h, e))))
        if self.tanh:
            w = torch.tanh(w) * self.range
        trans = _pair_sum(diff, w * pair_mask) / self.norm
        return (x + trans) * node_mask


class EquivariantBlock(nn.Module):
    def __init__(self, hidden: int, edge_dim: int, n_sublayers: int, normalization_factor: float,
                 attention: bool, tanh: bool, coords_range: float) -> None:
        super().__init__()
        self.gcls = nn.ModuleList(GCL(hidden, edge_dim, normalization_factor, attention)
                                  for _ in range(n_sublayers))
        self.update = EquivariantUpdate(hidden, edge_dim, normalization_factor, tanh, coords_range)

    def forward(self, h: torch.Tensor, x: torch.Tensor, d0: torch.Tensor, node_mask: torch.Tensor,
                pair_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rel = x[:, :, None, :] - x[:, None, :, :]
        radial = (rel ** 2).sum(-1, keepdim=True)
        diff = rel / (torch.sqrt(radial + 1e-8) + 1.0)
        e = torch.cat([radial, d0], dim=-1)
        for gcl in self.gcls:
            h = gcl(h, e, node_mask, pair_mask)
        x = self.update(h, x, e, diff, node_mask, pair_mask)
        return h, x


class EGNN(nn.Module):
    """EDM's EGNN: returns updated invariant features (B, N, out_dim) and coordinates (B, N, 3)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 256, n_layers: int = 9,
                 n_sublayers: int = 1, attention: bool = True, tanh: bool = True,
                 coords_range: float = 15.0, normalization_factor: float = 1.0, pair_extra_dim: int = 0) -> None:
        super().__init__()
        self.embed = nn.Linear(in_dim, hidden)
        self.pair_extra_dim = pair_extra_dim
        self.blocks = nn.ModuleList(
            EquivariantBlock(hidden, 2 + pair_extra_dim, n_sublayers, normalization_factor, attention, tanh,
                             coords_range / n_layers) for _ in range(n_layers))
        self.out = nn.Linear(hidden, out_dim)

    def forward(self, h: torch.Tensor, x: torch.Tensor, node_mask: torch.Tensor,
                pair_extra: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``pair_extra`` (B, N, N, pair_extra_dim): invariant pair features appended to every
        layer's edge input (e.g. distances of a self-conditioning estimate)."""
        pair_mask = _pair_mask(node_mask)
        d0 = ((x[:, :, None, :] - x[:, None, :, :]) ** 2).sum(-1, keepdim=True)
        if self.pair_extra_dim:
            if pair_extra is None or pair_extra.shape[-1] != self.pair_extra_dim:
                raise ValueError(f"this EGNN takes {self.pair_extra_dim} extra pair features")
            d0 = torch.cat([d0, pair_extra.to(d0.dtype)], dim=-1)
        h = self.embed(h) * node_mask
        for block in self.blocks:
            h, x = block(h, x, d0, node_mask, pair_mask)
        return self.out(h) * node_mask, x
