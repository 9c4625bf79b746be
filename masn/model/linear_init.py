"""``nn.Linear``'s default initialisation and attributes, for the layers that keep their weight under other names.

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


def init_linear(module: nn.Module, in_features: int, out_features: int, bias: bool) -> torch.Tensor:
    """Give ``module`` nn.Linear's ``in_features``/``out_features`` and its ``bias`` Parameter (registered
    first: the originals' key order, once their weight is re-registered) and return the initial weight,
    which the caller stores under its own name(s)."""
    module.in_features, module.out_features = in_features, out_features
    weight, bias_param = linear_init(in_features, out_features, bias)
    module.register_parameter("bias", bias_param)
    return weight


def linear_repr(module: nn.Module, **extra: object) -> str:
    """nn.Linear's ``extra_repr`` followed by ``extra`` (``name=value``)."""
    return ", ".join([f"in_features={module.in_features}", f"out_features={module.out_features}",
                      f"bias={module.bias is not None}", *(f"{k}={v}" for k, v in extra.items())])
