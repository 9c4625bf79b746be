"""Assemble a MASN data set: vocabulary, GloVe matrix, answer index, and the train/val/test splits."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Subset

from masn.answer_index import frameqa_order, top_k_order
from masn.data import msqa, tgif
from masn.data.dataset import QADataset
from masn.data.features import LAYOUTS, FeatureError, PaddedBatches, VideoFeatures, resolve_feature_files
from masn.data.glove import load_embedding
from masn.data.packed import PackedVideoFeatures
from masn.data.text import Vocabulary

DATASETS = ("tgif-qa", "msvd-qa", "msrvtt-qa")


@dataclass
class QAData:
    """Everything a run needs from the data side."""

    dataset: str
    task: str
    vocab: Vocabulary
    word_matrix: np.ndarray | None  # None when evaluating a checkpoint (its embedding is in the weights)
    answers: list[str] | None
    splits: dict[str, torch.utils.data.Dataset]
    missing_videos: dict[str, list[str]] = field(default_factory=dict)


def random_val_split(n: int, val_ratio: float, seed: int) -> tuple[list[int], list[int]]:
    """``torch.utils.data.random_split`` of the original (global RNG seeded with 999 by default).

    A ratio of 0 or less leaves nothing to validate on, 1 or more nothing to train on: refused here.
    """
    if not 0 < val_ratio < 1:
        raise tgif.DataError(f"--val_ratio {val_ratio} leaves {'no validation' if val_ratio <= 0 else 'no training'} "
                             "question; choose a value between 0 and 1 (the original's is 0.1)")
    n_val = int(val_ratio * n)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return perm[: n - n_val], perm[n - n_val:]


def check_features(features: PaddedBatches, video_ids, allow_missing: bool, log) -> dict[str, list[str]]:
    """Every split's videos, before the first step: unusable arrays are refused; missing ones unless allowed."""
    missing, bad = features.check_videos(video_ids)
    features.close()
    if bad:
        raise FeatureError(f"{len(bad)} video(s) have unusable features, the first: {bad[0]} "
                           "(scripts/check_data.py lists them all)")
    if not missing:
        return missing
    all_lost = sorted({k for keys in missing.values() for k in keys})
    detail = "; ".join(f"{path}: {len(keys)} missing (e.g. {', '.join(keys[:5])})" for path, keys in missing.items())
    if not allow_missing:
        raise FeatureError(f"{len(all_lost)} of {len(set(video_ids))} videos have no features: {detail}. "
                           "Pass --allow-missing-features to use zeros for them as the original did.")
    log(f"WARNING: {len(all_lost)} videos have no features and are read as zeros "
        f"(--allow-missing-features): {detail}")
    return missing


def require_questions(split: str, n: int, source: Path) -> None:
    """A split with no question leaves nothing to train or evaluate."""
    if n == 0:
        raise tgif.DataError(f"{source}: the {split} split holds no question (after --max_n_videos); "
                             "check the file and the options")


def _glove_path(glove: Path | None, vc_dir: Path) -> Path:
    return Path(glove) if glove else Path(vc_dir) / "glove.42B.300d.txt"


# The steps of assembling a data set, one definition each: load_tgif / load_msqa run them and stop on the
# first problem; masn/data/check.py runs the same steps over every split and reports every problem.

def split_paths(dataset: str, task: str, df_dir: Path) -> dict[str, Path]:
    """The question file of each split: TGIF-QA's Train / Test CSV of the task, MSVD/MSRVTT's ``<split>_qa.json``."""
    if dataset == "tgif-qa":
        return {s: tgif.csv_path(df_dir, task, s) for s in ("train", "test")}
    return {s: msqa.json_path(df_dir, s) for s in msqa.SPLITS}


def read_split(dataset: str, task: str, path: Path) -> pd.DataFrame:
    return tgif.read_csv(path, task) if dataset == "tgif-qa" else msqa.read_json(path)


def build_vocab(dataset: str, task: str, train: pd.DataFrame) -> Vocabulary:
    """The word vocabulary, from the train split only (the original's rule for each data set)."""
    if dataset == "tgif-qa":
        return tgif.build_vocabulary(train, task)
    return Vocabulary.build(train["question"].astype(str))


def answer_order(dataset: str, task: str, df_dir: Path, frames: dict[str, pd.DataFrame]) -> list[str] | None:
    """The answer classes: FrameQA's from the Total CSV (else the splits given), MSVD/MSRVTT's top k of
    train; None for the tasks without classes (Count, Action, Trans)."""
    if dataset == "tgif-qa":
        if task != "FrameQA":
            return None
        total = tgif.csv_path(df_dir, task, "total")
        return frameqa_order(tgif.read_csv(total, task)["answer"] if total.is_file()
                             else pd.concat([df["answer"] for df in frames.values()]))
    return top_k_order(frames["train"]["answer"], msqa.TOP_K[dataset])


def encode_split(df: pd.DataFrame, task: str, vocab: Vocabulary, q_max_length: int, answers: list[str] | None,
                 path: Path) -> list[np.ndarray]:
    """The encoded fields of one split; a question with no token left after cleaning is refused."""
    fields = tgif.encode(df, task, vocab, q_max_length, {a: i for i, a in enumerate(answers or [])})
    empty = tgif.empty_encodings(fields, task)
    if len(empty):
        which = (f"vid_id {', '.join(df['vid_id'].iloc[empty[:5]].astype(str))}" if "vid_id" in df
                 else f"records {empty[:5].tolist()}")
        raise tgif.DataError(f"{path}: {len(empty)} question(s) have no tokens after cleaning ({which})")
    return fields


def video_ids(dataset: str, df: pd.DataFrame) -> np.ndarray:
    """The feature key of each question: TGIF-QA's ``key`` column, MSVD/MSRVTT's ``video_id``."""
    return df["key" if dataset == "tgif-qa" else "video_id"].to_numpy(dtype=np.int64)


def open_features(dataset: str, feat_dir: Path, v_max_length: int, allow_missing: bool = False,
                  packed: Path | None = None) -> PaddedBatches:
    """The packed store when given (``--packed``), else the four HDF5 files in ``feat_dir``."""
    prefix = LAYOUTS[dataset].key_prefix
    if packed is not None:
        return PackedVideoFeatures(packed, prefix, v_max_length, allow_missing)
    return VideoFeatures(resolve_feature_files(feat_dir, dataset), prefix, v_max_length, allow_missing)


def load_tgif(task: str, df_dir: Path, feat_dir: Path, vc_dir: Path, glove: Path | None = None, *,
              q_max_length: int = 20, v_max_length: int = 20, max_n_videos: int | None = None,
              val_ratio: float = 0.1, split_seed: int = 999, answers: list[str] | None = None,
              allow_missing: bool = False, packed: Path | None = None, log=print) -> QAData:
    """TGIF-QA: train CSV split into train/val (seeded), test CSV as test."""
    if task not in tgif.TASKS:
        raise tgif.DataError(f"unknown TGIF-QA task {task!r}; choose one of {', '.join(tgif.TASKS)}")
    paths = split_paths("tgif-qa", task, df_dir)
    dfs = {s: read_split("tgif-qa", task, path) for s, path in paths.items()}
    vocab = build_vocab("tgif-qa", task, dfs["train"])
    matrix = load_embedding(vocab, _glove_path(glove, vc_dir), f"vocab_embedding_{task}", log=log)
    if answers is None:
        answers = answer_order("tgif-qa", task, df_dir, dfs)
    if max_n_videos is not None:
        dfs = {s: df[:max_n_videos] for s, df in dfs.items()}
    tgif.check_keys({paths[s]: df for s, df in dfs.items()})
    features = open_features("tgif-qa", feat_dir, v_max_length, allow_missing, packed)
    datasets = {}
    for split, df in dfs.items():
        require_questions(split, len(df), paths[split])
        fields = encode_split(df, task, vocab, q_max_length, answers, paths[split])
        datasets[split] = QADataset(task, video_ids("tgif-qa", df), fields, features, df["vid_id"].astype(str).tolist())
    train_idx, val_idx = random_val_split(len(datasets["train"]), val_ratio, split_seed)
    missing = check_features(features, np.concatenate([video_ids("tgif-qa", df) for df in dfs.values()]),
                             allow_missing, log)
    splits = {"train": Subset(datasets["train"], train_idx), "val": Subset(datasets["train"], val_idx),
              "test": datasets["test"]}
    return QAData("tgif-qa", task, vocab, matrix, answers, splits, missing)


def load_msqa(dataset: str, df_dir: Path, feat_dir: Path, vc_dir: Path, glove: Path | None = None, *,
              q_max_length: int = 20, v_max_length: int = 30, max_n_videos: int | None = None,
              answers: list[str] | None = None, allow_missing: bool = False, packed: Path | None = None,
              log=print) -> QAData:
    """MSVD-QA / MSRVTT-QA with their explicit train/val/test files."""
    if dataset not in msqa.TOP_K:
        raise tgif.DataError(f"unknown data set {dataset!r}; choose one of {', '.join(msqa.TOP_K)}")
    paths = split_paths(dataset, "MS-QA", df_dir)
    dfs = {s: read_split(dataset, "MS-QA", path) for s, path in paths.items()}
    vocab = build_vocab(dataset, "MS-QA", dfs["train"])
    matrix = load_embedding(vocab, _glove_path(glove, vc_dir), "vocab_embedding", log=log)
    if answers is None:
        answers = answer_order(dataset, "MS-QA", df_dir, dfs)
    if max_n_videos is not None:
        dfs = {s: df[:max_n_videos] for s, df in dfs.items()}
    features = open_features(dataset, feat_dir, v_max_length, allow_missing, packed)
    splits = {}
    for split, df in dfs.items():
        require_questions(split, len(df), paths[split])
        fields = encode_split(df, "MS-QA", vocab, q_max_length, answers, paths[split])
        splits[split] = QADataset("MS-QA", video_ids(dataset, df), fields, features)
    missing = check_features(features, np.concatenate([video_ids(dataset, df) for df in dfs.values()]),
                             allow_missing, log)
    return QAData(dataset, "MS-QA", vocab, matrix, answers, splits, missing)


def load_test_split(dataset: str, task: str, df_dir: Path, feat_dir: Path, vocab: Vocabulary | None, *,
                    answers: list[str] | None = None, q_max_length: int = 20, v_max_length: int = 20,
                    max_n_videos: int | None = None, allow_missing: bool = False, packed: Path | None = None,
                    log=print) -> QAData:
    """The test split alone, to evaluate a checkpoint: its questions encoded with the checkpoint's vocabulary
    and answer order, and the features of its videos; no GloVe. The training split is read only for a
    checkpoint without them (the authors' file converted without ``--csv_dir`` / ``--answer-index``), to
    rebuild them by the training rule."""
    if dataset == "tgif-qa" and task not in tgif.TASKS:
        raise tgif.DataError(f"unknown TGIF-QA task {task!r}; choose one of {', '.join(tgif.TASKS)}")
    if dataset != "tgif-qa" and dataset not in msqa.TOP_K:
        raise tgif.DataError(f"unknown data set {dataset!r}; choose one of {', '.join(msqa.TOP_K)}")
    paths = split_paths(dataset, task, df_dir)
    df = read_split(dataset, task, paths["test"])
    needs_answers = answers is None and (dataset != "tgif-qa" or task == "FrameQA")
    if vocab is None or needs_answers:
        frames = {"train": read_split(dataset, task, paths["train"]), "test": df}
        vocab = vocab or build_vocab(dataset, task, frames["train"])
        if needs_answers:
            answers = answer_order(dataset, task, df_dir, frames)
    if max_n_videos is not None:
        df = df[:max_n_videos]
    if dataset == "tgif-qa":
        tgif.check_keys({paths["test"]: df})
    features = open_features(dataset, feat_dir, v_max_length, allow_missing, packed)
    require_questions("test", len(df), paths["test"])
    fields = encode_split(df, task, vocab, q_max_length, answers, paths["test"])
    names = [df["vid_id"].astype(str).tolist()] if dataset == "tgif-qa" else []
    test = QADataset(task, video_ids(dataset, df), fields, features, *names)
    missing = check_features(features, video_ids(dataset, df), allow_missing, log)
    return QAData(dataset, task, vocab, None, answers, {"test": test}, missing)
