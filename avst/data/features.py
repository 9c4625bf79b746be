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
    if arr.ndim != 1 + len(row_shape) or tuple(arr.shape[1:]) != row_shape or arr.shape[0] == 0:
        raise FeatureError(f"{path}: shape {tuple(arr.shape)}, expected [60, {', '.join(map(str, row_shape))}]")
    return arr


class NpyFeatures:
    """The original layout: ``<dir>/<video_id>.npy``."""

    def __init__(self, root: str | Path, kind: str) -> None:
        self.root = Path(root)
        self.kind = kind
        self.row_shape = KINDS[kind]
        if not self.root.is_dir():
            raise FeatureError(f"{kind} feature directory not found: {self.root}")
        self.bytes_read = 0

    def path(self, video_id: str) -> Path:
        return self.root / f"{video_id}.npy"

    def num_rows(self, video_id: str) -> int:
        return open_npy(self.path(video_id), self.row_shape).shape[0]

    def read(self, video_id: str, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` of one video as float32 (indices past the end repeat the last row)."""
        arr = open_npy(self.path(video_id), self.row_shape)
        out = np.asarray(arr[np.minimum(rows, arr.shape[0] - 1)], dtype=np.float32)
        self.bytes_read += len(rows) * arr[0].nbytes
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
        base = self._base(video_id)
        out = np.asarray(self.array[base + np.minimum(rows, ROWS - 1)], dtype=np.float32)
        self.bytes_read += len(rows) * self.array[0].nbytes
        return out


def open_features(kind: str, directory: str | Path | None, packed: str | Path | None):
    """The reader for ``kind``: the packed store when given, else the per-video directory."""
    if packed is not None:
        return PackedFeatures(packed, kind)
    if directory is None:
        raise FeatureError(f"no {kind} features given: pass a directory or --packed")
    return NpyFeatures(directory, kind)
