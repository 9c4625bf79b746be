"""DropConnect linear layer whose weight is stored as ``weight_raw`` (original: HGA's ``WeightDropLinear``).

The original deletes ``weight``, registers ``weight_raw`` and, on every call, wraps
``dropout(weight_raw)`` in a fresh ``nn.Parameter``. That detaches it, so ``weight_raw`` never
receives a gradient and the layer stays at its random initialisation. We keep the numbers
(DropConnect in training, no gradient ever) without the transient parameter, and accept the
``<prefix>weight`` key that the original's state_dict gains after its first forward pass.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from masn.model.linear_init import init_linear, linear_repr


class WeightDropLinear(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 weight_dropout: float = 0.0) -> None:
        super().__init__()
        self.weight_dropout = weight_dropout
        weight = init_linear(self, in_features, out_features, bias)
        # nn.Linear registers bias after weight; the original then re-registers weight as weight_raw.
        # Frozen as it is in the original, where no gradient reaches it; DDP then leaves it out of its buckets.
        self.weight_raw = nn.Parameter(weight, requires_grad=False)
        self.register_load_state_dict_pre_hook(_accept_transient_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # detach(), not no_grad(): dropout with p=0 (or in eval) returns its input, the Parameter itself.
        weight = F.dropout(self.weight_raw.detach(), self.weight_dropout, self.training)
        return F.linear(x, weight, self.bias)

    def extra_repr(self) -> str:
        return linear_repr(self, weight_dropout=self.weight_dropout)


def _accept_transient_weight(module, state_dict, prefix, local_metadata, strict, missing_keys,
                             unexpected_keys, error_msgs) -> None:
    """Drop the original's transient ``weight`` key, which must equal ``weight_raw`` (saved in eval)."""
    weight = state_dict.pop(prefix + "weight", None)
    if weight is None:
        return
    raw = state_dict.get(prefix + "weight_raw")
    if raw is None or weight.shape != raw.shape or not torch.equal(weight, raw):
        error_msgs.append(f"{prefix}weight differs from {prefix}weight_raw: the checkpoint was saved after "
                          "a training-mode forward pass (DropConnect applied), use its weight_raw only")
