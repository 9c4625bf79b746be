"""Recycled shared-memory batch buffers (in the DataLoader workers) and the thread that copies batches out
of them (in the training process).

Without them a worker writes every batch into fresh shared memory: the worker faults in each page as it
writes, the training process faults them in again when it maps the batch, and both unmap it after one
use; for AVST (4 MB a sample) that was most of the loader's CPU time (``scripts/bench_input.py``). With
slots a worker writes its n-th batch into ring position n mod R of buffers it allocated once, and the
training process keeps the last R batches of every worker referenced, so torch's shared-storage cache
hands back the same mapping when a buffer comes again: pages are faulted once per run.

A buffer is overwritten R batches later. That is safe because :class:`CopiedBatches` copies each batch
out as it arrives (into pinned memory when the device is CUDA: the copy that ``pin_memory=True`` makes
anyway) and the DataLoader dispatches a worker's next index only after the training process took one of
its batches, at most ``prefetch_factor`` in flight per worker: R = ``prefetch_factor`` + 1.
"""
from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

_rings: dict | None = None  # in a worker with slots: (shape, dtype, nth buffer of the batch, ring position) -> tensor
_size = 0
_batch = -1
_taken: dict = {}


def shared_empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised tensor in shared memory (what ``default_collate`` allocates inside a worker)."""
    proto = torch.empty(0, dtype=dtype)
    storage = proto._typed_storage()._new_shared(int(np.prod(shape)), device=proto.device)
    return proto.new(storage).view(shape)


def recycle(slots: int) -> None:
    """In a DataLoader worker: from now on batch buffers come from rings of ``slots`` positions."""
    global _rings, _size, _batch
    if slots < 1:
        raise ValueError("slots must be >= 1")
    _rings, _size, _batch = {}, slots, -1
    _taken.clear()


def next_batch() -> None:
    """A new batch starts: the buffers it takes come from the next ring position."""
    global _batch
    if _rings is not None:
        _batch += 1
        _taken.clear()


def take(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor | None:
    """This batch's buffer of ``shape`` / ``dtype`` (the k-th asked for of that kind), None without slots."""
    if _rings is None:
        return None
    kind = (tuple(shape), dtype)
    nth = _taken[kind] = _taken.get(kind, -1) + 1
    key = (*kind, nth, _batch % _size)
    buffer = _rings.get(key)
    if buffer is None:
        buffer = _rings[key] = shared_empty(shape, dtype)
    return buffer


def copy_out(batch: Any, device: torch.device) -> Any:
    """The batch copied out of its slots: pinned for a CUDA device (from torch's caching host allocator, as the
    DataLoader's pinning), else into numpy-allocated memory (transparent huge pages: fewer page faults)."""
    if isinstance(batch, torch.Tensor):
        if device.type == "cuda":
            return batch.pin_memory()
        if batch.dtype == torch.bfloat16:  # numpy has no bfloat16
            return batch.clone()
        out = torch.from_numpy(np.empty(batch.shape, dtype=torch.empty(0, dtype=batch.dtype).numpy().dtype))
        return out.copy_(batch)
    if isinstance(batch, dict):
        return {k: copy_out(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(copy_out(v, device) for v in batch)
    return batch


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


class CopiedBatches:
    """Iterates ``loader`` (whose workers use slots of ``slots`` positions) through a thread that copies each
    batch out (``copy``) as it arrives, keeping the last ``slots`` x workers batches referenced so their
    shared mappings stay; ``depth`` copied batches wait for the consumer."""

    def __init__(self, loader: torch.utils.data.DataLoader, slots: int,
                 copy: Callable[[Any], Any], depth: int = 2) -> None:
        self.loader, self.copy, self.depth = loader, copy, depth
        self.held: deque = deque(maxlen=slots * max(1, loader.num_workers))

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        ready: queue.Queue = queue.Queue(maxsize=self.depth)
        stop = threading.Event()
        batches = iter(self.loader)

        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def run() -> None:
            try:
                for batch in batches:
                    self.held.append(batch)
                    if not put(self.copy(batch)):
                        return
                put(_END)
            except BaseException as err:  # handed to the consumer, raised there
                put(_Failed(err))

        thread = threading.Thread(target=run, name="copy-out", daemon=True)
        thread.start()
        try:
            while True:
                item = ready.get()
                if item is _END:
                    return
                if isinstance(item, _Failed):
                    raise item.error
                yield item
        finally:
            stop.set()
            thread.join()
