"""Object graph: learned adjacency (softmax x100 over masked nodes) and a residual GCN (original: HGA)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from masn.model.masked_softmax import masked_softmax
from masn.model.weight_norm import WeightNormLinear


class GraphConvolution(nn.Module):
    """LN(A @ (x W^T)), LayerNorm without affine parameters."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Linear(in_features, out_features, bias=False)
        self.layer_norm = nn.LayerNorm(out_features, elementwise_affine=False)

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        return self.layer_norm(torch.bmm(adj, self.weight(x)))


class GCN(nn.Module):
    """num_layers + 1 graph convolutions, then LN(x + last)."""

    def __init__(self, input_size: int, hidden_size: int, num_classes: int, num_layers: int = 1,
                 dropout: float = 0.1) -> None:
        super().__init__()
        sizes = [input_size] + [hidden_size] * num_layers + [num_classes]
        self.layers = nn.ModuleList(GraphConvolution(i, o) for i, o in zip(sizes[:-1], sizes[1:]))
        self.layernorm = nn.LayerNorm(hidden_size, elementwise_affine=False)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        h = x
        for layer in self.layers:
            h = self.dropout(F.relu(layer(h, adj)))
        return self.layernorm(x + h)


class VideoAdjLearner(nn.Module):
    """A = softmax(scale * h h^T) over unmasked nodes, masked rows all zero; h = ReLU(E2 ReLU(E1 v))."""

    def __init__(self, in_feature_dim: int, hidden_size: int, scale: float = 100) -> None:
        super().__init__()
        self.scale = scale
        self.edge_layer_1 = WeightNormLinear(in_feature_dim, hidden_size, bias=False, dim=0)
        self.edge_layer_2 = WeightNormLinear(hidden_size, hidden_size, bias=False, dim=0)

    def forward(self, v: torch.Tensor, v_mask: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.edge_layer_2(F.relu(self.edge_layer_1(v))))
        adj = torch.bmm(h, h.transpose(1, 2))
        return masked_softmax(adj, v_mask.unsqueeze(2) * v_mask.unsqueeze(1), dim=-1, scale=self.scale)
