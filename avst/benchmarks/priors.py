"""Answer-prior baselines from the training split: what a model scores without looking or listening.

``majority``: each question type's most frequent train answer. ``mean_count``: for the three Counting
types, the number word nearest to the mean train count of that type ("more than ten" counts as 11, the
closest it can be; ties round half to even); other types get no guess (reported as "-").
"""
from __future__ import annotations

from collections.abc import Sequence

from avst.data.annotations import QARecord
from avst.report import guess_accuracies, majority_answers

NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "more than ten")


def mean_count_answers(train: Sequence[QARecord]) -> dict[tuple[str, str], str]:
    """Counting type -> the number word closest to its mean train count (numeric answers only)."""
    sums: dict[tuple[str, str], list[int]] = {}
    for r in train:
        if r.qtype == "Counting" and r.answer in NUMBERS:
            sums.setdefault((r.modality, r.qtype), []).append(NUMBERS.index(r.answer))
    return {t: NUMBERS[round(sum(v) / len(v))] for t, v in sums.items()}


def prior_baselines(train: Sequence[QARecord], test: Sequence[QARecord]) -> dict[str, dict]:
    """{"majority": accuracies, "mean_count": accuracies (Counting types only)}, keyed per type/group/All."""
    counting = mean_count_answers(train)
    mean = guess_accuracies(test, counting)
    keep = {f"{m}/{t}" for m, t in counting}
    return {"majority": guess_accuracies(test, majority_answers(train)),
            "mean_count": {k: (v if k in keep else None) for k, v in mean.items() if "/" in k}}
