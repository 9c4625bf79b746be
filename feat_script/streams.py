"""Bounded memory for any video length: rows of long videos are produced block by block.

A decoding worker hands the pipeline either an array (videos up to ``LONG_VIDEO_SECONDS``, decoded
in the worker as before) or, for longer ones, a ``RowStream``: a small picklable recipe whose
iteration runs ffmpeg and yields blocks of rows in the process that consumes them (the model
loop, or the store that writes frames and WAVs). Memory then holds one block, not the video. The
blocks are the same rows in the same order, and the model sees the same ``--batch-size`` chunks
(``feat_script.batching`` cuts chunks from rows, whatever the blocks), so outputs do not depend on
which form a video took.
"""
from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from feat_script.decode import probe, read_frames, stream_frames

LONG_VIDEO_SECONDS = 120.0
FRAME_BLOCK = 16
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number

@dataclass(frozen=True)
class RowStream:
    """Rows of one video, produced when iterated: ``produce()`` yields arrays of rows."""

    produce: Callable[[], Iterator[np.ndarray]]

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.produce())


def bound_heap_growth() -> None:
    """Fix glibc's mmap threshold at 1 MiB for this process (and the workers it forks).

    By default glibc raises the threshold each time a large block is freed; the large short-lived
    arrays of a stream (decoded blocks, log-mel windows, activations) then come from the heap and
    fragment it, and the resident size grows with the video's length (measured: +60 % on a 4-hour
    video). With a fixed threshold they are returned to the system when freed. No-op off glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(M_MMAP_THRESHOLD, 1 << 20)


def is_long(video) -> bool:
    return probe(video).duration > LONG_VIDEO_SECONDS


def _one_fps_blocks(video, prepare: Callable[[np.ndarray], np.ndarray] | None) -> Iterator[np.ndarray]:
    for frames in stream_frames(video, rate=1, block=FRAME_BLOCK):
        yield frames if prepare is None else prepare(frames)


def one_fps(video, prepare: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray | RowStream:
    """``prepare(read_frames(video, rate=1))``, as an array, or as a RowStream for long videos
    (``prepare`` works frame by frame and must be picklable: a module function or a partial)."""
    if is_long(video):
        return RowStream(functools.partial(_one_fps_blocks, video, prepare))
    frames = read_frames(video, rate=1)
    return frames if prepare is None else prepare(frames)


def iter_blocks(rows: np.ndarray | Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """An array as one block, a stream as its blocks."""
    if isinstance(rows, np.ndarray):
        yield rows
    else:
        yield from rows


def iter_rows(rows: np.ndarray | Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    for block in iter_blocks(rows):
        yield from block
