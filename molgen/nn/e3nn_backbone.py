"""An e3nn tensor-product backbone with the same interface as :class:`molgen.nn.egnn.EGNN`.

Node features carry irreps ``{scalars}x0e + {vectors}x1o``. Each layer sends, along every pair of real
atoms, the tensor product of the neighbour's features with the spherical harmonics (l <= lmax) of
the relative position, weighted per edge by an MLP of the distance (Bessel-like radial basis), then
applies a gated nonlinearity and a residual connection. The coordinate output is x + (one 1o
channel): rotation- and reflection-equivariant and translation-equivariant by construction, since
positions enter only through relative vectors.
"""
from __future__ import annotations

import torch
from e3nn import o3
from e3nn.math import soft_one_hot_linspace
from e3nn.nn import FullyConnectedNet, Gate
from torch import nn

from .egnn import _pair_mask


class _E3Layer(nn.Module):
    def __init__(self, irreps: o3.Irreps, sh: o3.Irreps, n_scalars: int, n_vectors: int, n_basis: int,
                 radial_hidden: int, normalization_factor: float) -> None:
        super().__init__()
        gate = Gate(f"{n_scalars}x0e", [torch.nn.functional.silu], f"{n_vectors}x0e", [torch.sigmoid],
                    f"{n_vectors}x1o")
        self.tp = o3.FullyConnectedTensorProduct(irreps, sh, gate.irreps_in, shared_weights=False)
        self.radial = FullyConnectedNet([n_basis, radial_hidden, self.tp.weight_numel], torch.nn.functional.silu)
        self.gate = gate
        self.self_interaction = o3.Linear(irreps, gate.irreps_out)
        self.norm = normalization_factor

    def forward(self, h: torch.Tensor, sh: torch.Tensor, basis: torch.Tensor, pair_mask: torch.Tensor) -> torch.Tensor:
        b, n, d = h.shape
        hj = h[:, None, :, :].expand(b, n, n, d)
        msg = self.tp(hj.reshape(-1, d), sh.reshape(b * n * n, -1), self.radial(basis.reshape(b * n * n, -1)))
        msg = (msg.view(b, n, n, -1) * pair_mask).sum(2) / self.norm
        return self.self_interaction(h) + self.gate(msg)


class E3nnBackbone(nn.Module):
    """Equivariant tensor-product network: (h (B,N,in_dim), x (B,N,3), mask) -> (h_out, x_out)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 64, vectors: int = 16, n_layers: int = 4,
                 lmax: int = 2, n_basis: int = 16, cutoff: float = 10.0, radial_hidden: int = 64,
                 normalization_factor: float = 1.0) -> None:
        super().__init__()
        self.irreps = o3.Irreps(f"{hidden}x0e + {vectors}x1o")
        self.sh_irreps = o3.Irreps.spherical_harmonics(lmax)
        self.embed = o3.Linear(o3.Irreps(f"{in_dim}x0e"), self.irreps)
        self.layers = nn.ModuleList(_E3Layer(self.irreps, self.sh_irreps, hidden, vectors, n_basis,
                                             radial_hidden, normalization_factor) for _ in range(n_layers))
        self.out = o3.Linear(self.irreps, o3.Irreps(f"{out_dim}x0e + 1x1o"))
        self.n_basis, self.cutoff, self.out_dim = n_basis, cutoff, out_dim

    def forward(self, h: torch.Tensor, x: torch.Tensor, node_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pair_mask = _pair_mask(node_mask)
        rel = x[:, :, None, :] - x[:, None, :, :]
        # Self-pairs and padding have zero vectors; give them a unit dummy (masked out below) so the
        # spherical harmonics stay finite.
        rel = rel + (1 - pair_mask) * torch.tensor([1.0, 0.0, 0.0], dtype=rel.dtype, device=rel.device)
        dist = rel.norm(dim=-1)
        sh = o3.spherical_harmonics(self.sh_irreps, rel, normalize=True, normalization="component")
        basis = soft_one_hot_linspace(dist, 0.0, self.cutoff, self.n_basis, basis="smooth_finite",
                                      cutoff=True) * self.n_basis ** 0.5
        f = self.embed(h) * node_mask
        for layer in self.layers:
            f = layer(f, sh, basis, pair_mask) * node_mask
        out = self.out(f) * node_mask
        return out[..., : self.out_dim], x + out[..., self.out_dim:]
