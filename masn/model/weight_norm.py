"""Linear layer with the pre-parametrization weight-norm names ``weight_g`` / ``weight_v``.

``torch.nn.utils.parametrizations.weight_norm`` would rename the keys, and the legacy hook is
deprecated, so the decomposition W = g * v / ||v|| is written out here (dim=0: one norm per
output row; dim=None: one scalar norm over the whole matrix).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from masn.model.linear_init import init_linear, linear_repr


def weight_norm(v: torch.Tensor, g: torch.Tensor, dim: int | None) -> torch.Tensor:
    if dim is None:
        return v * (g / v.norm())
    if dim != 0:
        raise ValueError("only dim=0 and dim=None are used by MASN")
    return v * (g / v.flatten(1).norm(dim=1).view(-1, *([1] * (v.dim() - 1))))


class WeightNormLinear(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, dim: int | None = 0) -> None:
        super().__init__()
        self.dim = dim
        v = init_linear(self, in_features, out_features, bias)
        g = v.norm() if dim is None else v.norm(dim=1, keepdim=True)
        self.weight_g = nn.Parameter(g.clone())
        self.weight_v = nn.Parameter(v)

    @property
    def weight(self) -> torch.Tensor:
        return weight_norm(self.weight_v, self.weight_g, self.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return linear_repr(self, dim=self.dim)
