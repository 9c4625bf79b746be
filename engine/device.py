"""Device and precision: one place that turns ``--device`` and ``--amp`` into torch objects."""
from __future__ import annotations

import contextlib
import os

import torch

from engine import dist
from engine.errors import UserError

AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    ``cuda`` without an index means this process's GPU: ``LOCAL_RANK`` under torchrun, else GPU 0.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name != "cpu" and name != "cuda" and not name.startswith("cuda:"):
        raise UserError(f"--device {name}: unknown device; use auto, cpu, cuda or cuda:N")
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError(f"--device {name}: torch sees no CUDA device; use --device cpu")
    device = torch.device(name)
    if device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if device.index >= torch.cuda.device_count():
        raise UserError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return device


def training_device(name: str = "auto") -> torch.device:
    """:func:`resolve_device`, then join the process group torchrun describes (a no-op otherwise),
    so that everything made afterwards (the run folder first) knows its rank."""
    device = resolve_device(name)
    dist.init_distributed(device)
    return device


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """``--amp off|bf16|fp16`` as an autocast context on ``device`` (a no-op for ``off``)."""
    if amp not in AMP_DTYPES:
        raise UserError(f"--amp {amp}: use off, bf16 or fp16")
    dtype = AMP_DTYPES[amp]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
