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
from feat_script.recipes import FRAME_STRIDE


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
        rec = self.records[idx]
        item = {
            "audio": finite(self.audio, "audio", rec.video_id, self.audio.read(rec.video_id, self.rows)),
            "visual_posi": finite(self.visual, "visual", rec.video_id, self.visual.read(rec.video_id, self.rows)),
            "question": self.questions[idx],
            "label": self.labels[idx],
            "index": torch.tensor(idx),
        }
        if self.negatives:
            pairs = self.negative_frames(idx)
            rows = torch.from_numpy(self.visual.read_pairs(pairs))
            bad = (~torch.isfinite(rows.flatten(1)).all(1)).nonzero().flatten().tolist()
            if bad:
                video = pairs[bad[0]][0]
                raise nonfinite_error("visual", video, self.visual.path(video))
            item["visual_nega"] = rows
        return item

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

