"""TGIF-QA: the tab-separated CSVs of the four tasks, encoded exactly as the original (``data_utils/dataset.py`` and
``data_util.py``).

Count answers 0 -> 1; Action/Trans encode ``question.strip() + ' ' + candidate.strip()`` for the five
candidates into a (5, q_max_length) matrix; FrameQA maps answers through the answer index (unknown
-> class 1). The word vocabulary is built from the task's *train* CSV.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from engine.errors import UserError
from masn.data.text import Vocabulary

TASKS = ("Count", "Action", "Trans", "FrameQA")
FILE_TAG = {"Count": "count", "Action": "action", "Trans": "transition", "FrameQA": "frameqa"}
CANDIDATES = ("a1", "a2", "a3", "a4", "a5")
COLUMNS = {
    "Count": ("question", "answer", "vid_id", "key"),
    "Action": ("question", *CANDIDATES, "answer", "vid_id", "key"),
    "Trans": ("question", *CANDIDATES, "answer", "vid_id", "key"),
    "FrameQA": ("question", "answer", "type", "vid_id", "key", "description"),
}
VOCAB_COLUMNS = {
    "Count": ("question",),
    "Action": ("question", *CANDIDATES),
    "Trans": ("question", *CANDIDATES),
    "FrameQA": ("description", "question", "answer"),
}
FRAMEQA_TYPES = ("object", "number", "color", "location")


class DataError(UserError, ValueError):
    """An annotation file that cannot be used as it is."""


def csv_path(csv_dir: Path, task: str, split: str) -> Path:
    """``split`` in train/test/total -> e.g. ``Train_count_question.csv``."""
    return Path(csv_dir) / f"{split.capitalize()}_{FILE_TAG[task]}_question.csv"


def read_csv(path: Path, task: str) -> pd.DataFrame:
    """One CSV, with its columns, answers and questions checked; errors name the file."""
    if task not in TASKS:
        raise DataError(f"unknown TGIF-QA task {task!r}; choose one of {', '.join(TASKS)}")
    if not path.is_file():
        raise DataError(f"{path}: file not found (TGIF-QA CSVs come from github.com/YunseokJANG/tgif-qa, "
                        "dataset/; pass their folder as --df_dir)")
    try:
        df = pd.read_csv(path, sep="\t")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a tab-separated TGIF-QA file: {e}") from None
    missing = [c for c in COLUMNS[task] if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} for task {task} "
                        f"(found: {', '.join(map(str, df.columns))}; the file must be tab-separated)")
    bad_q = df["question"].isna() | (df["question"].astype(str).str.strip() == "")
    if bad_q.any():
        rows = (np.flatnonzero(bad_q.to_numpy()) + 2).tolist()
        raise DataError(f"{path}: {len(rows)} empty question(s) at line(s) {rows[:10]}")
    numeric = ["key"] + (["answer"] if task != "FrameQA" else ["type"])
    for col in numeric:
        if not pd.api.types.is_integer_dtype(df[col]):
            raise DataError(f"{path}: column {col!r} must hold integers")
    if task in ("Action", "Trans"):
        if df[list(CANDIDATES)].isna().any().any():
            raise DataError(f"{path}: empty answer candidate(s) in a1..a5")
        if not df["answer"].between(0, 4).all():
            raise DataError(f"{path}: 'answer' must be the candidate index 0..4")
    if task == "FrameQA" and df["answer"].isna().any():
        raise DataError(f"{path}: empty answer(s)")
    label_ranges = {"Count": ("answer", 0, None), "FrameQA": ("type", 0, len(FRAMEQA_TYPES) - 1)}
    if task in label_ranges:
        col, low, high = label_ranges[task]
        bad = (df[col] < low) | (df[col] > high if high is not None else False)
        if bad.any():
            lines = (np.flatnonzero(bad.to_numpy()) + 2).tolist()
            allowed = f"{low}..{high}" if high is not None else f">= {low}"
            raise DataError(f"{path}: {len(lines)} {col!r} value(s) outside {allowed} (line(s) {lines[:10]}, "
                            f"e.g. {df[col][bad].iloc[0]}); correct the file")
    return df


def check_keys(frames: dict[Path, pd.DataFrame]) -> None:
    """Identifiers: ``vid_id`` names one question of its file (the per-question reports use it), and across
    the files a feature ``key`` belongs to one GIF (``gif_name``), else two GIFs would read the same features.

    One GIF may appear under several keys (harmless), as it does in no released file.
    """
    rows = pd.concat([df.assign(file=str(path), line=np.arange(len(df)) + 2) for path, df in frames.items()],
                     ignore_index=True)
    checks = [("vid_id", "question id(s) (vid_id) used twice in a file",
               rows.duplicated(["file", "vid_id"], keep=False))]
    if "gif_name" in rows.columns:
        checks.append(("key", "feature key(s) given to more than one gif_name",
                       rows.groupby("key")["gif_name"].transform("nunique") > 1))
    for col, what, clash in checks:
        if clash.any():
            value = rows[col][clash].iloc[0]
            examples = rows[clash & (rows[col] == value)].head(3).itertuples()
            seen = "; ".join(f"{r.file}: line {r.line}" for r in examples)
            raise DataError(f"{rows[col][clash].nunique()} {what}, e.g. {col} '{value}' at {seen}; give each "
                            "its own value")


def vocab_sentences(df: pd.DataFrame, task: str) -> list[str]:
    """Row by row, the task's text columns (NaN cells skipped), as the original's get_captions."""
    cols = VOCAB_COLUMNS[task]
    values = df[list(cols)].to_numpy(dtype=object)
    return [str(v) for row in values for v in row if not pd.isna(v)]


def build_vocabulary(train_df: pd.DataFrame, task: str) -> Vocabulary:
    return Vocabulary.build(vocab_sentences(train_df, task))


def encode(df: pd.DataFrame, task: str, vocab: Vocabulary, q_max_length: int,
           ans2idx: dict[str, int] | None = None) -> list[np.ndarray]:
    """The per-question fields that follow the video in the original's tuple (``data_utils/dataset.py``,
    ``__getitem__``)."""
    n = len(df)
    if task in ("Action", "Trans"):
        cands = np.zeros((n, 5, q_max_length), dtype=np.int64)
        lens = np.zeros((n, 5), dtype=np.int64)
        for i, (q, *options) in enumerate(df[["question", *CANDIDATES]].itertuples(index=False)):
            for k, option in enumerate(options):
                cands[i, k], lens[i, k] = vocab.encode(q.strip() + " " + str(option).strip(), q_max_length)
        answers = df["answer"].to_numpy(dtype=np.int64)
        row_index = np.arange(1, n + 1, dtype=np.int64)
        return [cands, lens, answers, row_index]
    questions = np.zeros((n, q_max_length), dtype=np.int64)
    lengths = np.zeros(n, dtype=np.int64)
    for i, q in enumerate(df["question"]):
        questions[i], lengths[i] = vocab.encode(q, q_max_length)
    if task == "Count":
        answers = np.maximum(df["answer"].to_numpy(), 1).astype(np.float32)
        return [questions, lengths, answers]
    answers = np.array([ans2idx.get(str(a), 1) for a in df["answer"]], dtype=np.int64)
    if task == "FrameQA":
        return [questions, lengths, answers, df["type"].to_numpy(dtype=np.int64)]
    return [questions, lengths, answers]


def empty_encodings(fields: list[np.ndarray], task: str) -> np.ndarray:
    """Indices of questions that encode to zero tokens (the LSTM cannot take them)."""
    lengths = fields[1]
    bad = (lengths == 0).any(axis=1) if task in ("Action", "Trans") else lengths == 0
    return np.flatnonzero(bad)
