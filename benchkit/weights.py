"""Weight perturbation: parity on freshly initialised weights would miss any term whose weights start
at a trivial value (LayerNorm gains at 1, biases and BatchNorm means at 0, weight-norm gains at the norm),
so every float tensor is moved by a multiple of its own spread."""
from __future__ import annotations

import torch


def perturb(model: torch.nn.Module, generator: torch.Generator, *, relative: float = 1.0, floor: float = 0.3,
            buffers: bool = False) -> torch.nn.Module:
    """Add ``relative`` x spread x N(0, 1) to every float parameter (and buffer, with ``buffers``), in place.

    The spread is the tensor's standard deviation, ``floor`` x |value| for a single number, and ``floor``
    where that is 0 (a constant tensor). The noise is drawn in the tensor's dtype. Returns ``model``.
    """
    tensors = model.state_dict().values() if buffers else model.parameters()
    with torch.no_grad():
        for t in tensors:
            if not t.is_floating_point():
                continue
            spread = t.std().item() if t.numel() > 1 else floor * t.abs()
            step = relative * (spread if spread > 0 else floor)
            t.add_(torch.randn(t.shape, generator=generator, dtype=t.dtype) * step)
    return model
