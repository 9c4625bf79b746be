"""Random inputs for MASN and AVST at given sizes, laid out as their datasets hand them to the tasks
(``masn.tasks.MASNTask`` takes the list, ``avst.tasks.AVQATask`` the dict), so the tasks' own losses run
on them. Padding is real: rows past a video's or a question's length are zero."""
from __future__ import annotations

from collections.abc import Sequence

import torch

MULTIPLE_CHOICE = ("Action", "Trans")
AVST_WORDS, AVST_QUESTION_LEN, AVST_ANSWERS = 93, 14, 42


def masn_video(generator: torch.Generator, batch: int, frames: int, objects: int, feat: int,
               lengths: torch.Tensor) -> list[torch.Tensor]:
    """The five feature streams (ResNet, I3D, ResNet RoIAlign, boxes, I3D RoIAlign), zero past ``lengths``."""
    feats = [torch.randn(batch, frames, feat, generator=generator),
             torch.randn(batch, frames, feat, generator=generator),
             torch.randn(batch, frames, objects, feat, generator=generator),
             torch.rand(batch, frames, objects, 6, generator=generator),
             torch.randn(batch, frames, objects, feat, generator=generator)]
    for b, n in enumerate(lengths.tolist()):
        for x in feats:
            x[b, n:] = 0
    return feats


def masn_batch(task: str, *, batch: int = 4, frames: int = 20, objects: int = 10, feat: int = 2048,
               words: int = 20, vocab: int = 100, seed: int = 0, video_lengths: Sequence[int] | None = None,
               question_lengths: Sequence | None = None) -> list[torch.Tensor]:
    """``[*features, video_len, tokens, question_len, *answers]`` for ``MASN(task, *batch)``.

    Random lengths unless given; then the first video has all ``frames`` and the first question
    ``words - 1`` tokens, so every batch pads as a full one does. Action/Trans have 5 candidates per
    question; the tail is the answer (Count: 1..5 as a float; Action/Trans: with the row index; FrameQA:
    with answer type 0).
    """
    g = torch.Generator().manual_seed(seed)
    if video_lengths is None:
        vid_len = torch.randint(1, frames + 1, (batch,), generator=g)
        vid_len[0] = frames
    else:
        vid_len = torch.tensor(video_lengths)
    feats = masn_video(g, batch, frames, objects, feat, vid_len)
    shape = (batch, 5) if task in MULTIPLE_CHOICE else (batch,)
    if question_lengths is None:
        q_len = torch.randint(2, words, shape, generator=g)
        q_len.view(-1)[0] = words - 1
    else:
        q_len = torch.tensor(question_lengths)
    tokens = torch.randint(2, vocab, (*shape, words), generator=g) * (torch.arange(words) < q_len.unsqueeze(-1))
    answers = torch.randint(0, 5, (batch,), generator=g)
    tail = {"Count": [answers.float() + 1], "Action": [answers, torch.arange(batch)],
            "Trans": [answers, torch.arange(batch)], "FrameQA": [answers, torch.zeros(batch, dtype=torch.long)],
            "MS-QA": [answers]}[task]
    return [*feats, vid_len, tokens, q_len, *tail]


def avst_batch(*, batch: int = 8, frames: int = 10, hw: int = 14, seed: int = 0) -> dict[str, torch.Tensor]:
    """An AVST training batch: VGGish-like audio [B, T, 128] (>= 0), ReLU maps [B, T, 512, hw, hw] for the
    positive and negative frames, questions [B, 14] (the first padded after 8 words), labels [B]."""
    g = torch.Generator().manual_seed(seed)
    out = {"audio": torch.randn(batch, frames, 128, generator=g).abs(),
           "visual_posi": torch.randn(batch, frames, 512, hw, hw, generator=g).relu(),
           "visual_nega": torch.randn(batch, frames, 512, hw, hw, generator=g).relu(),
           "question": torch.randint(1, AVST_WORDS, (batch, AVST_QUESTION_LEN), generator=g),
           "label": torch.randint(0, AVST_ANSWERS, (batch,), generator=g)}
    out["question"][0, 8:] = 0
    return out
