"""Answer-prior baselines for TGIF-QA: what MASN scores against without looking at the video.

    python -m masn.priors --task Count --df_dir data/tgif-qa/question [--json]

- Count: predict one constant, the mean train count (answers 0 -> 1 as the loader does), rounded and
  clamped to 1..10 like MASN's prediction; reported as test MSE (MASN's metric), beside the MSE of the
  unrounded mean.
- Action / Trans: a simple candidates-only scorer, counted, not trained by gradient: each candidate text
  (stripped, lower-cased) scores (times it was the right answer in train + 1) / (times it was shown in
  train + 5); the highest of the five wins (ties: the first). No question, no video. Answer-only models
  are known to score far above the 20 % chance level on these tasks.
- FrameQA: the most frequent train answer of each question type (object, number, color, location).
MASN's published numbers are in the table of docs/benchmarks.md (avst/benchmarks/published.py, checked
by the tests); masn does not import avst.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import pandas as pd

from engine.cli import CommandParser, accept_both_spellings
from engine.errors import run_cli
from masn.data.tgif import CANDIDATES, TASKS, csv_path, read_csv


def count_prior(train: pd.DataFrame, test: pd.DataFrame) -> dict:
    truth = test["answer"].clip(lower=1).astype(float)
    mean = float(train["answer"].clip(lower=1).mean())
    guess = float(min(max(round(mean), 1), 10))
    return {"metric": "mse", "guess": guess, "mse": float(((truth - guess) ** 2).mean()),
            "mse_unrounded_mean": float(((truth - mean) ** 2).mean())}


def _text(value) -> str:
    return str(value).strip().lower()


def candidate_prior(train: pd.DataFrame, test: pd.DataFrame) -> dict:
    shown, right = Counter(), Counter()
    for row in train.itertuples(index=False):
        options = [_text(getattr(row, c)) for c in CANDIDATES]
        shown.update(options)
        right[options[int(row.answer)]] += 1
    hits = 0
    for row in test.itertuples(index=False):
        scores = [(right[t] + 1) / (shown[t] + 5) for t in (_text(getattr(row, c)) for c in CANDIDATES)]
        hits += scores.index(max(scores)) == int(row.answer)
    return {"metric": "accuracy %", "accuracy": 100.0 * hits / len(test), "chance": 20.0}


def frameqa_prior(train: pd.DataFrame, test: pd.DataFrame) -> dict:
    majority = {t: Counter(g["answer"].astype(str)).most_common(1)[0][0] for t, g in train.groupby("type")}
    hits = sum(majority.get(t) == str(a) for t, a in zip(test["type"], test["answer"]))
    return {"metric": "accuracy %", "accuracy": 100.0 * hits / len(test)}


PRIORS = {"Count": count_prior, "Action": candidate_prior, "Trans": candidate_prior, "FrameQA": frameqa_prior}


def prior(task: str, csv_dir: Path) -> dict:
    train, test = (read_csv(csv_path(csv_dir, task, s), task) for s in ("train", "test"))
    out = {"task": task, "train_questions": len(train), "test_questions": len(test), **PRIORS[task](train, test)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = CommandParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--df_dir", "--csv-dir", dest="csv_dir", type=Path, required=True, help="TGIF-QA CSV folder")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = accept_both_spellings(p).parse_command(argv)
    out = prior(args.task, args.csv_dir)
    if args.json:
        print(json.dumps(out))
        return 0
    print(describe(out))
    return 0


def describe(out: dict) -> str:
    """One line for a report: the prior's figure in the task's metric."""
    value = f"MSE {out['mse']:.3f} (constant {out['guess']:.0f})" if out["task"] == "Count" else \
        f"accuracy {out['accuracy']:.2f} %"
    return f"TGIF-QA {out['task']} answer prior (no video) on {out['test_questions']} test questions: {value}"


if __name__ == "__main__":
    sys.exit(run_cli(main))
