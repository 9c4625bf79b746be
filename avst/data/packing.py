"""Writing the packed AVST feature store (see ``avst.data.features.PackedFeatures`` for reading)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from avst.data.features import INDEX_FILE, ROWS, NpyFeatures


def pack(videos: list[str], sources: dict[str, NpyFeatures], out: Path, dtype: np.dtype) -> dict[str, int]:
    """Write ``<out>/{audio,visual}.npy`` and ``index.json`` atomically; returns {video: rows} of short videos."""
    out.mkdir(parents=True, exist_ok=True)
    rows = np.arange(ROWS)
    short: dict[str, int] = {}
    for kind, src in sources.items():
        tmp = out / f".{kind}.npy.tmp"
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(len(videos) * ROWS, *src.row_shape))
        for i, v in enumerate(videos):
            n = src.num_rows(v)
            if n < ROWS:
                short[v] = min(short.get(v, ROWS), n)
            arr[i * ROWS:(i + 1) * ROWS] = src.read(v, rows)
        arr.flush()
        del arr
        os.replace(tmp, out / f"{kind}.npy")
    index = {"videos": videos, "rows_per_video": ROWS, "dtype": np.dtype(dtype).name, "rows": short}
    tmp = out / f".{INDEX_FILE}.tmp"
    tmp.write_text(json.dumps(index), encoding="utf-8")
    os.replace(tmp, out / INDEX_FILE)
    return short
