"""Pieces shared by the "ask a video a question" paths of MASN and AVST (``masn/answer.py``,
``avst/answer.py``, ``scripts/answer.py``); kept out of the training engine, which never answers.

Both models answer from a vocabulary fixed at training time; a word outside it would silently become
padding or ``UNK``, so it is an error here that names the word and the closest known ones. Stages
are timed so ``--verbose`` can say where the seconds went.
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import torch

from engine.errors import UserError


class AnswerError(UserError, ValueError):
    """A question, video, checkpoint or weights file that cannot be answered from; the message says why."""


def unknown_words(tokens: Sequence[str], known: Iterable[str], source: str) -> None:
    """Raise AnswerError naming every token of ``tokens`` not in ``known``, with the closest known words."""
    vocab = set(known)
    missing = list(dict.fromkeys(t for t in tokens if t not in vocab))
    if not missing:
        return
    parts = []
    for word in missing:
        close = difflib.get_close_matches(word, sorted(vocab), n=5, cutoff=0.5)
        parts.append(f"{word!r} (closest known: {', '.join(close) if close else 'none'})")
    raise AnswerError(f"question word(s) outside the vocabulary of {source}: {'; '.join(parts)}")


def top_k(probs: torch.Tensor, labels: Sequence[str], k: int = 5) -> list[dict]:
    """``[{"answer", "prob"}]`` for the ``k`` most probable classes of a 1-D probability vector."""
    values, index = probs.float().topk(min(k, probs.numel()))
    return [{"answer": labels[i], "prob": round(float(v), 6)} for v, i in zip(values.tolist(), index.tolist())]


class StageTimer:
    """Wall-clock seconds per named stage, in the order they ran."""

    def __init__(self, verbose: bool = False) -> None:
        self.verbose = verbose
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
        if self.verbose:
            print(f"[{self.seconds[name]:7.2f} s] {name}", flush=True)


RANDOM_NOTE = "NOTE: --random-init: the feature extractors have RANDOM weights; answers mean nothing."


def add_extractor_args(p: argparse.ArgumentParser) -> None:
    """The flags every "ask a video" front end shares (scripts/answer.py, the web demo): device, AMP,
    extractor weights and MASN's sampling, with the same names and defaults everywhere."""
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--amp", choices=["off", "bf16", "fp16"], default="off")
    p.add_argument("--random-init", action="store_true", help="random extractor weights (tests and demo only)")
    w = p.add_argument_group("extractor weights (nothing is downloaded; torchvision's cache is looked at)")
    w.add_argument("--resnet18-weights", type=Path, default=None, help="AVST: resnet18-5c106cde.pth")
    w.add_argument("--vggish-weights", type=Path, default=None, help="AVST: converted vggish.pt")
    w.add_argument("--resnet152-weights", type=Path, default=None, help="MASN: resnet152-394f9c45.pth")
    w.add_argument("--i3d-weights", type=Path, default=None, help="MASN: i3d_r50_kinetics.pth")
    w.add_argument("--detector-weights", type=Path, default=None,
                   help="MASN: fasterrcnn_resnet50_fpn_coco-258fb6c6.pth")
    s = p.add_argument_group("MASN sampling (defaults: feat_script's recipe)")
    s.add_argument("--num-clips", type=int, default=None, help="default: the checkpoint's v_max_length")
    s.add_argument("--clip-len", type=int, default=16)
    s.add_argument("--clip-stride", type=int, default=1)
    s.add_argument("--det-min-size", type=int, default=800, help="detector input, shorter side")
    s.add_argument("--det-max-size", type=int, default=1333)
