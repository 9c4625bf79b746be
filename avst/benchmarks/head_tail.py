"""Head/tail answers by MUSIC-AVQA-R's rule (Ma et al. 2024, reml-group/MUSIC-AVQA-R README).

Within each question type, μ(a) is the mean number of questions per distinct answer; an answer whose
count exceeds 1.2 μ(a) is "head", every other answer is "tail". The counts come from the records given
(reports use the test file being evaluated, as R split its own test set, and say so).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from avst.data.annotations import QARecord

HEAD_FACTOR = 1.2


def head_answers(records: Sequence[QARecord]) -> dict[tuple[str, str], set[str]]:
    """(modality, type) -> the set of its head answers."""
    counts: dict[tuple[str, str], Counter] = {}
    for r in records:
        counts.setdefault((r.modality, r.qtype), Counter())[r.answer] += 1
    out = {}
    for t, c in counts.items():
        mean = sum(c.values()) / len(c)
        out[t] = {a for a, n in c.items() if n > HEAD_FACTOR * mean}
    return out


def is_head(records: Sequence[QARecord], counts_from: Sequence[QARecord]) -> list[bool]:
    heads = head_answers(counts_from)
    return [r.answer in heads.get((r.modality, r.qtype), set()) for r in records]
