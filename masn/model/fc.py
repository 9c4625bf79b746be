"""``FCNet`` from ban-vqa: [Dropout] -> weight-normed Linear (scalar norm) -> [activation], per layer."""
from __future__ import annotations

import torch
from torch import nn

from masn.model.weight_norm import WeightNormLinear


class FCNet(nn.Module):
    def __init__(self, dims: list[int], act: str = "ReLU", dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for in_dim, out_dim in zip(dims[:-1], dims[1:]):
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            layers.append(WeightNormLinear(in_dim, out_dim, dim=None))
            if act:
                layers.append(getattr(nn, act)())
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)
