"""Forward passes filled with rows of consecutive videos, the outputs split back per video, in order.

One forward per video would leave a GPU mostly idle on short videos (MASN's GIFs give 20 rows):
``RowBatcher`` fills each forward with ``batch_size`` rows taken from as many consecutive videos as
it needs, keeps every video's outputs on the device, and hands a video back only once all its rows
are through the model. Each video then costs one copy to the host, started asynchronously (into
pinned memory on CUDA) and collected only after the next forward is queued, so the host does not
wait for the device between forwards. Rows are copied to the device piece by piece (pinned pieces
stay asynchronous), never concatenated on the host.

Bounded memory for any video length: given a ``spill`` folder, a video whose held outputs pass
``spill_bytes`` (a long video: 1-fps 14x14 rows are 401 KB, four hours 5.8 GB) has them moved to the
host and appended to a temporary file there, block after block; it is handed back as a
``feat_script.streams.Spill``, which the stores write block by block. Short videos never spill.
"""
from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from feat_script.stores import temp_name
from feat_script.streams import BLOCK_BYTES, Spill

SPILL_BYTES = BLOCK_BYTES  # outputs one video may hold before they go to its spill file


@dataclass(eq=False)
class _Video:
    key: Hashable
    outputs: list[torch.Tensor] = field(default_factory=list)
    queued: int = 0  # rows waiting in the next batch
    rows: int = 0
    loaded: bool = False
    spill: Spill | None = None


@dataclass
class _Copy:
    key: Hashable
    host: torch.Tensor | Spill
    event: torch.cuda.Event | None
    forwards: int  # forwards queued when the copy was started


class NoRows(ValueError):
    """A video that gave no rows at all."""


class RowBatcher:
    """``add(key, blocks)`` queues a video's rows; ``add`` and ``finish`` return ``(key, outputs)`` of
    the videos completed so far, in the order they were added (outputs: numpy, float32, or a
    ``Spill`` with ``spill``; the caller ``discard()``s it once written)."""

    _names = itertools.count()

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], batch_size: int,
                 device: torch.device, spill: Path | None = None, spill_bytes: int | None = None) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.forward = forward
        self.batch_size = batch_size
        self.device = device
        self.spill = spill
        self.spill_bytes = SPILL_BYTES if spill_bytes is None else spill_bytes
        self.forwards = 0
        self._pieces: list[torch.Tensor] = []
        self._owners: list[tuple[_Video, int]] = []
        self._count = 0
        self._open: deque[_Video] = deque()
        self._copies: deque[_Copy] = deque()

    def add(self, key: Hashable, blocks: Iterable[torch.Tensor | np.ndarray] | torch.Tensor | np.ndarray,
            ) -> list[tuple[Hashable, np.ndarray]]:
        """Queue every row of one video (a tensor, an array, or an iterable of blocks of rows).

        An exception while iterating ``blocks`` (a stream that fails to decode) drops this video's
        rows and outputs and propagates; the other videos are unaffected. A video without rows
        raises ``NoRows``."""
        video = _Video(key)
        self._open.append(video)
        try:
            for block in [blocks] if isinstance(blocks, (torch.Tensor, np.ndarray)) else blocks:
                self._queue(video, torch.as_tensor(block))
            if not video.rows:
                raise NoRows(f"{key}: no rows")
        except BaseException:
            self._drop(video)
            raise
        video.loaded = True
        self._complete()
        return self._collect(final=False)

    def finish(self) -> list[tuple[Hashable, np.ndarray]]:
        """Run the last, partial batch and return every video not yet returned."""
        if self._count:
            self._flush()
        self._complete()
        return self._collect(final=True)

    def _queue(self, video: _Video, block: torch.Tensor) -> None:
        while len(block):
            take = block[: self.batch_size - self._count]
            self._pieces.append(take)
            self._owners.append((video, len(take)))
            video.queued += len(take)
            video.rows += len(take)
            self._count += len(take)
            block = block[len(take):]
            if self._count == self.batch_size:
                self._flush()
                self._complete()

    def _flush(self) -> None:
        pieces = [p.to(self.device, non_blocking=True) for p in self._pieces]
        out = self.forward(pieces[0] if len(pieces) == 1 else torch.cat(pieces))
        self.forwards += 1
        for (video, rows), part in zip(self._owners, out.split([n for _, n in self._owners])):
            video.outputs.append(part)
            video.queued -= rows
            if self.spill is not None and sum(o.nbytes for o in video.outputs) > self.spill_bytes:
                self._spill(video)
        self._pieces, self._owners, self._count = [], [], 0

    def _spill(self, video: _Video) -> None:
        """Append the video's held outputs to its spill file (a temporary name the stores' stale-
        temporary cleanup removes after a kill)."""
        for out in video.outputs:
            host = out.cpu().numpy()
            if video.spill is None:
                video.spill = Spill(temp_name(self.spill / f"spill{next(self._names)}"), host.shape[1:], host.dtype)
            video.spill.append(host)
        video.outputs = []

    def _drop(self, video: _Video) -> None:
        """Remove the video being added (the last one): its queued rows are the batch's tail."""
        while self._owners and self._owners[-1][0] is video:
            self._owners.pop()
            self._count -= len(self._pieces.pop())
        self._open.remove(video)
        if video.spill is not None:
            video.spill.discard()

    def _complete(self) -> None:
        """Start the host copy of every leading video whose rows have all been through the model."""
        while self._open and self._open[0].loaded and not self._open[0].queued:
            video = self._open.popleft()
            if video.spill is not None:
                if video.outputs:
                    self._spill(video)
                self._copies.append(_Copy(video.key, video.spill, None, self.forwards))
                continue
            out = video.outputs[0] if len(video.outputs) == 1 else torch.cat(video.outputs)
            event = None
            if out.device.type == "cuda":
                host = torch.empty(out.shape, dtype=out.dtype, pin_memory=True)
                host.copy_(out, non_blocking=True)
                event = torch.cuda.Event()
                event.record()
            else:
                host = out
            self._copies.append(_Copy(video.key, host, event, self.forwards))

    def _collect(self, final: bool) -> list[tuple[Hashable, np.ndarray]]:
        """Copies started before the latest forward was queued (all of them when ``final``)."""
        done = []
        while self._copies and (final or self._copies[0].forwards < self.forwards):
            copy = self._copies.popleft()
            if copy.event is not None:
                copy.event.synchronize()
            done.append((copy.key, copy.host if isinstance(copy.host, Spill) else copy.host.numpy()))
        return done
