"""Device choice: one place that turns ``--device`` into a torch.device."""
from __future__ import annotations

import os

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available; under torchrun each rank takes its LOCAL_RANK GPU."""
    if name not in ("auto", "cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}: use auto, cpu or cuda")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but torch sees no CUDA device")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
