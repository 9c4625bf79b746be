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
from feat_script.base import resolve_weights


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


def weights_file(path: Path | None, random_init: bool, names: str | Sequence[str], source: str,
                 what: str) -> Path | None:
    """The extractor weights to load (None = random init), or AnswerError naming the file to get."""
    args = argparse.Namespace(weights=path, random_init=random_init)
    try:
        return resolve_weights(args, names, source, what)
    except ValueError as err:
        raise AnswerError(str(err).replace("--weights", f"the {what} weights")) from None


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
