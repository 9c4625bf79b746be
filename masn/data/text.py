"""Tokenizer and word vocabulary exactly as the original (``data_util.clean_str`` + neuraltalk vocab).

The tokenizer keeps the original's quirk: ``(``, ``)`` and ``?`` become the literal tokens
``\\(``, ``\\)`` and ``\\?`` (the replacement strings kept their backslash), which never match GloVe.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

import numpy as np

EOS = "<EOS>"
PAD, UNK = 0, 1

_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9(),!?'`_]")
_SUBS = [
    (re.compile(r"'s"), " 's"),
    (re.compile(r"'ve"), " 've"),
    (re.compile(r"n't"), " n't"),
    (re.compile(r"'re"), " 're"),
    (re.compile(r"'d"), " 'd"),
    (re.compile(r"'ll"), " 'll"),
    (re.compile(r","), " , "),
    (re.compile(r"!"), " ! "),
    (re.compile(r"\("), r" \\( "),
    (re.compile(r"\)"), r" \\) "),
    (re.compile(r"\?"), r" \\? "),
    (re.compile(r"\s{2,}"), " "),
]


def clean_str(text: str) -> str:
    """Kim's CNN_sentence cleaner as used by MASN/HGA (lower-cased)."""
    text = _NOT_ALLOWED.sub(" ", text)
    for pattern, repl in _SUBS:
        text = pattern.sub(repl, text)
    return text.strip().lower()


def tokenize(text: str) -> list[str]:
    return clean_str(text).split()


def vocab_sha256(words: list[str]) -> str:
    """The identity of a word list (order included), stored in checkpoints and the GloVe matrix cache."""
    return hashlib.sha256("\n".join(words).encode("utf-8")).hexdigest()


class Vocabulary:
    """Word index: ``#START#`` -> 0 (pad), ``UNK`` -> 1, then words in order of first appearance."""

    def __init__(self, words: list[str]):
        self.words = list(words)
        self.word2idx = {"#START#": PAD, "UNK": UNK}
        for i, w in enumerate(self.words, start=2):
            self.word2idx[w] = i

    @classmethod
    def build(cls, sentences: Iterable[str]) -> Vocabulary:
        """Every token of every sentence plus one ``<EOS>`` per sentence (threshold 0)."""
        seen: dict[str, None] = {}
        for sentence in sentences:
            for w in tokenize(sentence):
                seen.setdefault(w, None)
            seen.setdefault(EOS, None)
        return cls(list(seen))

    def __len__(self) -> int:
        """Rows of the embedding matrix: pad and UNK included."""
        return len(self.words) + 2

    def encode(self, text: str, max_len: int) -> tuple[np.ndarray, int]:
        """Token ids right-padded with 0 to ``max_len`` and the clipped length (unknown words -> UNK)."""
        ids = [self.word2idx.get(w, UNK) for w in tokenize(text)][:max_len]
        out = np.zeros(max_len, dtype=np.int64)
        out[: len(ids)] = ids
        return out, len(ids)
