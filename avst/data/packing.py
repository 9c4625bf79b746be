"""Writing the packed AVST feature store from per-video files (``PackedFeatures`` reads it).

The layout is feat_script's ``packed-v1``, the one ``extract_vggish`` / ``extract_14x14 --store packed``
write, so features extracted straight into a store and features packed later read the same way.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from avst.data.features import PACKED_STEMS, NpyFeatures
from feat_script.stores import PACKED_FORMAT, atomic_file, write_json_atomic


def pack(videos: list[str], sources: dict[str, NpyFeatures], out: Path, dtype: np.dtype) -> dict[str, int]:
    """Write ``<out>/<stem>.npy`` + ``<stem>.index.json`` per kind atomically; returns {video: rows} of short videos.

    Each video keeps its real row count (the reader repeats the last row of a short video).
    """
    out.mkdir(parents=True, exist_ok=True)
    short: dict[str, int] = {}
    for kind, src in sources.items():
        counts = [src.num_rows(v) for v in videos]
        short.update({v: n for v, n in zip(videos, counts) if n < 60})
        stem, total = PACKED_STEMS[kind], sum(counts)
        ranges: dict[str, list[int]] = {}
        with atomic_file(out / f"{stem}.npy") as tmp:
            arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(total, *src.row_shape))
            cursor = 0
            for video, n in zip(videos, counts):
                arr[cursor:cursor + n] = src.read(video, np.arange(n))
                ranges[video] = [cursor, cursor + n]
                cursor += n
            arr.flush()
            del arr
        write_json_atomic(out / f"{stem}.index.json", {
            "format": PACKED_FORMAT, "dtype": np.dtype(dtype).name, "row_shape": list(src.row_shape),
            "rows": total, "videos": ranges})
    return short
