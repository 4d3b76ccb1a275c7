"""A message-passing encoder for 2D molecular graphs (PyTorch Geometric), pooled to one vector per graph.

Atoms and bonds arrive as small integer feature columns (e.g. atom token, hydrogen count, aromatic
flag); each column has its own embedding table and the embeddings are summed. Each layer is a GINE
convolution (Hu et al., ICLR 2020: edge features are added to the neighbour's state inside the
message) with a residual connection and LayerNorm. The read-out concatenates sum, mean and max
pooling, so the graph vector sees both size and composition.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

# torch_geometric is imported where a GraphEncoder is built or run: importing it takes about 1.5 s here
# (it pulls in torch._dynamo), which every CLI would pay on start, EDM's included (the model registry
# imports each model's module).


class CategoricalEmbedding(nn.Module):
    """Sum of one embedding per integer feature column: (n, k) long -> (n, dim)."""

    def __init__(self, sizes: Sequence[int], dim: int) -> None:
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(int(s), dim) for s in sizes)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if feats.shape[-1] != len(self.tables):
            raise ValueError(f"expected {len(self.tables)} feature columns, got {feats.shape[-1]}")
        out = self.tables[0](feats[..., 0])
        for k in range(1, len(self.tables)):
            out = out + self.tables[k](feats[..., k])
        return out


class GraphEncoder(nn.Module):
    """GINE message passing over a batch of graphs, pooled to ``(num_graphs, out_dim)``.

    Args:
        node_sizes: number of values of each integer node-feature column.
        edge_sizes: number of values of each integer edge-feature column.
        hidden: width of node states.
        layers: number of message-passing rounds.
        out_dim: size of the pooled graph vector.
    """

    def __init__(self, node_sizes: Sequence[int], edge_sizes: Sequence[int], hidden: int = 128,
                 layers: int = 4, out_dim: int = 128) -> None:
        from torch_geometric.nn import GINEConv

        super().__init__()
        self.node_embed = CategoricalEmbedding(node_sizes, hidden)
        self.edge_embeds = nn.ModuleList(CategoricalEmbedding(edge_sizes, hidden) for _ in range(layers))
        self.convs = nn.ModuleList(
            GINEConv(nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.SiLU(), nn.Linear(2 * hidden, hidden)),
                     train_eps=True)
            for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.readout = nn.Sequential(nn.Linear(3 * hidden, 2 * hidden), nn.SiLU(), nn.Linear(2 * hidden, out_dim))

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor,
                batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
        """Graph vectors from node features ``x`` (n, k), directed ``edge_index`` (2, e) with
        features ``edge_attr`` (e, m), and the graph index of every node ``batch`` (n,)."""
        from torch_geometric.nn import global_add_pool, global_max_pool, global_mean_pool

        h = self.node_embed(x)
        for conv, norm, emb in zip(self.convs, self.norms, self.edge_embeds):
            h = h + conv(norm(h), edge_index, emb(edge_attr))
        pooled = torch.cat([global_add_pool(h, batch, size=num_graphs) / 8.0,
                            global_mean_pool(h, batch, size=num_graphs),
                            global_max_pool(h, batch, size=num_graphs)], dim=-1)
        return self.readout(pooled)
