"""MSVD-QA / MSRVTT-QA: ``train_qa.json``, ``val_qa.json``, ``test_qa.json`` (xudejing's files).

Word vocabulary from the train questions only; answer classes = the top-k train answers (1,000 for
MSVD, 4,000 for MSRVTT); answers outside them map to class 1, as in the original.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from masn.data.tgif import DataError

TOP_K = {"msvd-qa": 1000, "msrvtt-qa": 4000}
SPLITS = ("train", "val", "test")
FIELDS = ("question", "answer", "video_id")


def json_path(df_dir: Path, split: str) -> Path:
    return Path(df_dir) / f"{split}_qa.json"


def read_json(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: file not found (the MSVD-QA/MSRVTT-QA question files "
                        "train_qa.json/val_qa.json/test_qa.json; pass their folder as --df_dir)")
    try:
        records = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise DataError(f"{path}: expected a JSON list of question objects")
    df = pd.DataFrame.from_records(records)
    missing = [f for f in FIELDS if f not in df.columns] if len(df) else list(FIELDS)
    if missing:
        raise DataError(f"{path}: missing field(s) {', '.join(missing)}")
    bad_q = df["question"].isna() | (df["question"].astype(str).str.strip() == "")
    if bad_q.any():
        raise DataError(f"{path}: {int(bad_q.sum())} empty question(s), first at record "
                        f"{int(bad_q.to_numpy().argmax())}")
    if not pd.api.types.is_integer_dtype(df["video_id"]):
        raise DataError(f"{path}: 'video_id' must hold integers")
    return df
