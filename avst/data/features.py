"""Per-video feature readers that touch only the rows a sample needs.

Two layouts hold the same arrays (what ``net_grd_avst/dataloader_avst.py`` reads): the original one ``.npy``
per video (VGGish ``[60,128]``, ResNet-18 14x14 ``[60,512,14,14]``), and the packed store (``packed-v1``,
:mod:`engine.packed`: per kind one memory-mappable ``<kind>.npy`` with every video's rows stacked, plus
``<kind>.index.json`` giving each video's row range), written by ``feat_script.extract_vggish/extract_14x14
--store packed`` or by ``scripts/pack_avst_features.py`` from per-video files. Both read only the rows asked
for, one ``preadv`` each into the caller's buffer (the batch), where the original loaded every whole file
(11 per sample). Videos with fewer than 60 rows are padded by repeating the last row, as the authors advise
(MUSIC-AVQA issue #3): a row index past the end reads the last row.
"""
from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from engine.batching import byte_rows
from engine.errors import UserError
from engine.packed import PackedArray
from feat_script.recipes import AVST, AVST_SECONDS

ROWS = AVST_SECONDS
AUDIO_SHAPE = (128,)
VISUAL_SHAPE = (512, 14, 14)
KINDS = {"audio": AUDIO_SHAPE, "visual": VISUAL_SHAPE}
PACKED_STEMS = {kind: stream.output for kind, stream in AVST.streams.items()}  # the extractors' names


class FeatureError(UserError, ValueError):
    """A missing, truncated or mis-shaped feature file; the message names the file."""


def open_npy(path: Path, row_shape: tuple[int, ...]) -> np.ndarray:
    """Memory-map one feature file and check its dtype (floating point) and row shape (rows may be < 60)."""
    if not path.is_file():
        raise FeatureError(f"feature file not found: {path}")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise FeatureError(f"{path}: unreadable or truncated .npy ({err}); extract it again") from None
    if arr.dtype.kind != "f":
        raise FeatureError(f"{path}: dtype {arr.dtype}, expected floating point features; extract it again")
    _check_shape(path, tuple(arr.shape), row_shape)
    return arr


def nonfinite_error(kind: str, video_id: str, source: Path) -> FeatureError:
    return FeatureError(f"{source}: the {kind} features of video {video_id!r} hold NaN or inf values; extract "
                        "them again (scripts/check_data.py music-avqa lists every such video)")


def _check_shape(path: Path, shape: tuple[int, ...], row_shape: tuple[int, ...]) -> None:
    if len(shape) != 1 + len(row_shape) or shape[1:] != row_shape or shape[0] == 0:
        raise FeatureError(f"{path}: shape {list(shape)}, expected [60, {', '.join(map(str, row_shape))}]")


class Descriptors:
    """Open read-only descriptors of the last ``limit`` files used, shared by the threads of a process (the
    ``reader`` input pipeline): a descriptor that leaves the cache while a thread reads it is closed by its
    last reader, never under it."""

    def __init__(self, limit: int, entries: OrderedDict | None = None) -> None:
        self.limit, self.lock = limit, threading.Lock()
        self.entries: OrderedDict[str, list[int]] = entries or OrderedDict()  # key -> [descriptor, readers]

    def forked(self) -> Descriptors:
        """This cache in a forked child (its threads did not come along: nobody reads)."""
        return Descriptors(self.limit, OrderedDict((k, [fd, 0]) for k, (fd, _) in self.entries.items()))

    @contextlib.contextmanager
    def use(self, key: str, path: Path) -> Iterator[int]:
        with self.lock:
            entry = self.entries.get(key)
            if entry is None:
                entry = self.entries[key] = [os.open(path, os.O_RDONLY), 0]
                while len(self.entries) > self.limit:
                    old = self.entries.popitem(last=False)[1]
                    if old[1] == 0:
                        os.close(old[0])
            else:
                self.entries.move_to_end(key)
            entry[1] += 1
        try:
            yield entry[0]
        finally:
            with self.lock:
                entry[1] -= 1
                if entry[1] == 0 and self.entries.get(key) is not entry:
                    os.close(entry[0])


class NpyFeatures:
    """The original layout: ``<dir>/<video_id>.npy``.

    Rows are read with ``os.pread`` at offsets computed from the ``.npy`` header (cached per file), so a
    sample costs one small read per row and no page-fault storm; the bytes read equal the rows asked for.
    File descriptors stay open (the last ``OPEN_FILES`` videos of each process, :class:`Descriptors`), so a
    batch's rows cost one ``preadv`` each, not an open/read/close each.
    """

    OPEN_FILES = 256
    checked = False  # nothing records a check of these files: every read is scanned for NaN / inf

    def __init__(self, root: str | Path, kind: str) -> None:
        self.root = Path(root)
        self.kind = kind
        self.row_shape = KINDS[kind]
        if not self.root.is_dir():
            raise FeatureError(f"{kind} feature directory not found: {self.root}")
        self.bytes_read = 0
        self._headers: dict[str, tuple[int, int, np.dtype]] = {}
        self._fds: Descriptors | None = None
        self._pid = os.getpid()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fds": None}  # descriptors do not travel to spawned workers

    def _descriptors(self) -> Descriptors:
        if self._fds is None:
            self._fds = Descriptors(self.OPEN_FILES)
        elif self._pid != os.getpid():  # a forked worker: keep the parent's descriptors, own the cache from here
            self._fds = self._fds.forked()
        self._pid = os.getpid()
        return self._fds

    def path(self, video_id: str) -> Path:
        return self.root / f"{video_id}.npy"

    def _header(self, video_id: str) -> tuple[int, int, np.dtype]:
        """(data offset, number of rows, dtype) of one file, checked against its size."""
        if video_id in self._headers:
            return self._headers[video_id]
        path = self.path(video_id)
        arr = open_npy(path, self.row_shape)
        shape, dtype, offset = tuple(arr.shape), arr.dtype, arr.offset
        if not arr.flags.c_contiguous:
            raise FeatureError(f"{path}: stored in Fortran order; save it C-ordered (np.save of the array)")
        del arr
        size = offset + int(np.prod(shape)) * dtype.itemsize
        if path.stat().st_size < size:
            raise FeatureError(f"{path}: truncated ({path.stat().st_size} bytes, header promises {size})")
        self._headers[video_id] = (offset, shape[0], dtype)
        return self._headers[video_id]

    def num_rows(self, video_id: str) -> int:
        return self._header(video_id)[1]

    def read(self, video_id: str, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` of one video (indices past the end repeat the last row)."""
        return self.read_pairs([(video_id, int(r)) for r in rows])

    def dtype(self, video_id: str) -> np.dtype:
        return self._header(video_id)[2]

    def read_pairs(self, pairs: list[tuple[str, int]], out: np.ndarray | None = None) -> np.ndarray:
        """One row per (video, row) pair, stacked (into ``out`` if given), in the dtype of the first pair's file."""
        if out is None:
            out = np.empty((len(pairs), *self.row_shape), dtype=self.dtype(pairs[0][0]))
        rows = byte_rows(out)
        for dest, (video_id, row) in zip(rows, pairs):
            offset, n, dtype = self._header(video_id)
            buf = dest if dtype == out.dtype else byte_rows(np.empty((1, *self.row_shape), dtype=dtype))[0]
            with self._descriptors().use(video_id, self.path(video_id)) as fd:
                got = os.preadv(fd, [buf], offset + min(row, n - 1) * len(buf))
            if got != len(buf):
                raise FeatureError(f"{self.path(video_id)}: truncated while reading row {row}")
            if buf is not dest:
                dest.view(out.dtype)[:] = buf.view(dtype)
            self.bytes_read += len(buf)
        return out


class PackedFeatures:
    """One kind of the packed store (:mod:`engine.packed`): ``<dir>/<stem>.npy`` [all rows, *row_shape] +
    ``<stem>.index.json``. ``checked``: the store's rows were verified finite when packed (no per-read scan)."""

    FIX = "; write the store again (scripts/pack_avst_features.py or the extractor's --store packed)"

    def __init__(self, root: str | Path, kind: str) -> None:
        self.root = Path(root)
        self.kind = kind
        self.row_shape = KINDS[kind]
        stem = PACKED_STEMS[kind]
        self.store = PackedArray(self.root / f"{stem}.npy", self.root / f"{stem}.index.json", self.row_shape,
                                 error=FeatureError, fix=self.FIX)
        self.checked = self.store.checked
        self.bytes_read = 0

    def path(self, video_id: str) -> Path:
        return self.store.path

    def num_rows(self, video_id: str) -> int:
        start, stop = self.store.range(video_id)
        return stop - start

    def read(self, video_id: str, rows: np.ndarray) -> np.ndarray:
        return self.read_pairs([(video_id, int(r)) for r in rows])

    def dtype(self, video_id: str) -> np.dtype:
        return self.store.dtype

    def read_pairs(self, pairs: list[tuple[str, int]], out: np.ndarray | None = None) -> np.ndarray:
        """One row per (video, row) pair, stacked (into ``out`` if given, of the store's dtype)."""
        if out is None:
            out = np.empty((len(pairs), *self.row_shape), dtype=self.store.dtype)
        self.store.read_pairs(pairs, out)
        self.bytes_read += out.nbytes
        return out


def feature_problems(videos: list[str], sources: dict) -> list[str]:
    """Why some videos cannot be read, one message per (kind, video): absent, unreadable, wrong dtype or shape.

    Cheap (file headers or the packed index, no feature rows), so every split is checked before training.
    """
    problems = []
    for src in sources.values():
        for video in videos:
            try:
                src.num_rows(video)
            except FeatureError as err:
                problems.append(str(err))
    return problems


def open_features(kind: str, directory: str | Path | None, packed: str | Path | None):
    """The reader for ``kind``: the packed store when given, else the per-video directory."""
    if packed is not None:
        return PackedFeatures(packed, kind)
    if directory is None:
        raise FeatureError(f"no {kind} features given: pass a directory or --packed")
    return NpyFeatures(directory, kind)
