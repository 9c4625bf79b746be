"""Question and answer vocabularies, built exactly as the original dataloaders build them.

Both lists follow first appearance in the *original* train JSON (``data/json/avqa-train.json``), whatever
split is trained or tested, with ``<pad>`` = 0 for words (original ``net_grd_avst/dataloader_avst.py``).
Checkpoints are tied to that order, so the vocabulary is saved as JSON next to every run and inside every
checkpoint.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from avst.data.annotations import MAX_LEN, PAD, QARecord, load_records
from engine.errors import UserError


class VocabError(UserError, ValueError):
    """An unknown word/answer or a vocabulary that disagrees with a checkpoint."""


@dataclass(frozen=True)
class Vocab:
    words: tuple[str, ...]
    answers: tuple[str, ...]
    source: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "_word_ix", {w: i for i, w in enumerate(self.words)})
        object.__setattr__(self, "_ans_ix", {a: i for i, a in enumerate(self.answers)})

    @classmethod
    def from_records(cls, records: list[QARecord], source: str = "") -> Vocab:
        words = dict.fromkeys([PAD])
        answers: dict[str, None] = {}
        for r in records:
            words.update(dict.fromkeys(r.tokens))
            answers.setdefault(r.answer, None)
        return cls(tuple(words), tuple(answers), source)

    @classmethod
    def build(cls, vocab_json: str | Path) -> Vocab:
        """The original's vocabularies from a train JSON (``--vocab_json``)."""
        return cls.from_records(load_records(vocab_json), str(vocab_json))

    def encode_question(self, record: QARecord) -> list[int]:
        """Token indices right-padded with ``<pad>`` to 14; an unknown word names the question."""
        try:
            ids = [self._word_ix[w] for w in record.tokens]
        except KeyError as err:
            raise VocabError(f"question_id {record.question_id}: word {err.args[0]!r} is not in the "
                             f"vocabulary built from {self.source or 'the train JSON'}") from None
        return ids + [self._word_ix[PAD]] * (MAX_LEN - len(ids))

    def answer_index(self, record: QARecord) -> int:
        try:
            return self._ans_ix[record.answer]
        except KeyError:
            raise VocabError(f"question_id {record.question_id}: answer {record.answer!r} is not among the "
                             f"{len(self.answers)} answers built from {self.source or 'the train JSON'}"
                             ) from None

    def to_dict(self) -> dict:
        return {"source": self.source, "words": list(self.words), "answers": list(self.answers),
                "sha256": self.sha256()}

    @classmethod
    def from_dict(cls, d: dict) -> Vocab:
        return cls(tuple(d["words"]), tuple(d["answers"]), d.get("source", ""))

    def sha256(self) -> str:
        blob = json.dumps([list(self.words), list(self.answers)], ensure_ascii=False).encode()
        return hashlib.sha256(blob).hexdigest()

    def check_sizes(self, n_words: int, n_answers: int, what: str) -> None:
        """Raise when a model's embedding/answer sizes disagree with this vocabulary."""
        if (n_words, n_answers) != (len(self.words), len(self.answers)):
            raise VocabError(
                f"{what}: the model has {n_words} word rows and {n_answers} answers, but the vocabulary "
                f"from {self.source or '?'} has {len(self.words)} words (incl. <pad>) and "
                f"{len(self.answers)} answers; build it from the train JSON the model was trained with "
                "(--vocab_json)")
