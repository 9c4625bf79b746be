"""Per-video feature readers that touch only the rows a sample needs.

Two layouts hold the same arrays (what ``net_grd_avst/dataloader_avst.py`` reads): the original one ``.npy``
per video (VGGish ``[60,128]``, ResNet-18 14x14 ``[60,512,14,14]``), and the packed store (feat_script's
``packed-v1``: per kind one memory-mappable ``<kind>.npy`` with every video's rows stacked, plus
``<kind>.index.json`` giving each video's row range), written by ``feat_script.extract_vggish/extract_14x14
--store packed`` or by ``scripts/pack_avst_features.py`` from per-video files. Both read only the rows asked
for, one ``preadv`` each into the caller's buffer (the batch), where the original loaded every whole file
(11 per sample). Videos with fewer than 60 rows are padded by repeating the last row, as the authors advise
(MUSIC-AVQA issue #3): a row index past the end reads the last row.
"""
from __future__ import annotations

import contextlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from engine.batching import byte_rows
from engine.errors import UserError
from feat_script.recipes import AVST, AVST_SECONDS
from feat_script.stores import PACKED_FORMAT

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


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """``json.load`` hook: a video listed twice would silently keep only its last range."""
    seen: dict = {}
    for key, value in pairs:
        if key in seen:
            raise FeatureError(f"video {key!r} is listed twice")
        seen[key] = value
    return seen


def index_problems(ranges: dict, rows: int) -> list[str]:
    """Entries of a packed index that would read another video's rows or past the end (empty if none).

    Each range ``[start, stop]`` must be two integers with ``0 <= start < stop <= rows``, and no two may
    overlap: every video owns its rows, as ``scripts/pack_avst_features.py`` and ``--store packed`` write them.
    """
    bad, spans = [], []
    for video, span in ranges.items():
        ok = (isinstance(span, list) and len(span) == 2
              and all(isinstance(x, int) and not isinstance(x, bool) for x in span))
        if not ok:
            bad.append(f"{video}: {span!r} is not [start, stop]")
        elif not 0 <= span[0] < span[1] <= rows:
            why = ("empty" if span[0] == span[1] else "reversed" if span[0] > span[1]
                   else "negative" if span[0] < 0 else f"past the end ({rows} rows)")
            bad.append(f"{video}: {span} {why}")
        else:
            spans.append((span[0], span[1], video))
    reach, owner = 0, ""
    for start, stop, video in sorted(spans):
        if start < reach:
            bad.append(f"{video}: overlaps {owner}")
        if stop > reach:
            reach, owner = stop, video
    return bad


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
    """One kind of the packed store: ``<dir>/<stem>.npy`` [all rows, *row_shape] + ``<stem>.index.json``.

    Rows are read with ``os.preadv`` on a descriptor kept open per process (the memory map only serves the
    checks): a gather from the map costs a page fault per page in every DataLoader worker, a read does not.
    """

    def __init__(self, root: str | Path, kind: str) -> None:
        self.root = Path(root)
        self.kind = kind
        self.row_shape = KINDS[kind]
        stem = PACKED_STEMS[kind]
        index_path = self.root / f"{stem}.index.json"
        if not index_path.is_file():
            raise FeatureError(f"packed store index not found: {index_path} (write it with "
                               f"feat_script's --store packed or scripts/pack_avst_features.py)")
        self.array = open_npy(self.root / f"{stem}.npy", self.row_shape)
        if not self.array.flags.c_contiguous:
            raise FeatureError(f"{self.path('')}: stored in Fortran order; write the store again")
        self.ranges = self._read_index(index_path, self.array.shape[0])
        self.bytes_read = 0
        self._fd: int | None = None
        self._opening = threading.Lock()

    def __getstate__(self) -> dict:  # a spawned worker opens its own descriptor (a forked one may share it)
        return {**self.__dict__, "_fd": None, "_opening": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _opening=threading.Lock())

    def _read_index(self, index_path: Path, rows: int) -> dict[str, tuple[int, int]]:
        """The whole index checked when the store is opened, not when a bad entry is first read."""
        fix = "; write the store again (scripts/pack_avst_features.py or the extractor's --store packed)"
        try:
            with open(index_path, encoding="utf-8") as f:
                index = json.load(f, object_pairs_hook=_unique_keys)
        except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError and a video listed twice
            raise FeatureError(f"{index_path}: not a valid packed index ({err}){fix}") from None
        if not isinstance(index, dict) or index.get("format") != PACKED_FORMAT:
            got = index.get("format") if isinstance(index, dict) else type(index).__name__
            raise FeatureError(f"{index_path}: format {got!r}, expected {PACKED_FORMAT!r}{fix}")
        if not isinstance(index.get("videos"), dict) or index.get("rows") != rows:
            raise FeatureError(f"{index_path}: says {index.get('rows')!r} rows and lists "
                               f"{type(index.get('videos')).__name__} videos; {self.path('')} has {rows} rows{fix}")
        bad = index_problems(index["videos"], rows)
        if bad:
            raise FeatureError(f"{index_path}: {len(bad)} bad row range(s): {'; '.join(bad[:3])}{fix}")
        return {v: (a, b) for v, (a, b) in index["videos"].items()}

    def path(self, video_id: str) -> Path:
        return self.root / f"{PACKED_STEMS[self.kind]}.npy"

    def _range(self, video_id: str) -> tuple[int, int]:
        try:
            return self.ranges[video_id]
        except KeyError:
            raise FeatureError(f"{self.root}: video {video_id!r} is not in the packed store") from None

    def num_rows(self, video_id: str) -> int:
        start, stop = self._range(video_id)
        return stop - start

    def read(self, video_id: str, rows: np.ndarray) -> np.ndarray:
        return self.read_pairs([(video_id, int(r)) for r in rows])

    def dtype(self, video_id: str) -> np.dtype:
        return self.array.dtype

    def read_pairs(self, pairs: list[tuple[str, int]], out: np.ndarray | None = None) -> np.ndarray:
        """One row per (video, row) pair, stacked (into ``out`` if given, of the store's dtype)."""
        if out is None:
            out = np.empty((len(pairs), *self.row_shape), dtype=self.array.dtype)
        if self._fd is None:
            with self._opening:  # threads of the reader pipeline share one descriptor
                if self._fd is None:
                    self._fd = os.open(self.path(""), os.O_RDONLY)
        rows = byte_rows(out)
        size = rows.shape[1]
        for dest, (video_id, row) in zip(rows, pairs):
            start, stop = self._range(video_id)
            index = start + min(row, stop - start - 1)
            if os.preadv(self._fd, [dest], self.array.offset + index * size) != size:
                raise FeatureError(f"{self.path(video_id)}: truncated while reading row {index}")
        self.bytes_read += rows.nbytes
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
