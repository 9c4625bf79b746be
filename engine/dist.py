"""torchrun / DistributedDataParallel plumbing; every helper is a no-op in a single process."""
from __future__ import annotations

import atexit
import datetime
import os
from typing import Any

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def launched_by_torchrun() -> bool:
    """True when the environment describes more than one process (torchrun's WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


TIMEOUT_ENV = "AVQA_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 1800


def init_distributed(device: torch.device) -> None:
    """Join the process group that torchrun describes in the environment (gloo on CPU, nccl on GPU).

    A rank that waits longer than ``$AVQA_DIST_TIMEOUT_S`` seconds (default 30 min) for the others
    fails instead of hanging; the group is destroyed when the process exits.
    """
    if not launched_by_torchrun() or dist.is_initialized():
        return
    timeout = datetime.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl", timeout=timeout, device_id=device)
    else:
        dist.init_process_group(backend="gloo", timeout=timeout)
    atexit.register(shutdown)


def shutdown() -> None:
    """Leave the process group (idempotent)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (a one-element list without DDP)."""
    if world_size() == 1:
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def mean_over_ranks(value: float, device: torch.device) -> float:
    if world_size() == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.item() / world_size()


def min_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The element-wise minimum of ``value`` over ranks (``value`` itself without DDP)."""
    if world_size() == 1:
        return value
    value = value.clone()
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return value
