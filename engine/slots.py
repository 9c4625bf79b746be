"""Recycled shared-memory batch buffers (in the DataLoader workers) and the thread that copies batches out
of them (in the training process).

Without them a worker writes every batch into fresh shared memory: the worker faults in each page as it
writes, the training process faults them in again when it maps the batch, and both unmap it after one
use; for AVST (4 MB a sample) that was most of the loader's CPU time (``scripts/bench_input.py``). With
slots a worker writes its n-th batch into ring position n mod R of buffers it allocated once, and the
training process keeps the last R batches of every worker referenced, so torch's shared-storage cache
hands back the same mapping when a buffer comes again: pages are faulted once per run.

A buffer is overwritten R batches later. That is safe because :class:`CopiedBatches` copies each batch
out as it arrives (to a CUDA device straight from the buffer, page-locked in place: :class:`DeviceFeed`;
else into host memory) before it takes the next, and the DataLoader dispatches a worker's next index only
after the training process took one of its batches, at most ``prefetch_factor`` in flight per worker:
R = ``prefetch_factor`` + 1.
"""
from __future__ import annotations

import contextlib
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
_active = False


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


@contextlib.contextmanager
def batch() -> Iterator[None]:
    """One batched fetch: the buffers taken inside come from the next ring position. Outside a batch (a
    per-item ``__getitem__``, whose items a collate then copies) :func:`take` gives nothing to recycle."""
    global _batch, _active
    if _rings is not None:
        _batch += 1
        _taken.clear()
    _active = True
    try:
        yield
    finally:
        _active = False


def take(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor | None:
    """This batch's buffer of ``shape`` / ``dtype`` (the k-th asked for of that kind); None without slots
    or outside :func:`batch`."""
    if _rings is None or not _active:
        return None
    kind = (tuple(shape), dtype)
    nth = _taken[kind] = _taken.get(kind, -1) + 1
    key = (*kind, nth, _batch % _size)
    buffer = _rings.get(key)
    if buffer is None:
        buffer = _rings[key] = shared_empty(shape, dtype)
    return buffer


def map_tensors(batch: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    """``fn`` applied to every tensor of a nested dict / list / tuple batch; anything else kept."""
    if isinstance(batch, torch.Tensor):
        return fn(batch)
    if isinstance(batch, dict):
        return {k: map_tensors(v, fn) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        mapped = [map_tensors(v, fn) for v in batch]
        return type(batch)(*mapped) if hasattr(batch, "_fields") else type(batch)(mapped)
    return batch


def _host_copy(t: torch.Tensor) -> torch.Tensor:
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16
        return t.clone()
    return torch.from_numpy(np.empty(t.shape, dtype=t.numpy().dtype)).copy_(t)


def copy_out(batch: Any) -> Any:
    """The batch copied out of its slots into numpy-allocated memory (transparent huge pages: fewer faults)."""
    return map_tensors(batch, _host_copy)


class _CudaRuntime:
    """Page-locks memory in place (``cudaHostRegister``), so the GPU's copy engine reads it directly."""

    @staticmethod
    def register(ptr: int, nbytes: int) -> bool:
        return int(torch.cuda.cudart().cudaHostRegister(ptr, nbytes, 0)) == 0

    @staticmethod
    def unregister(ptr: int) -> None:
        torch.cuda.cudart().cudaHostUnregister(ptr)


class DeviceFeed:
    """Copy-out for a CUDA device: each batch goes to the GPU straight from the workers' shared buffers.

    A shared buffer seen again while still referenced from an earlier batch (``window`` batches are kept)
    is a ring buffer: it is page-locked once where it lies (this process's mapping) and kept until
    :meth:`close`. The copies run on a side stream and the thread waits (without spinning) until they are
    done, so the worker may overwrite the buffer afterwards: one host copy per byte (page cache -> buffer)
    instead of two (-> buffer -> pinned memory). Everything else (a buffer's first batch, tensors not in
    shared memory, a buffer that cannot be page-locked) goes through pinned memory, as
    ``pin_memory=True`` would take it."""

    def __init__(self, device: torch.device, window: int, runtime: Any = None) -> None:
        self.device, self.runtime = torch.device(device), runtime or _CudaRuntime()
        self.locked: dict[int, torch.UntypedStorage] = {}  # kept alive while locked (so never reused)
        self.refused: dict[int, torch.UntypedStorage] = {}
        self.recent: deque[dict[int, torch.UntypedStorage]] = deque(maxlen=window)
        cuda = self.device.type == "cuda"
        self.stream = torch.cuda.Stream(self.device) if cuda else None
        self.done = torch.cuda.Event(blocking=True) if cuda else None

    def _source(self, t: torch.Tensor, seen: dict[int, torch.UntypedStorage]) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if storage.is_shared() and ptr not in self.locked and ptr not in self.refused:
            if any(ptr in batch for batch in self.recent):  # alive since, so the same buffer: a ring's
                table = self.locked if self.runtime.register(ptr, storage.nbytes()) else self.refused
                table[ptr] = storage
            else:
                seen[ptr] = storage
        if ptr in self.locked or self.stream is None:
            return t
        return t.pin_memory()

    def __call__(self, batch: Any) -> Any:
        seen: dict[int, torch.UntypedStorage] = {}
        if self.stream is None:  # a CPU device (tests): the same bookkeeping, the copy a plain one
            out = map_tensors(batch, lambda t: self._source(t, seen).to(self.device, copy=True))
        else:
            with torch.cuda.stream(self.stream):
                out = map_tensors(batch, lambda t: self._source(t, seen).to(self.device, non_blocking=True))
            self.done.record(self.stream)
            self.done.synchronize()  # the bytes are on the GPU: the buffers may be written again
            consumer = torch.cuda.default_stream(self.device)
            map_tensors(out, lambda t: t.record_stream(consumer))  # freed blocks wait for the consumer's work
        self.recent.append(seen)
        return out

    def close(self) -> None:
        """Unlock every buffer (before its memory can be released)."""
        for ptr in self.locked:
            self.runtime.unregister(ptr)
        self.locked.clear()
        self.refused.clear()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: the CUDA runtime may be gone already
            pass


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
