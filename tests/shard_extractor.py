"""A model-free extractor for the shard tests: video ``v<k>.mp4`` gives rows [3, 4] of the value k (nothing is
decoded; each load waits a little so that the shards' writes interleave). Run as the extraction CLI."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from feat_script.base import Extractor, main


class Numbered(Extractor):
    name = "numbered"
    default_store = "hdf5"
    batched_input = "frames"

    def load(self, video: Path) -> dict[str, np.ndarray]:
        time.sleep(0.05)
        return {"frames": np.full((3, 4), float(video.stem[1:]), np.float32)}


if __name__ == "__main__":
    raise SystemExit(main(Numbered))
