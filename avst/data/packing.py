"""Writing the packed AVST feature store from per-video files (``PackedFeatures`` reads it).

The layout is feat_script's ``packed-v1``, the one ``extract_vggish`` / ``extract_14x14 --store packed``
write, so features extracted straight into a store and features packed later read the same way.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from avst.data.features import (
    PACKED_STEMS,
    FeatureError,
    NpyFeatures,
    PackedFeatures,
    feature_problems,
    nonfinite_error,
)
from feat_script.stores import PACKED_FORMAT, atomic_file, write_json_atomic


def pack(videos: list[str], sources: dict[str, NpyFeatures], out: Path, dtype: np.dtype) -> dict[str, int]:
    """Write ``<out>/<stem>.npy`` + ``<stem>.index.json`` per kind atomically; returns {video: rows} of short videos.

    Each video keeps its real row count (the reader repeats the last row of a short video). Every source
    file is checked (headers first, then NaN / inf while copying) before any output replaces an old one,
    and the written store is opened with the reader's own index check.
    """
    problems = feature_problems(videos, sources)
    if problems:
        raise FeatureError(f"{len(problems)} source file(s) cannot be packed, the first: {problems[0]}")
    if len(set(videos)) != len(videos):
        raise FeatureError(f"{out}: a video is listed twice; each video needs its own rows")
    out.mkdir(parents=True, exist_ok=True)
    short: dict[str, int] = {}
    indexes = {}
    with contextlib.ExitStack() as renames:  # arrays replace the old ones only when every kind is written
        for kind, src in sources.items():
            counts = [src.num_rows(v) for v in videos]
            short.update({v: n for v, n in zip(videos, counts) if n < 60})
            stem, total = PACKED_STEMS[kind], sum(counts)
            tmp = renames.enter_context(atomic_file(out / f"{stem}.npy"))
            arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(total, *src.row_shape))
            ranges, cursor = {}, 0
            for video, n in zip(videos, counts):
                rows = src.read(video, np.arange(n))
                if not np.isfinite(rows).all():
                    raise nonfinite_error(kind, video, src.path(video))
                with np.errstate(over="ignore"):  # overflow is checked just below
                    arr[cursor:cursor + n] = rows
                if arr.dtype != rows.dtype and not np.isfinite(arr[cursor:cursor + n]).all():
                    raise FeatureError(f"{src.path(video)}: values beyond the range of {arr.dtype}; pack without "
                                       "--float16")
                ranges[video] = [cursor, cursor + n]
                cursor += n
            arr.flush()
            del arr
            indexes[stem] = {"format": PACKED_FORMAT, "dtype": np.dtype(dtype).name,
                             "row_shape": list(src.row_shape), "rows": total, "videos": ranges}
    for stem, index in indexes.items():
        write_json_atomic(out / f"{stem}.index.json", index)
    for kind in sources:
        PackedFeatures(out, kind)
    return short
