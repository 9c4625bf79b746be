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
from pathlib import Path

import numpy as np

from feat_script.decode import VideoInfo, probe, read_frames, stream_frames, stream_frames_at

LONG_VIDEO_SECONDS = 120.0
FRAME_BLOCK = 16
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
Prepare = Callable[[np.ndarray], np.ndarray]

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


def iter_clips(video, indices: np.ndarray, *, info: VideoInfo | None = None) -> Iterator[np.ndarray]:
    """uint8 clips ``[1, L, H, W, 3]`` of the frames at ``indices`` ``[T, L]`` (0-based, clamped, any
    order), one clip at a time: ``read_frames(video, indices=indices.ravel()).reshape(T, L, H, W, 3)``
    without holding the video. Frames are decoded once, in order; a frame is kept from its decoding
    until the last clip that uses it is out, so memory holds the frames of the clips in progress."""
    indices = np.asarray(indices, np.int64)
    unique, pos = np.unique(indices, return_inverse=True)
    pos = pos.reshape(indices.shape)
    last_use = np.zeros(len(unique), np.int64)
    np.maximum.at(last_use, pos, np.arange(len(indices))[:, None])
    ready = pos.max(axis=1, initial=-1)  # clip t is complete once frame unique[ready[t]] is decoded
    held: dict[int, np.ndarray] = {}
    decoded = t = 0
    for frames in stream_frames_at(video, unique, info=info, block=FRAME_BLOCK):
        for frame in frames:  # every decoded frame is wanted, by clips not yet out
            held[decoded] = frame.copy()
            decoded += 1
        while t < len(indices) and ready[t] < decoded:
            yield np.stack([held[p] for p in pos[t]])[None]
            for p in set(pos[t].tolist()):
                if last_use[p] == t:
                    del held[p]
            t += 1


def _clip_blocks(video, indices: np.ndarray, prepare: Prepare | None) -> Iterator[np.ndarray]:
    for clip in iter_clips(video, indices):
        yield clip if prepare is None else prepare(clip)


def clips(video, indices: np.ndarray, prepare: Prepare | None = None) -> np.ndarray | RowStream:
    """``prepare`` of the clips of ``iter_clips``, as an array (decoded clip by clip in the worker), or as
    a RowStream for long videos (``prepare`` works clip by clip and must be picklable)."""
    if is_long(video):
        return RowStream(functools.partial(_clip_blocks, video, indices, prepare))
    return np.concatenate(list(_clip_blocks(video, indices, prepare)))


BLOCK_BYTES = 64 << 20  # rows held at once when output goes through a file (spill, npy, hdf5 merge)


def raw_blocks(path: Path, offset: int, row_shape: tuple[int, ...], dtype: np.dtype, rows: int,
               block_bytes: int | None = None) -> Iterator[np.ndarray]:
    """``rows`` C-order rows stored from byte ``offset`` of ``path``, read (not memory-mapped, so
    they leave the resident set when dropped) in blocks of about ``block_bytes``."""
    dtype = np.dtype(dtype)
    row_items = int(np.prod(row_shape, dtype=np.int64))
    step = max(1, (block_bytes or BLOCK_BYTES) // max(1, row_items * dtype.itemsize))
    with open(path, "rb") as f:
        f.seek(offset)
        for start in range(0, rows, step):
            n = min(step, rows - start)
            block = np.fromfile(f, dtype=dtype, count=n * row_items)
            if len(block) != n * row_items:
                raise EOFError(f"{path}: {rows} rows expected, the file ends first")
            yield block.reshape(n, *row_shape)


class Spill:
    """One video's output rows appended to a host file as they are computed (a long video), so that
    memory holds a block, not the video: iterated in blocks, with its ``shape`` known before."""

    def __init__(self, path: Path, row_shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path = Path(path)
        self.row_shape = tuple(row_shape)
        self.dtype = np.dtype(dtype)
        self.rows = 0

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.rows, *self.row_shape)

    def append(self, block: np.ndarray) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as f:
            np.ascontiguousarray(block, self.dtype).tofile(f)
        self.rows += len(block)

    def __iter__(self) -> Iterator[np.ndarray]:
        return raw_blocks(self.path, 0, self.row_shape, self.dtype, self.rows)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def iter_blocks(rows: np.ndarray | Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """An array as one block, a stream as its blocks."""
    if isinstance(rows, np.ndarray):
        yield rows
    else:
        yield from rows


def iter_rows(rows: np.ndarray | Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    for block in iter_blocks(rows):
        yield from block
