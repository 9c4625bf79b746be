"""``nn.Linear``'s default initialisation, for the layers that keep their weight under other names.

Weight first, then bias, from the same random stream as ``nn.Linear``: the same seed gives the
original's initial weights (``weight_raw`` of the weight-drop layer, ``weight_v`` of weight norm).
"""
from __future__ import annotations

import math

import torch
from torch import nn


def linear_init(in_features: int, out_features: int, bias: bool) -> tuple[torch.Tensor, nn.Parameter | None]:
    """(weight (out, in) tensor, bias Parameter or None), drawn as ``nn.Linear.reset_parameters`` does."""
    weight = torch.empty(out_features, in_features)
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    if not bias:
        return weight, None
    bound = 1 / math.sqrt(in_features)
    return weight, nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))
