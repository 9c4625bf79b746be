"""How many questions the unknown-word policy touched, per question type (reports and check_data)."""
from __future__ import annotations

from collections.abc import Sequence

from avst.data.annotations import MAX_LEN, QUESTION_TYPES, QARecord
from avst.data.vocab import Vocab


def oov_counts(records: Sequence[QARecord], vocab: Vocab) -> dict[str, dict[str, int]]:
    """Per type: questions with an unknown word, and questions longer than 14 tokens after the policy."""
    affected = {f"{m}/{t}": 0 for m, t in QUESTION_TYPES}
    truncated = dict(affected)
    for r in records:
        unknown = vocab.unknown_words(r)
        affected[f"{r.modality}/{r.qtype}"] += bool(unknown)
        kept = len(r.tokens) - (len(unknown) if vocab.oov == "drop" else 0)
        truncated[f"{r.modality}/{r.qtype}"] += kept > MAX_LEN
    return {"affected": affected, "truncated": truncated}
