"""Durable writes off the model loop: one thread runs the store's writes, in the order given.

A store's ``write`` fsyncs and renames (and appends to the ledger first), which can take
milliseconds per video on a network filesystem; done in the loop that feeds the model, the device
waits on the disk. ``BackgroundWriter`` runs every write, unchanged, in one thread behind a short
queue. The promise does not move: each write is still atomic and ledgered before its rename, so a
kill loses at most the videos still queued, which the next run redoes (they are not in the output,
so resuming does them again). A write error (disk full) stops the writing and is raised in the
caller's thread at its next ``submit`` or at the end; on leaving the ``with`` block every video
already submitted is written, even when the loop itself failed.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

_STOP = object()


class BackgroundWriter:
    """``submit(*args)`` queues ``write(*args)``; ``write`` returns True (written) or False (failed,
    already recorded), counted in ``written`` and ``failed``."""

    def __init__(self, write: Callable[..., bool], depth: int = 4) -> None:
        self.write = write
        self.written = self.failed = 0
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="feature-writer", daemon=True)

    def __enter__(self) -> BackgroundWriter:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._queue.put(_STOP)
        self._thread.join()
        if kind is None:
            self._raise()

    def submit(self, *args: Any) -> None:
        self._raise()
        self._queue.put(args)

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while (args := self._queue.get()) is not _STOP:
            if self._error is not None:
                continue  # keep draining so that submit never blocks on a dead writer
            try:
                if self.write(*args):
                    self.written += 1
                else:
                    self.failed += 1
            except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
                self._error = err
