"""Model-side helpers for mixed precision and DDP, shared by the faithful models.

* :func:`run_in_fp32`: a module (the question LSTMs) runs in its own precision under any autocast.
  On CUDA, autocast casts cuDNN RNNs to fp16 even under ``--amp bf16``, where no GradScaler runs.
* :func:`freeze_unused`: the faithful models keep modules their forward never calls (so that the
  authors' checkpoints load strictly). Frozen and hidden from DDP, they need no
  ``find_unused_parameters`` graph walk, no gradient all-reduce and no buffer broadcast; the
  state_dict is unchanged.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
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


def build_with_state(factory: Callable[[], nn.Module], state: Mapping[str, torch.Tensor],
                     load: Callable[[nn.Module, dict[str, torch.Tensor], bool], Any]) -> nn.Module:
    """``factory()`` holding ``state``, through ``load(model, state, assign)`` (a strict loader that passes
    ``assign`` to ``load_state_dict``).

    The network is built on the meta device and takes the state's tensors (cast to its own dtypes), so
    the random initialisation a load would overwrite is never computed: on CPU, a large share of the
    time to a first answer. Parameters the state leaves out (keys a loader may skip) get their modules' own
    random initialisation; a network with buffers no state_dict holds, or with a module the state fills
    only in part, is built and loaded the ordinary way instead."""
    with torch.device("meta"):
        model = factory()
    own = model.state_dict()
    state = {k: v.to(own[k].dtype) if k in own and v.dtype != own[k].dtype else v for k, v in state.items()}
    load(model, state, True)
    if any(b.is_meta for b in model.buffers()) or not _initialise_missing(model):
        model = factory()
        load(model, state, False)
    return model


def _initialise_missing(model: nn.Module) -> bool:
    """Give the parameters the state left on the meta device (keys a loader may skip) their modules' own
    random initialisation (``reset_parameters``, from the global RNG); False when a module holding one has
    no such method or also holds loaded tensors (its reset would overwrite them)."""
    for module in model.modules():
        own = list(module.parameters(recurse=False))
        if not any(p.is_meta for p in own):
            continue
        if not all(p.is_meta for p in own) or not hasattr(module, "reset_parameters"):
            return False
        module.to_empty(device="cpu", recurse=False)
        module.reset_parameters()
    return True
