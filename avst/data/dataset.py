"""The MUSIC-AVQA dataset for AVST and the baseline (original ``net_grd_avst/dataloader_avst.py::AVQA_dataset``).

Per question: VGGish rows 0, 6, ..., 54 and the same 14x14 frames (the positive), and for each of the
10 positions a negative frame drawn by the original rule: a uniform index into the 60 frames of every
video of the split, redrawn while it falls in the question's own video. The draw comes from a generator
seeded with (seed, epoch, index) instead of the unseeded global ``random``, so a run reproduces and a
sample does not depend on which worker loads it; ``set_epoch`` (called by the engine) gives each epoch
fresh negatives. Evaluation never needs negatives (they do not affect ``out_qa``, original ``AVQA_Fusion_Net.forward``).
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from avst.data.annotations import AnnotationError, QARecord, video_list
from avst.data.features import ROWS, FeatureError, feature_problems, nonfinite_error
from avst.data.vocab import Vocab
from engine.batching import ReadBatch, batch_empty, nonfinite_rows
from feat_script.recipes import FRAME_STRIDE

CHECK_BYTES = 1 << 18  # rows read, then checked for NaN / inf while they still sit in the CPU cache


class AVQADataset(Dataset):
    """Items are dicts of tensors: audio [10,128], visual_posi (and visual_nega) [10,512,14,14],
    question [14], label [], index [] (position in the JSON, for the per-question report)."""

    def __init__(self, records: list[QARecord], vocab: Vocab, audio, visual, *, negatives: bool = True,
                 seed: int = 1) -> None:
        self.records = records
        self.audio = audio
        self.visual = visual
        self.negatives = negatives
        self.seed = seed
        self.epoch = 0
        self.questions = torch.tensor([vocab.encode_question(r) for r in records], dtype=torch.long)
        self.labels = torch.tensor([vocab.answer_index(r) for r in records], dtype=torch.long)
        self.video_list = video_list(records)
        self.video_index = {v: i for i, v in enumerate(self.video_list)}
        if negatives and len(self.video_list) < 2:
            raise AnnotationError(f"the split has {len(self.video_list)} video(s); negative sampling needs at least "
                                  "two: add questions about other videos")
        check_features(self.video_list, {"audio": audio, "visual": visual})
        self.rows = np.arange(0, ROWS, FRAME_STRIDE)

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def negative_frames(self, idx: int) -> list[tuple[str, int]]:
        """(video, frame) of the 10 negatives of item ``idx`` in the current epoch."""
        rng = np.random.default_rng([self.seed, self.epoch, idx])
        own = self.video_index[self.records[idx].video_id]
        video_len = ROWS * len(self.video_list)
        out = []
        for _ in self.rows:
            frame = int(rng.integers(video_len))
            while frame // ROWS == own:
                frame = int(rng.integers(video_len))
            out.append((self.video_list[frame // ROWS], frame % ROWS))
        return out

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([idx])[0]

    def __getitems__(self, indices: list[int]) -> ReadBatch:
        """Items ``indices`` as one batch (the DataLoader's batched fetch): each kind read straight into its
        batch tensor and checked for NaN / inf as it is read; a bad row names its video, the first bad
        item's, in the order audio, positives, negatives (which would end training at step 1)."""
        videos = [self.records[i].video_id for i in indices]
        posi = [(video, int(row)) for video in videos for row in self.rows]
        audio, bad_audio = self._read(self.audio, posi, len(indices))
        visual, bad_posi = self._read(self.visual, posi, len(indices))
        batch = {"audio": audio, "visual_posi": visual, "question": self.questions[indices],
                 "label": self.labels[indices], "index": torch.tensor(indices, dtype=torch.long)}
        checks = [("audio", self.audio, bad_audio, None), ("visual", self.visual, bad_posi, None)]
        if self.negatives:
            nega = [self.negative_frames(i) for i in indices]
            batch["visual_nega"], bad_nega = self._read(self.visual, [p for pairs in nega for p in pairs], len(indices))
            checks.append(("visual", self.visual, bad_nega, nega))
        flags = np.stack([bad.any(1) for _, _, bad, _ in checks], 1)
        if flags.any():
            item, which = np.argwhere(flags)[0]
            kind, source, bad, pairs = checks[which]
            video = videos[item] if pairs is None else pairs[item][int(np.argmax(bad[item]))][0]
            raise nonfinite_error(kind, video, source.path(video))
        return ReadBatch(batch, len(indices))

    @staticmethod
    def _read(source, pairs: list[tuple[str, int]], items: int) -> tuple[torch.Tensor, np.ndarray]:
        """(rows [items, rows per item, *row_shape], which of them hold NaN / inf [items, rows per item]),
        checked a few rows at a time, while they are still in the CPU cache; a store checked when it was
        packed (``source.checked``) is trusted, not scanned."""
        out = batch_empty((len(pairs), *source.row_shape), source.dtype(pairs[0][0]))
        flat = out.numpy()
        bad = np.zeros(len(pairs), dtype=bool)
        step = max(1, CHECK_BYTES // flat[0].nbytes)
        for start in range(0, len(pairs), step):
            source.read_pairs(pairs[start:start + step], flat[start:start + step])
            if not source.checked:
                bad[start:start + step] = nonfinite_rows(flat[start:start + step])
        return out.view(items, -1, *source.row_shape), bad.reshape(items, -1)

    def short_videos(self) -> dict[str, dict[str, int]]:
        """Videos whose files have fewer than 60 rows (padded by repeating the last row), per kind."""
        out: dict[str, dict[str, int]] = {}
        for name, src in (("audio", self.audio), ("visual", self.visual)):
            rows = {v: src.num_rows(v) for v in self.video_list}
            out[name] = {v: n for v, n in rows.items() if n < ROWS}
        return out


def check_features(videos: list[str], sources: dict) -> None:
    """Before the first step: every video of the split has readable features of every kind."""
    problems = feature_problems(videos, sources)
    if problems:
        raise FeatureError(f"{len(problems)} feature file(s) of this split cannot be used, the first: {problems[0]}"
                           "; scripts/check_data.py music-avqa lists them all")


def finite(source, kind: str, video_id: str, rows: np.ndarray) -> torch.Tensor:
    """The rows as a tensor; NaN / inf (which would end training at step 1) names the video instead."""
    out = torch.from_numpy(rows)
    if not torch.isfinite(out).all():
        raise nonfinite_error(kind, video_id, source.path(video_id))
    return out

