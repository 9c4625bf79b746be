"""Per-video feature readers that touch only the rows a sample needs.

Two layouts hold the same arrays (spec §2.1): the original one ``.npy`` per video (VGGish ``[60,128]``,
ResNet-18 14x14 ``[60,512,14,14]``), and the packed store written by ``scripts/pack_avst_features.py``
(one memory-mappable ``.npy`` per feature kind, videos stacked along the first axis, plus
``index.json``). Both are opened with ``mmap_mode='r'``: fancy-indexing 10 rows reads 10 rows, where the
original loaded every whole file (11 per sample). Videos with fewer than 60 rows are padded by repeating
the last row, as the authors advise (MUSIC-AVQA issue #3): a row index past the end reads the last row.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

ROWS = 60
AUDIO_SHAPE = (128,)
VISUAL_SHAPE = (512, 14, 14)
INDEX_FILE = "index.json"
KINDS = {"audio": AUDIO_SHAPE, "visual": VISUAL_SHAPE}


class FeatureError(ValueError):
    """A missing, truncated or mis-shaped feature file; the message names the file."""


def open_npy(path: Path, row_shape: tuple[int, ...]) -> np.ndarray:
    """Memory-map one feature file and check its row shape (rows may be fewer than 60)."""
    if not path.is_file():
        raise FeatureError(f"feature file not found: {path}")
    try:
        arr = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as err:
        raise FeatureError(f"{path}: unreadable or truncated .npy ({err})") from None
    _check_shape(path, tuple(arr.shape), row_shape)
    return arr


def _check_shape(path: Path, shape: tuple[int, ...], row_shape: tuple[int, ...]) -> None:
    if len(shape) != 1 + len(row_shape) or shape[1:] != row_shape or shape[0] == 0:
        raise FeatureError(f"{path}: shape {list(shape)}, expected [60, {', '.join(map(str, row_shape))}]")


class NpyFeatures:
    """The original layout: ``<dir>/<video_id>.npy``.

    Rows are read with ``os.pread`` at offsets computed from the ``.npy`` header (cached per file), so a
    sample costs one small read per row and no page-fault storm; the bytes read equal the rows asked for.
    """

    def __init__(self, root: str | Path, kind: str) -> None:
        self.root = Path(root)
        self.kind = kind
        self.row_shape = KINDS[kind]
        if not self.root.is_dir():
            raise FeatureError(f"{kind} feature directory not found: {self.root}")
        self.bytes_read = 0
        self._headers: dict[str, tuple[int, int, np.dtype]] = {}

    def path(self, video_id: str) -> Path:
        return self.root / f"{video_id}.npy"

    def _header(self, video_id: str) -> tuple[int, int, np.dtype]:
        """(data offset, number of rows, dtype) of one file, checked against its size."""
        if video_id in self._headers:
            return self._headers[video_id]
        path = self.path(video_id)
        arr = open_npy(path, self.row_shape)
        shape, dtype, offset = tuple(arr.shape), arr.dtype, arr.offset
        if not arr.flags.c_contiguous or dtype.kind != "f":
            raise FeatureError(f"{path}: expected a C-ordered float array, got dtype {dtype}")
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

    def read_pairs(self, pairs: list[tuple[str, int]]) -> np.ndarray:
        """One row per (video, row) pair, stacked, in the dtype of the first pair's file."""
        out = np.empty((len(pairs), *self.row_shape), dtype=self._header(pairs[0][0])[2])
        for i, (video_id, row) in enumerate(pairs):
            offset, n, dtype = self._header(video_id)
            buf = out[i] if dtype == out.dtype else np.empty(self.row_shape, dtype=dtype)
            nbytes = buf.nbytes
            fd = os.open(self.path(video_id), os.O_RDONLY)
            try:
                got = os.preadv(fd, [memoryview(buf).cast("B")], offset + min(row, n - 1) * nbytes)
            finally:
                os.close(fd)
            if got != nbytes:
                raise FeatureError(f"{self.path(video_id)}: truncated while reading row {row}")
            if dtype != out.dtype:
                out[i] = buf
            self.bytes_read += nbytes
        return out


class PackedFeatures:
    """One kind of the packed store: ``<dir>/<kind>.npy`` of shape [videos*60, *row_shape]."""

    def __init__(self, root: str | Path, kind: str) -> None:
        self.root = Path(root)
        self.kind = kind
        self.row_shape = KINDS[kind]
        index_path = self.root / INDEX_FILE
        if not index_path.is_file():
            raise FeatureError(f"packed store index not found: {index_path} (build it with "
                               "scripts/pack_avst_features.py)")
        with open(index_path, encoding="utf-8") as f:
            index = json.load(f)
        self.videos = {v: i for i, v in enumerate(index["videos"])}
        self.rows = {v: int(n) for v, n in index.get("rows", {}).items()}
        path = self.root / f"{kind}.npy"
        arr = open_npy(path, self.row_shape)
        if arr.shape[0] != ROWS * len(self.videos):
            raise FeatureError(f"{path}: {arr.shape[0]} rows, index lists {len(self.videos)} videos x 60")
        self.array = arr
        self.bytes_read = 0

    def path(self, video_id: str) -> Path:
        return self.root / f"{self.kind}.npy"

    def _base(self, video_id: str) -> int:
        try:
            return self.videos[video_id] * ROWS
        except KeyError:
            raise FeatureError(f"{self.root}: video {video_id!r} is not in the packed store") from None

    def num_rows(self, video_id: str) -> int:
        self._base(video_id)
        return self.rows.get(video_id, ROWS)

    def read(self, video_id: str, rows: np.ndarray) -> np.ndarray:
        return self.read_pairs([(video_id, int(r)) for r in rows])

    def read_pairs(self, pairs: list[tuple[str, int]]) -> np.ndarray:
        """One row per (video, row) pair, stacked, in the store's dtype (one fancy-indexed copy)."""
        index = np.array([self._base(v) + min(r, ROWS - 1) for v, r in pairs])
        out = self.array[index]
        self.bytes_read += len(index) * self.array[0].nbytes
        return out


def open_features(kind: str, directory: str | Path | None, packed: str | Path | None):
    """The reader for ``kind``: the packed store when given, else the per-video directory."""
    if packed is not None:
        return PackedFeatures(packed, kind)
    if directory is None:
        raise FeatureError(f"no {kind} features given: pass a directory or --packed")
    return NpyFeatures(directory, kind)
