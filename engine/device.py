"""Device choice: one place that turns ``--device`` into a torch.device."""
from __future__ import annotations

import os

import torch

from engine import dist


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available; under torchrun each rank takes its LOCAL_RANK GPU and joins
    the process group here, so that everything made afterwards (the run folder first) knows its rank."""
    if name not in ("auto", "cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}: use auto, cpu or cuda")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but torch sees no CUDA device")
    else:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_distributed(device)
    return device
