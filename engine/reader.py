"""The ``reader`` input pipeline: threads of this process read batches into a small ring of reused buffers.

No worker processes: a batch is read by one thread straight into the buffers of one ring slot (the
datasets' batched fetch asks :func:`engine.batching.batch_empty` for its tensors, which hands out the
slot's), and the reads are page-cache copies (``os.preadv``) that release the GIL, so the threads run in
parallel. On CUDA the buffers are page-locked (``torch.empty(..., pin_memory=True)``) and each batch goes to
the device from there on a side stream: one host copy per byte (page cache -> pinned buffer), where the
``loader`` pipeline makes two (page cache -> a worker's shared memory -> pinned memory).

A slot is written again only when nothing reads it any more, which two things guarantee:

* the consumer gives a slot back when it asks for the next batch (its step with this batch is done, on
  the CPU, or issued, on CUDA);
* every slot has a :class:`Fence` that a reader thread waits on before it writes the slot: on CUDA an
  event recorded after the batch's copy to the device (:class:`CudaFence`), on the CPU nothing to wait
  for (:class:`HostFence`: the step that read the buffers has returned).

Batches come out in the sampler's order whatever thread read them. Pinned memory held: the ring's
``threads + 2`` slots, each one batch (e.g. 18 x 129 MB for AVST float16 at batch 32 with 16 threads).
A dataset without ``__getitems__`` is read item by item and collated into fresh tensors (nothing reused).
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

import torch

from engine.batching import reading_into

INPUTS = ("loader", "reader")  # --input: torch's DataLoader, or this module's ThreadedReader


class Fence(Protocol):
    """Orders the consumer's reads of a slot's buffers before the next write of them."""

    def record(self) -> None:
        """Called by the consumer once it has issued every read of the slot's buffers."""

    def wait(self) -> None:
        """Called by a reader thread before it writes the slot again; returns when those reads are done."""


class HostFence:
    """CPU: the consumer reads the buffers in its step, which has returned when the slot comes back."""

    def record(self) -> None:
        pass

    def wait(self) -> None:
        pass


class CudaFence:
    """CUDA: an event recorded on ``stream`` after the batch's copies to the device."""

    def __init__(self, stream: torch.cuda.Stream) -> None:
        self.stream, self.event = stream, torch.cuda.Event(blocking=True)

    def record(self) -> None:
        self.event.record(self.stream)

    def wait(self) -> None:
        self.event.synchronize()


class Slot:
    """One batch's buffers, allocated on first use and reused: the ``n``-th tensor of a shape and dtype
    asked for in a batch is the same one every time."""

    def __init__(self, fence: Fence, pin: bool) -> None:
        self.fence, self.pin = fence, pin
        self.buffers: dict[tuple, torch.Tensor] = {}
        self.taken: dict[tuple, int] = {}

    def start(self) -> None:
        self.taken.clear()

    def take(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        kind = (tuple(shape), dtype)
        nth = self.taken[kind] = self.taken.get(kind, -1) + 1
        buffer = self.buffers.get((*kind, nth))
        if buffer is None:
            buffer = self.buffers[(*kind, nth)] = torch.empty(shape, dtype=dtype, pin_memory=self.pin)
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


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class ThreadedReader:
    """Iterates the batches of ``indices()`` (read again for every pass: a sampler the caller resets),
    ``batch_size`` at a time, each read by ``fetch`` (a list of indices -> a collated batch) in one of
    ``threads`` threads into a ring slot, and handed over on ``device`` (CUDA: copied there on a side
    stream; CPU: the slot's tensors themselves, valid until the next batch is asked for).

    ``fence`` makes each slot's fence (default: :class:`CudaFence` on CUDA, :class:`HostFence` else) and
    ``ring`` sets the number of slots (default ``threads + 2``); tests replace both.
    """

    def __init__(self, fetch: Callable[[list], Any], indices: Callable[[], Iterable], batch_size: int, *,
                 threads: int, device: torch.device, ring: int | None = None,
                 fence: Callable[[], Fence] | None = None) -> None:
        if threads < 1 or batch_size < 1:
            raise ValueError("threads and batch_size must be >= 1")
        self.fetch, self.indices, self.batch_size = fetch, indices, batch_size
        self.threads, self.device = threads, torch.device(device)
        cuda = self.device.type == "cuda"
        self.stream = torch.cuda.Stream(self.device) if cuda else None
        make = fence or ((lambda: CudaFence(self.stream)) if cuda else HostFence)
        self.slots = [Slot(make(), pin=cuda) for _ in range(ring or threads + 2)]

    def _chunks(self) -> list[list]:
        order = list(self.indices())
        return [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def __len__(self) -> int:
        return len(self._chunks())

    def _hand_over(self, slot: Slot, batch: Any) -> Any:
        """The batch as the consumer gets it; the slot's fence recorded after the last read of its buffers."""
        if self.stream is None:
            slot.fence.record()
            return batch
        consumer = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self.stream):
            moved = map_tensors(batch, lambda t: t.to(self.device, non_blocking=True))
        slot.fence.record()
        consumer.wait_stream(self.stream)
        map_tensors(moved, lambda t: t.record_stream(consumer))
        return moved

    def __iter__(self) -> Iterator[Any]:
        chunks = self._chunks()
        free: queue.Queue = queue.Queue()
        for slot in self.slots:
            free.put(slot)
        ready: dict[int, tuple[Slot, Any]] = {}
        arrived = threading.Condition()
        stop = threading.Event()
        claimed = [0]

        def work() -> None:
            if self.stream is not None:  # pinned allocations in this thread: this GPU's context, not GPU 0's
                torch.cuda.set_device(self.device)
            while True:
                slot = free.get()
                if slot is None or stop.is_set():
                    return
                with arrived:
                    k = claimed[0]
                    claimed[0] += 1
                if k >= len(chunks):
                    free.put(slot)
                    return
                slot.fence.wait()
                try:
                    with reading_into(slot):
                        result: Any = self.fetch(chunks[k])
                except BaseException as err:  # handed to the consumer, raised there
                    result = _Failed(err)
                with arrived:
                    ready[k] = (slot, result)
                    arrived.notify_all()

        workers = [threading.Thread(target=work, name=f"reader-{n}", daemon=True)
                   for n in range(min(self.threads, len(chunks)))]
        for thread in workers:
            thread.start()
        try:
            for k in range(len(chunks)):
                with arrived:
                    arrived.wait_for(lambda k=k: k in ready)
                    slot, result = ready.pop(k)
                if isinstance(result, _Failed):
                    raise result.error
                yield self._hand_over(slot, result)
                free.put(slot)  # the consumer is back: done with (CPU) or past issuing (CUDA) this batch
        finally:
            stop.set()
            for _ in workers:
                free.put(None)
            for thread in workers:
                thread.join()


def batch_fetch(dataset: Any, collate: Callable[[Sequence], Any]) -> Callable[[list], Any]:
    """What a DataLoader does for one batch: the dataset's ``__getitems__`` when it has one, else its items,
    then ``collate``."""
    many = getattr(dataset, "__getitems__", None)
    if many is not None:
        return lambda indices: collate(many(indices))
    return lambda indices: collate([dataset[i] for i in indices])
