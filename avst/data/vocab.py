"""Question and answer vocabularies, built exactly as the original dataloaders build them.

Both lists follow first appearance in the *original* train JSON (``data/json/avqa-train.json``), whatever
split is trained or tested, with ``<pad>`` = 0 for words (original ``net_grd_avst/dataloader_avst.py``).
Checkpoints are tied to that order, so the vocabulary is saved as JSON next to every run and inside every
checkpoint.
An answer-order file (``answer2idx.json`` as QA-TIGER ships it for MUSIC-AVQA v2.0, 42 answers with
``ten``) replaces the first-appearance answer order when given.

Unknown words (MUSIC-AVQA-R's 465-word questions against a 93-word model) follow ``oov``: ``error``
(the original: refuse), ``pad`` (the word becomes ``<pad>``, index 0, keeping its position) or
``drop`` (the word is left out). Under ``pad``/``drop`` a question longer than 14 tokens keeps its
first 14; under ``error`` it is refused.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

from avst.data.annotations import MAX_LEN, PAD, QARecord, load_records
from engine.errors import UserError

OOV_POLICIES = ("error", "pad", "drop")


class VocabError(UserError, ValueError):
    """An unknown word/answer or a vocabulary that disagrees with a checkpoint."""


@dataclass(frozen=True)
class Vocab:
    words: tuple[str, ...]
    answers: tuple[str, ...]
    source: str = ""
    oov: str = "error"

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
    def build(cls, vocab_json: str | Path, answer_file: str | Path | None = None) -> Vocab:
        """The original's vocabularies from a train JSON (``--vocab_json``); answers in the order of
        ``answer_file`` when given (``--answer_file``)."""
        vocab = cls.from_records(load_records(vocab_json), str(vocab_json))
        if answer_file is None:
            return vocab
        return replace(vocab, answers=load_answer_order(answer_file),
                       source=f"{vocab_json} + answers {answer_file}")

    def with_oov(self, policy: str) -> Vocab:
        """The same vocabulary with another unknown-word policy (``OOV_POLICIES``)."""
        if policy not in OOV_POLICIES:
            raise VocabError(f"unknown-word policy {policy!r}; choose one of {', '.join(OOV_POLICIES)}")
        return replace(self, oov=policy)

    def unknown_words(self, record: QARecord) -> list[str]:
        return [w for w in record.tokens if w not in self._word_ix]

    def encode_question(self, record: QARecord) -> list[int]:
        """Token indices right-padded with ``<pad>`` to 14; unknown words follow ``oov``."""
        pad = self._word_ix[PAD]
        ids = []
        for w in record.tokens:
            if w in self._word_ix:
                ids.append(self._word_ix[w])
            elif self.oov == "error":
                raise VocabError(f"question_id {record.question_id}: word {w!r} is not in the vocabulary built "
                                 f"from {self.source or 'the train JSON'} (--unknown_words pad|drop accept it)")
            elif self.oov == "pad":
                ids.append(pad)
        if len(ids) > MAX_LEN:
            if self.oov == "error":
                raise VocabError(f"question_id {record.question_id}: question has {len(ids)} tokens, more than "
                                 f"{MAX_LEN} (--unknown_words pad|drop keep the first {MAX_LEN})")
            ids = ids[:MAX_LEN]
        return ids + [pad] * (MAX_LEN - len(ids))

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


def load_answer_order(path: str | Path) -> tuple[str, ...]:
    """Answers by index from ``{"ans2ix": {answer: index}}`` (QA-TIGER, MUSIC-AVQA-R), a plain
    ``{answer: index}`` object or a JSON list; the indices must be 0..n-1, each once."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except json.JSONDecodeError as err:
        raise VocabError(f"{path}: not valid JSON ({err}); give an answer2idx.json") from None
    mapping = raw.get("ans2ix", raw) if isinstance(raw, dict) else {a: i for i, a in enumerate(raw)} \
        if isinstance(raw, list) else None
    if not isinstance(mapping, dict) or not mapping or \
            sorted(mapping.values()) != list(range(len(mapping))):
        raise VocabError(f"{path}: expected {{\"ans2ix\": {{answer: index}}}} or a list of answers with indices "
                         "0..n-1, each once")
    return tuple(sorted(mapping, key=mapping.get))
