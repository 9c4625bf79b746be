"""Tiny random AVST and MASN FrameQA checkpoints, and a generated video they can be asked about.

The answer tests, the web page's browser test and ``scripts/web_screenshot.py`` run the whole path
(ffmpeg video -> features -> model) on these: checkpoints in the format of avst/main_avst.py and
masn/main.py (weights + vocabulary / answer index in ``meta``), extractors with ``--random-init`` and
the small MASN sampling of ``SMALL``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from avst.data.vocab import Vocab
from avst.model.checkpoint import AvstMeta
from engine.checkpoint import save_checkpoint
from feat_script.synthetic_video import Shape
from masn.data.text import vocab_sha256

SHAPES = [Shape("red", 440, 20, 40), Shape("blue", 660, 70, 25)]
AVST_WORDS = ("<pad>", "Is", "the", "violin", "in", "video", "always", "playing", "How", "many", "instruments",
              "are", "sounding")
AVST_ANSWERS = ("yes", "no", "one", "two", "three", "six")
MASN_WORDS = ["what", "colour", "is", "the", "car", "\\?", "<EOS>", "does", "man", "do", "nod", "wave", "jump",
              "clap", "spin", "red", "blue"]
MASN_ANSWERS = ["red", "blue", "car", "man"]
SMALL = {"num_clips": 3, "clip_len": 8, "clip_stride": 1, "det_min_size": 96, "det_max_size": 128}


def write_checkpoints(d: Path) -> dict[str, Path]:
    """Tiny random AVST and MASN FrameQA checkpoints (AVST_WORDS, MASN_WORDS) in ``d``."""
    torch.manual_seed(0)
    from avst.model import AVST
    from masn.model import MASN

    vocab = Vocab(AVST_WORDS, AVST_ANSWERS, "test")
    avst = AVST(vocab_size=len(vocab.words), num_answers=len(vocab.answers))
    save_checkpoint(d / "avst.pt", {"model": avst.state_dict(), "meta": AvstMeta(vocab).to_dict()})
    n = len(MASN_WORDS) + 2
    masn = MASN(n, 1, np.random.RandomState(0).randn(n, 300).astype(np.float32), 2048, 2048, 512,
                dropout_p=0.3, gcn_layers=2, answer_vocab_size=len(MASN_ANSWERS), q_max_len=20, v_max_len=4)
    meta = {"model": "masn", "dataset": "tgif-qa", "task": "FrameQA", "vocab_words": MASN_WORDS,
            "vocab_sha256": vocab_sha256(MASN_WORDS), "q_max_length": 20, "v_max_length": 4,
            "answers": MASN_ANSWERS}
    save_checkpoint(d / "masn.pt", {"model": masn.state_dict(), "meta": meta})
    return {"avst": d / "avst.pt", "masn": d / "masn.pt"}


def web_argv(checkpoints: dict[str, Path], *extra: str) -> list[str]:
    """``python -m webdemo`` flags serving ``checkpoints`` on any free local port, extractors random, MASN small."""
    small = [f"--{k.replace('_', '-')}={v}" for k, v in SMALL.items()]
    return ["--avst-checkpoint", str(checkpoints["avst"]), "--masn-checkpoint", str(checkpoints["masn"]),
            "--port", "0", "--random-init", "--device", "cpu", *small, *extra]
