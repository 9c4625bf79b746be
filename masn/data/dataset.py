"""One Dataset for every MASN task: encoded text in memory, video features read per item or per batch.

Items are the original's tuples (``data_utils/dataset.py``, ``__getitem__``), so default collation gives the batches
``model(task, *batch)`` expects; ``__getitems__`` gives the same batches read in one pass.
"""
from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset, default_collate

from engine.batching import ReadBatch
from masn.data.features import PaddedBatches


class QADataset(Dataset):
    """``fields`` are per-question arrays appended after the six video entries, in order."""

    def __init__(self, task: str, video_ids: np.ndarray, fields: list[np.ndarray], features: PaddedBatches,
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

    def __getitems__(self, indices: list[int]) -> ReadBatch:
        """Items ``indices`` as one batch (the DataLoader's batched fetch): video arrays read straight into
        the batch tensors, the text fields collated as ``default_collate`` would."""
        video = self.features.read_batch([self.video_ids[i] for i in indices])
        fields = [default_collate([f[i] for i in indices]) for f in self.fields]
        return ReadBatch([*video, *fields], len(indices))
