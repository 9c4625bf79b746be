"""MASN's features in a packed store (:mod:`engine.packed`), read as the four HDF5 files are.

One kind per array of ``features.ORDER``: ``<dir>/res_avg.npy`` [rows, 2048], ``i3d_avg.npy`` [rows, 2048],
``res_roi.npy`` [rows, 10, 2048], ``bbox.npy`` [rows, 10, 6], ``i3d_roi.npy`` [rows, 10, 2048], each with its
``<kind>.index.json``; a video is its HDF5 key (``vid1``, ``video7``, ``42``), its rows its frames, objects
past its count stored as zeros. ``python -m masn.data.pack`` writes it from the HDF5 files; items and
batches equal the HDF5 reader's (same padding and truncation to ``v_max_length``), float16 stores to within
float16 rounding. A store whose every kind was checked finite when written is not scanned at read.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from engine.packed import PackedArray
from masn.data.features import ORDER, FeatureError, PaddedBatches, padded_tail, streams_problem

FIX = "; write the store again (python -m masn.data.pack)"


class PackedVideoFeatures(PaddedBatches):
    """The five arrays of each video from a packed store, opened (and its headers checked) at once."""

    nonfinite_fix = ("pack the store again with python -m masn.data.pack from HDF5 files that are finite (or "
                     "extract the video again); scripts/check_data.py --packed lists every such video")

    def __init__(self, root: str | Path, key_prefix: str, v_max_length: int, allow_missing: bool = False) -> None:
        super().__init__(key_prefix, v_max_length, allow_missing)
        self.root = Path(root)
        if not self.root.is_dir():
            raise FeatureError(f"--packed {self.root}: no such folder; give the folder python -m masn.data.pack "
                               "wrote")
        self.arrays = {name: PackedArray(self.root / f"{name}.npy", self.root / f"{name}.index.json",
                                         padded_tail(name), error=FeatureError, fix=FIX) for name in ORDER}
        self.checked = all(array.checked for array in self.arrays.values())

    def label(self, name: str) -> str:
        return str(self.arrays[name].path)

    def close(self) -> None:
        """Release this process's descriptors (DataLoader workers open their own)."""
        for array in self.arrays.values():
            array.close()

    def whole_arrays(self, key: str) -> Iterator[tuple[str, np.ndarray]]:
        for name, (shape, array) in (self._plan(key) or {}).items():
            yield name, array.read_head(key, np.empty(shape, array.dtype))

    def missing(self, video_ids) -> dict[str, list[str]]:
        """Array file -> the keys of ``video_ids`` it lacks."""
        keys = sorted({self.key(v) for v in video_ids})
        out = {}
        for name, array in self.arrays.items():
            lost = [k for k in keys if k not in array]
            if lost:
                out[self.label(name)] = lost
        return out

    def check_videos(self, video_ids) -> tuple[dict[str, list[str]], list[str]]:
        """Before any work: (array file -> keys it lacks, one message per video whose arrays disagree on T)."""
        bad = []
        for key in sorted({self.key(v) for v in video_ids}):
            plan = self._plan(key)
            problem = plan and streams_problem({name: shape for name, (shape, _) in plan.items()})
            if problem:
                bad.append(f"{self.root}: video {key!r}: {problem}{FIX}")
        return self.missing(video_ids), bad

    def _plan(self, key: str) -> dict[str, tuple] | None:
        if not all(key in array for array in self.arrays.values()):
            return None
        return {name: ((array.range(key)[1] - array.range(key)[0], *array.row_shape), array)
                for name, array in self.arrays.items()}

    def _locate(self, keys: list[str]) -> list[dict[str, tuple] | None]:
        return [self._plan(key) for key in keys]

    def _fill(self, name: str, key: str, where: PackedArray, dest: np.ndarray, shape: tuple[int, ...]) -> None:
        """The first ``shape[0]`` rows (objects already padded in the store), cast to ``dest``'s float32."""
        head = dest[:shape[0]]
        if where.dtype == dest.dtype:
            where.read_head(key, head)
        else:
            head[...] = where.read_head(key, np.empty(head.shape, where.dtype))
