"""The per-question-type test report of MUSIC-AVQA (the original ``test()`` of ``net_grd_avst/main_avst.py``), for
any batch size and any test JSON.

Types come from the records of the test file actually evaluated (the original read them from a
hard-coded ``avqa-test.json`` by batch index, which mis-assigns types on ``json_update``). Group and
overall accuracies are micro averages over questions, as in the original.
"""
from __future__ import annotations

from collections.abc import Sequence

from avst.data.annotations import MODALITIES, QUESTION_TYPES, QARecord

SHORT = {"Audio": "A", "Visual": "V", "Audio-Visual": "AV"}


def _acc(correct: int, count: int) -> float | None:
    """Accuracy in %, 2 decimals; None (JSON null) for a type with no questions."""
    return round(100.0 * correct / count, 2) if count else None


def fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def per_type_report(records: Sequence[QARecord], predictions: Sequence[int], labels: Sequence[int],
                    test_file: str) -> dict:
    """Counts and accuracies (%) per type, per modality group and overall."""
    if not (len(records) == len(predictions) == len(labels)):
        raise ValueError(f"{len(records)} records, {len(predictions)} predictions, {len(labels)} labels")
    tally = {t: [0, 0] for t in QUESTION_TYPES}
    for rec, pred, lab in zip(records, predictions, labels):
        cell = tally[(rec.modality, rec.qtype)]
        cell[0] += int(pred) == int(lab)
        cell[1] += 1
    types = {f"{m}/{t}": {"correct": c, "count": n, "accuracy": _acc(c, n)}
             for (m, t), (c, n) in tally.items()}
    groups = {}
    for m in MODALITIES:
        c = sum(v[0] for (mm, _), v in tally.items() if mm == m)
        n = sum(v[1] for (mm, _), v in tally.items() if mm == m)
        groups[m] = {"correct": c, "count": n, "accuracy": _acc(c, n)}
    c = sum(v[0] for v in tally.values())
    return {"test_file": test_file, "questions": len(records), "types": types, "groups": groups,
            "overall": {"correct": c, "count": len(records), "accuracy": _acc(c, len(records))}}


def to_markdown(report: dict, chance: dict[str, float] | None = None) -> str:
    """A table in the paper's column order: types, then the three group averages, then overall."""
    rows = [(f"{SHORT[m]}-{t}", report["types"][f"{m}/{t}"], f"{m}/{t}") for m, t in QUESTION_TYPES]
    rows += [(f"{SHORT[m]}-Avg", report["groups"][m], m) for m in MODALITIES]
    rows.append(("All", report["overall"], "All"))
    head = "| type | correct | count | accuracy % |" + (" chance % |" if chance else "")
    sep = "|---|---:|---:|---:|" + ("---:|" if chance else "")
    lines = [f"Test file: `{report['test_file']}` ({report['questions']} questions)", "", head, sep]
    for name, cell, key in rows:
        line = f"| {name} | {cell['correct']} | {cell['count']} | {fmt_pct(cell['accuracy'])} |"
        if chance:
            line += f" {fmt_pct(chance.get(key))} |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def per_question_lines(records: Sequence[QARecord], predictions: Sequence[int], labels: Sequence[int],
                       answers: Sequence[str], extra: dict[str, Sequence[int]] | None = None) -> str:
    """One tab-separated line per question: id, predicted answer, true answer, correct, then one column
    per ``extra`` prediction list (e.g. ``prediction_no_audio``)."""
    extra = extra or {}
    out = ["\t".join(["question_id", "prediction", "answer", "correct", *extra])]
    for i, (rec, pred, lab) in enumerate(zip(records, predictions, labels)):
        cells = [str(rec.question_id), answers[int(pred)], rec.answer, str(int(pred) == int(lab))]
        out.append("\t".join(cells + [answers[int(p[i])] for p in extra.values()]))
    return "\n".join(out) + "\n"


def flat_accuracies(report: dict) -> dict[str, float | None]:
    """Accuracy (%) per type, per group and "All", keyed like ``to_markdown``'s ``chance`` argument."""
    out = {key: cell["accuracy"] for key, cell in report["types"].items()}
    out |= {m: cell["accuracy"] for m, cell in report["groups"].items()}
    out["All"] = report["overall"]["accuracy"]
    return out


def guess_accuracies(test: Sequence[QARecord], guess: dict[tuple[str, str], str]) -> dict[str, float | None]:
    """Accuracy (%) of answering each test question with ``guess[(modality, type)]`` (a type without a
    guess counts as wrong), keyed like ``flat_accuracies``."""
    preds = [0 if guess.get((r.modality, r.qtype)) == r.answer else 1 for r in test]
    return flat_accuracies(per_type_report(test, preds, [0] * len(test), ""))


def majority_answers(train: Sequence[QARecord]) -> dict[tuple[str, str], str]:
    """The most frequent train answer of each question type (ties: the one seen first)."""
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for r in train:
        answers = counts.setdefault((r.modality, r.qtype), {})
        answers[r.answer] = answers.get(r.answer, 0) + 1
    return {t: max(a, key=a.get) for t, a in counts.items()}


def majority_baseline(train: Sequence[QARecord], test: Sequence[QARecord]) -> dict[str, float | None]:
    """Accuracy (%) of answering each test question with its type's most frequent train answer:
    the chance level a model must beat, keyed like ``to_markdown``'s ``chance`` argument."""
    return guess_accuracies(test, majority_answers(train))
