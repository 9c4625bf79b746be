"""Writing the packed AVST feature store from per-video files (``PackedFeatures`` reads it).

The layout is :mod:`engine.packed`'s, the one ``extract_vggish`` / ``extract_14x14 --store packed`` and
MASN's converter write, so features extracted straight into a store and features packed later read the
same way. Every row is checked finite while it is copied, so the store is marked checked and its reads
are not scanned again.
"""
from __future__ import annotations

from collections.abc import Iterator
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
from engine.packed import NONFINITE
from feat_script.stores import write_packed


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
    kinds = {PACKED_STEMS[kind]: kind for kind in sources}

    def refuse(stem: str, video: str, why: str) -> FeatureError:
        kind = kinds[stem]
        path = sources[kind].path(video)
        if why == NONFINITE:
            return nonfinite_error(kind, video, path)
        return FeatureError(f"{path}: {why}; pack with --dtype float32")

    counts = {kind: [src.num_rows(v) for v in videos] for kind, src in sources.items()}
    arrays = {PACKED_STEMS[kind]: (src.row_shape, sum(counts[kind]), _whole_videos(src, videos, counts[kind]))
              for kind, src in sources.items()}
    out.mkdir(parents=True, exist_ok=True)
    write_packed(out, arrays, dtype, refuse)
    for kind in sources:
        PackedFeatures(out, kind)
    return {v: n for rows in counts.values() for v, n in zip(videos, rows) if n < 60}


def _whole_videos(src: NpyFeatures, videos: list[str], counts: list[int]) -> Iterator[tuple[str, np.ndarray]]:
    for video, n in zip(videos, counts):
        yield video, src.read(video, np.arange(n))
