"""Sinusoidal frame-position table (original: TVQA+'s ``PositionEncoding``), a persistent buffer ``pe``."""
from __future__ import annotations

import math

import torch
from torch import nn


class PositionEncoding(nn.Module):
    def __init__(self, n_filters: int = 128, max_len: int = 500) -> None:
        super().__init__()
        pe = torch.zeros(max_len, n_filters)
        position = torch.arange(0, max_len).float().unsqueeze(1)
        div_term = torch.exp(torch.arange(0, n_filters, 2).float() * -(math.log(10000.0) / n_filters))
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe)

    def forward(self, length: int) -> torch.Tensor:
        """The first ``length`` rows, (length, n_filters); like the original, input values play no role."""
        if length > self.pe.size(0):
            raise ValueError(f"{length} frames but the model was built with v_max_len={self.pe.size(0)}")
        return self.pe[:length]
