"""Model-side helpers for mixed precision and DDP, shared by the faithful models.

* :func:`run_in_fp32`: a module (the question LSTMs) runs in its own precision under any autocast.
  On CUDA, autocast casts cuDNN RNNs to fp16 even under ``--amp bf16``, where no GradScaler runs.
* :func:`freeze_unused`: the faithful models keep modules their forward never calls (so that the
  authors' checkpoints load strictly). Frozen and hidden from DDP, they need no
  ``find_unused_parameters`` graph walk, no gradient all-reduce and no buffer broadcast; the
  state_dict is unchanged.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence


def run_in_fp32(module: nn.Module, *inputs: Any) -> Any:
    """``module(*inputs)`` with autocast off and floating inputs cast to the module's own dtype."""
    dtype = next(module.parameters()).dtype

    def cast(x: Any) -> Any:
        if isinstance(x, PackedSequence):
            return x.to(dtype=dtype) if x.data.is_floating_point() else x
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            return x.to(dtype)
        return x

    device = next(module.parameters()).device.type
    with torch.autocast(device, enabled=False):
        return module(*(cast(x) for x in inputs))


def freeze_unused(model: nn.Module, names: Iterable[str]) -> None:
    """``requires_grad_(False)`` on the submodules ``names`` of ``model`` (dotted paths), and have DDP
    skip their parameters and buffers (no initial sync, no gradient bucket, no buffer broadcast)."""
    ignored: list[str] = list(getattr(model, "_ddp_params_and_buffers_to_ignore", []))
    for name in names:
        module = model.get_submodule(name).requires_grad_(False)
        ignored += [f"{name}.{k}" for k, _ in (*module.named_parameters(), *module.named_buffers())]
    nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, ignored)
