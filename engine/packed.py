"""The packed feature store both papers read: per kind one ``.npy`` and one JSON header beside it.

``<stem>.npy`` [rows, *row_shape] holds every video's rows one after the other (C order, float16 or
float32, memory-mappable); ``<stem>.index.json`` is its header::

    {"format": "packed-v1", "dtype": "float16", "row_shape": [...], "rows": N,
     "videos": {video: [start, stop]}, "checked": true, "checks": ["finite"]}

``checked`` is true when every row was verified finite (no NaN or inf, nothing beyond the range of the
stored dtype after the cast) as it was written: readers trust such a store and skip their per-read scan.
Any other store (``checked`` false or absent) is scanned at every read. The whole header is checked when
a store is opened, not when a bad entry is first read: every range ``0 <= start < stop <= rows``, no two
overlapping, and ``dtype``, ``row_shape`` and ``rows`` those of the ``.npy`` header.

:class:`PackedWriter` writes one kind (AVST's packer, MASN's HDF5 converter and feat_script's
``--store packed`` all use it); :class:`PackedArray` reads one with ``os.preadv`` into the caller's buffer.
"""
from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from engine.batching import byte_rows, nonfinite_rows
from engine.errors import UserError

PACKED_FORMAT = "packed-v1"
FINITE = "finite"  # the check a header's "checks" names when every row was verified finite
DTYPES = ("float32", "float16")  # the packers' --dtype choices (a store may hold any float dtype)
NONFINITE = "NaN or inf values"  # why a block is refused when its source rows are not finite


class PackedError(UserError, ValueError):
    """A packed store that cannot be read as its header says; the message names the file."""


Refusal = Callable[[str, str], Exception]  # (video, what is wrong with its rows) -> the error to raise


class PackedWriter:
    """Writes one kind's ``.npy`` to an open binary file, video after video, block by block, checking each
    block finite (before and after the cast to ``dtype``). A non-finite block raises ``refuse(video, why)``
    when given; without it the store is written unchecked (``checked`` false in its header)."""

    def __init__(self, f: BinaryIO, rows: int, row_shape: tuple[int, ...], dtype: np.dtype | str,
                 refuse: Refusal | None = None) -> None:
        self.f, self.rows, self.row_shape = f, rows, tuple(row_shape)
        self.dtype, self.refuse = np.dtype(dtype), refuse
        if self.dtype.kind != "f":
            raise ValueError(f"a packed store holds floating point rows, not {self.dtype}")
        np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(self.dtype),
                                                 "fortran_order": False, "shape": (rows, *self.row_shape)})
        self.videos: dict[str, list[int]] = {}
        self.written, self.finite, self._last = 0, True, ""

    def add(self, video: str, block: np.ndarray) -> None:
        """Append ``block`` [n, *row_shape] to ``video``'s rows (a video's blocks come one after the other)."""
        if tuple(block.shape[1:]) != self.row_shape:
            raise ValueError(f"{video}: rows of shape {list(block.shape[1:])}, expected {list(self.row_shape)}")
        if video != self._last:
            if video in self.videos:
                raise ValueError(f"{video}: its rows must come one after the other")
            self.videos[video] = [self.written, self.written]
            self._last = video
        why = _nonfinite(block, NONFINITE)
        with np.errstate(over="ignore"):  # overflow is what the check below finds
            cast = np.ascontiguousarray(block, self.dtype)
        if not why and block.dtype != self.dtype:
            why = _nonfinite(cast, f"values beyond the range of {self.dtype}")
        if why:
            if self.refuse is not None:
                raise self.refuse(video, why)
            self.finite = False
        cast.tofile(self.f)
        self.written += len(block)
        self.videos[video][1] = self.written

    def header(self) -> dict:
        """The index JSON of what was written (every announced row must have been)."""
        if self.written != self.rows:
            raise ValueError(f"{self.written} rows written, {self.rows} announced")
        empty = [v for v, (start, stop) in self.videos.items() if start == stop]
        if empty:
            raise ValueError(f"{empty[0]}: no rows")
        return {"format": PACKED_FORMAT, "dtype": self.dtype.name, "row_shape": list(self.row_shape),
                "rows": self.rows, "videos": self.videos, "checked": self.finite,
                "checks": [FINITE] if self.finite else []}


def _nonfinite(rows: np.ndarray, why: str) -> str | None:
    return why if len(rows) and nonfinite_rows(rows).any() else None


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """``json.load`` hook: a video listed twice would silently keep only its last range."""
    seen: dict = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"video {key!r} is listed twice")
        seen[key] = value
    return seen


def load_index(path: Path, error: type[Exception] = PackedError, fix: str = "") -> dict:
    """The header at ``path`` as JSON of this format (no other check); ``error`` names the file."""
    try:
        with open(path, encoding="utf-8") as f:
            index = json.load(f, object_pairs_hook=_unique_keys)
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError and a video listed twice
        raise error(f"{path}: not a valid packed index ({err}){fix}") from None
    if not isinstance(index, dict) or index.get("format") != PACKED_FORMAT:
        got = index.get("format") if isinstance(index, dict) else type(index).__name__
        raise error(f"{path}: format {got!r}, expected {PACKED_FORMAT!r}{fix}")
    return index


def index_problems(ranges: dict, rows: int) -> list[str]:
    """Entries of a packed index that would read another video's rows or past the end (empty if none).

    Each range ``[start, stop]`` must be two integers with ``0 <= start < stop <= rows``, and no two may
    overlap: every video owns its rows, as :class:`PackedWriter` writes them.
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


class PackedArray:
    """One kind of a packed store, opened and checked; rows read with ``os.preadv`` on a descriptor kept
    open per process and shared by its threads (a gather from a memory map would cost a page fault per page
    in every DataLoader worker; a read does not).

    ``error`` is the exception class a problem raises (the caller's), ``fix`` ends each message with what
    to do (e.g. "; write the store again with ...").
    """

    def __init__(self, array_path: Path, index_path: Path, row_shape: tuple[int, ...], *,
                 error: type[Exception] = PackedError, fix: str = "") -> None:
        self.path, self.index_path, self.row_shape = Path(array_path), Path(index_path), tuple(row_shape)
        self.error, self.fix = error, fix
        if not self.index_path.is_file():
            raise error(f"packed store index not found: {self.index_path}{fix}")
        shape, self.dtype, self.offset = self._npy_header()
        self.rows = shape[0]
        index = load_index(self.index_path, error, fix)
        self._check_header(index, shape)
        bad = index_problems(index["videos"], self.rows)
        if bad:
            raise error(f"{self.index_path}: {len(bad)} bad row range(s): {'; '.join(bad[:3])}{fix}")
        self.ranges = {v: (a, b) for v, (a, b) in index["videos"].items()}
        self.checked = index.get("checked") is True and FINITE in (index.get("checks") or ())
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        self._fd: int | None = None
        self._opening = threading.Lock()

    def _npy_header(self) -> tuple[tuple[int, ...], np.dtype, int]:
        """(shape, dtype, data offset) of the ``.npy``, refused unless complete, C-ordered, float rows."""
        if not self.path.is_file():
            raise self.error(f"packed store array not found: {self.path}{self.fix}")
        try:
            array = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise self.error(f"{self.path}: unreadable or truncated .npy ({err}){self.fix}") from None
        shape, dtype, offset = tuple(array.shape), array.dtype, array.offset
        if dtype.kind != "f" or not array.flags.c_contiguous or shape[1:] != self.row_shape:
            got = f"{dtype} {list(shape)}" + ("" if array.flags.c_contiguous else " in Fortran order")
            raise self.error(f"{self.path}: {got}, expected C-ordered floating point "
                             f"[rows, {', '.join(map(str, self.row_shape))}]{self.fix}")
        return shape, dtype, offset

    def _check_header(self, index: dict, shape: tuple[int, ...]) -> None:
        """The header's dtype, row shape and row count against the ``.npy`` it describes."""
        said = {"dtype": index.get("dtype"), "row_shape": index.get("row_shape"), "rows": index.get("rows")}
        real = {"dtype": self.dtype.name, "row_shape": list(shape[1:]), "rows": shape[0]}
        wrong = [f"{k} {said[k]!r} (the array: {real[k]!r})" for k in said if said[k] != real[k]]
        if not isinstance(index.get("videos"), dict):
            wrong.append(f"videos {type(index.get('videos')).__name__}, not a mapping")
        if wrong:
            raise self.error(f"{self.index_path}: says {'; '.join(wrong)}{self.fix}")

    def __getstate__(self) -> dict:  # a spawned worker opens its own descriptor (a forked one may share it)
        return {**self.__dict__, "_fd": None, "_opening": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _opening=threading.Lock())

    def __contains__(self, video: str) -> bool:
        return video in self.ranges

    def range(self, video: str) -> tuple[int, int]:
        try:
            return self.ranges[video]
        except KeyError:
            raise self.error(f"{self.path.parent}: video {video!r} is not in the packed store") from None

    def _descriptor(self) -> int:
        if self._fd is None:
            with self._opening:  # threads of the reader pipeline share one descriptor
                if self._fd is None:
                    self._fd = os.open(self.path, os.O_RDONLY)
        return self._fd

    def close(self) -> None:
        """Close this process's descriptor (the next read opens one again)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _read(self, dest: np.ndarray, row: int) -> None:
        """Rows ``row, row + 1, ...`` into the C-contiguous ``dest`` (of the store's dtype), one read."""
        flat = byte_rows(dest).reshape(-1)
        if os.preadv(self._descriptor(), [flat], self.offset + row * self.row_bytes) != len(flat):
            raise self.error(f"{self.path}: truncated while reading row {row}{self.fix}")

    def read_pairs(self, pairs: list[tuple[str, int]], out: np.ndarray) -> np.ndarray:
        """One row per (video, row) pair into ``out`` (a row past a video's end reads its last row)."""
        for dest, (video, row) in zip(out, pairs):
            start, stop = self.range(video)
            self._read(dest[None], start + min(row, stop - start - 1))
        return out

    def read_head(self, video: str, out: np.ndarray) -> np.ndarray:
        """The first ``len(out)`` rows of ``video`` into ``out`` (at most its row count)."""
        start, stop = self.range(video)
        if len(out) > stop - start:
            raise ValueError(f"{video}: {len(out)} rows asked for, it has {stop - start}")
        self._read(out, start)
        return out
