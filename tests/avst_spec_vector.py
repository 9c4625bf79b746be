"""Seeded weights for AVST's reference vector (they run the original's code on CPU too), shared by the model
tests."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def fill_spec_weights(model: nn.Module) -> nn.Module:
    """Entry j of the state_dict (in order) <- RandomState(j) normals, scaled per tensor kind; eval mode."""
    filled = {}
    for j, (key, value) in enumerate(model.state_dict().items()):
        if key.endswith("num_batches_tracked"):
            filled[key] = value
            continue
        n = np.random.RandomState(j).standard_normal(tuple(value.shape))
        if value.dim() >= 2:
            n = n / np.sqrt(np.prod(value.shape[1:]))
        elif key.endswith("running_var"):
            n = 1 + 0.5 * np.abs(n)
        elif key.endswith("running_mean"):
            n = 0.1 * n
        elif key.rsplit(".", 1)[-1] == "weight":
            n = 1 + 0.1 * n
        else:
            n = 0.1 * n
        filled[key] = torch.from_numpy(n.astype(np.float32))
    model.load_state_dict(filled, strict=True)
    return model.eval()


def normals(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.from_numpy(np.random.RandomState(seed).standard_normal(shape).astype(np.float32))
