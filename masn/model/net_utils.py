"""MCAN building blocks: ``FC``, ``MLP`` and the custom ``LayerNorm`` (unbiased std, eps added to std)."""
from __future__ import annotations

import torch
from torch import nn


class FC(nn.Module):
    def __init__(self, in_size: int, out_size: int, dropout_r: float = 0.0, use_relu: bool = True) -> None:
        super().__init__()
        self.dropout_r = dropout_r
        self.use_relu = use_relu
        self.linear = nn.Linear(in_size, out_size)
        if use_relu:
            self.relu = nn.ReLU(inplace=True)
        if dropout_r > 0:
            self.dropout = nn.Dropout(dropout_r)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x)
        if self.use_relu:
            x = self.relu(x)
        if self.dropout_r > 0:
            x = self.dropout(x)
        return x


class MLP(nn.Module):
    def __init__(self, in_size: int, mid_size: int, out_size: int, dropout_r: float = 0.0,
                 use_relu: bool = True) -> None:
        super().__init__()
        self.fc = FC(in_size, mid_size, dropout_r=dropout_r, use_relu=use_relu)
        self.linear = nn.Linear(mid_size, out_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.fc(x))


class LayerNorm(nn.Module):
    """a_2 * (x - mean) / (std + eps) + b_2 with the unbiased (N-1) std; not ``nn.LayerNorm``."""

    def __init__(self, size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.a_2 = nn.Parameter(torch.ones(size))
        self.b_2 = nn.Parameter(torch.zeros(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)
        std = x.std(-1, keepdim=True)
        return self.a_2 * (x - mean) / (std + self.eps) + self.b_2
