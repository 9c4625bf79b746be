"""Batches read whole by a Dataset's ``__getitems__``, and the collate that passes them through.

torch's DataLoader hands a whole batch's index list to ``Dataset.__getitems__`` when the dataset has one,
then collates what it returns. A dataset that reads every row of a batch in one pass, straight into one
tensor per field, returns a :class:`ReadBatch`: the engine's :func:`collate` passes its batch through as
it is (no per-sample tensors, no ``torch.stack`` copy), while any other collate sees the per-sample
items (views into the batch) and collates them as before. The batch tensors come from
:func:`batch_empty`: fresh ones (in shared memory inside a DataLoader worker), or, inside
:func:`reading_into`, the reused buffers of the ``reader`` pipeline (:mod:`engine.reader`).
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import default_collate, get_worker_info

_target = threading.local()  # this thread's buffers while it reads a batch for the reader pipeline


class ReadBatch(Sequence):
    """A collated batch (tensors with the batch first, in dicts / lists) that also reads as its ``size`` items."""

    def __init__(self, batch: Any, size: int) -> None:
        self.batch, self.size = batch, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> Any:
        if not -self.size <= i < self.size:
            raise IndexError(i)
        return _item(self.batch, i)

    def __iter__(self) -> Iterator[Any]:
        return (self[i] for i in range(self.size))


def _item(batch: Any, i: int) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch[i]
    if isinstance(batch, dict):
        return {k: _item(v, i) for k, v in batch.items()}
    return tuple(_item(v, i) for v in batch)


def collate(items: Sequence) -> Any:
    """The engine's collate: a :class:`ReadBatch` as it is, anything else through ``default_collate``."""
    return items.batch if isinstance(items, ReadBatch) else default_collate(items)


class Buffers(Protocol):
    """Where a batch's tensors come from while a thread reads it (:class:`engine.reader.Slot`)."""

    def start(self) -> None:
        """A new batch: hand out the buffers from the first again."""

    def take(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """The batch's next buffer of ``shape`` and ``dtype``."""


@contextlib.contextmanager
def reading_into(buffers: Buffers) -> Iterator[None]:
    """In this thread, :func:`batch_empty` hands out ``buffers``' tensors until the block ends."""
    buffers.start()
    _target.buffers = buffers
    try:
        yield
    finally:
        _target.buffers = None


def batch_empty(shape: tuple[int, ...], dtype: np.dtype | torch.dtype) -> torch.Tensor:
    """An uninitialised batch tensor: from the buffers of :func:`reading_into` inside one; else a fresh one,
    in a DataLoader worker moved to shared memory before it is written (sending it then copies nothing;
    moved when sent, it would be copied after the read: 20 % more CPU per AVST sample)."""
    dtype = dtype if isinstance(dtype, torch.dtype) else torch.from_numpy(np.empty(0, dtype)).dtype
    buffers = getattr(_target, "buffers", None)
    if buffers is not None:
        return buffers.take(shape, dtype)
    out = torch.empty(shape, dtype=dtype)
    return out.share_memory_() if get_worker_info() is not None else out


def byte_rows(out: np.ndarray) -> np.ndarray:
    """``out`` as one row of bytes per first-axis entry, sharing its memory: ``os.preadv`` into a row lands
    in ``out`` itself (refused for a non-contiguous ``out``, where reshaping would copy)."""
    if not out.flags.c_contiguous:
        raise ValueError("reads need a C-contiguous buffer")
    return out.reshape(len(out), -1).view(np.uint8)


def nonfinite_rows(rows: np.ndarray) -> np.ndarray:
    """Which rows (first dimension) of a float array hold NaN or inf, as a bool array.

    A float is NaN or inf when its exponent bits are all ones: read as a signed integer a positive one is
    >= the exponent mask, read as an unsigned integer a negative one is >= sign bit | mask. Two read-only
    max passes over the bits, no temporaries (float16 arithmetic in numpy and torch is much slower).
    """
    flat = rows.reshape(len(rows), -1)
    size = flat.dtype.itemsize
    mask = {2: 0x7C00, 4: 0x7F800000, 8: 0x7FF0000000000000}[size]
    positive = flat.view(f"i{size}").max(axis=1) >= mask
    return positive | (flat.view(f"u{size}").max(axis=1) >= (1 << (8 * size - 1)) | mask)
