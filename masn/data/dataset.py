"""One Dataset for every MASN task: encoded text in memory, video features read per item.

Items are the original's tuples (``data_utils/dataset.py``, ``__getitem__``), so default collation gives the batches
``model(task, *batch)`` expects.
"""
from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

from masn.data.features import VideoFeatures


class QADataset(Dataset):
    """``fields`` are per-question arrays appended after the six video entries, in order."""

    def __init__(self, task: str, video_ids: np.ndarray, fields: list[np.ndarray], features: VideoFeatures,
                 question_ids: list[str] | None = None):
        if any(len(f) != len(video_ids) for f in fields):
            raise ValueError("every field needs one entry per question")
        self.task = task
        self.video_ids = video_ids
        self.fields = fields
        self.features = features
        self.question_ids = question_ids

    def __len__(self) -> int:
        return len(self.video_ids)

    def __getitem__(self, index: int) -> tuple:
        video = self.features.read(self.video_ids[index])
        return (*video, *(f[index] for f in self.fields))
