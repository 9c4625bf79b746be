"""Assemble a MASN data set: vocabulary, GloVe matrix, answer index, and the train/val/test splits."""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Subset

from masn.answer_index import frameqa_order, top_k_order
from masn.data import msqa, tgif
from masn.data.dataset import QADataset
from masn.data.features import LAYOUTS, FeatureError, VideoFeatures, resolve_feature_files
from masn.data.glove import load_embedding
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


def check_features(features: VideoFeatures, video_ids, allow_missing: bool, log) -> dict[str, list[str]]:
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


def frameqa_answers(df_dir: Path, train_df: Callable[[], pd.DataFrame], test_df: pd.DataFrame) -> list[str]:
    """The original's FrameQA answer order: from the Total CSV when present, else from train and test."""
    total = tgif.csv_path(df_dir, "FrameQA", "total")
    all_answers = (tgif.read_csv(total, "FrameQA")["answer"] if total.is_file()
                   else pd.concat([train_df()["answer"], test_df["answer"]]))
    return frameqa_order(all_answers)


def tgif_dataset(task: str, df: pd.DataFrame, path: Path, split: str, vocab: Vocabulary, q_max_length: int,
                 ans2idx: dict[str, int] | None, features: VideoFeatures) -> QADataset:
    """One TGIF-QA CSV's questions, encoded; an empty file or a question without tokens is refused."""
    require_questions(split, len(df), path)
    fields = tgif.encode(df, task, vocab, q_max_length, ans2idx)
    empty = tgif.empty_encodings(fields, task)
    if len(empty):
        raise tgif.DataError(f"{path}: {len(empty)} question(s) have no tokens after cleaning "
                             f"(vid_id {', '.join(df['vid_id'].iloc[empty[:5]].astype(str))})")
    return QADataset(task, df["key"].to_numpy(dtype=np.int64), fields, features, df["vid_id"].astype(str).tolist())


def msqa_dataset(df: pd.DataFrame, path: Path, split: str, vocab: Vocabulary, q_max_length: int,
                 ans2idx: dict[str, int], features: VideoFeatures) -> QADataset:
    """One MSVD-QA / MSRVTT-QA split's questions, encoded; refused like ``tgif_dataset``."""
    require_questions(split, len(df), path)
    fields = tgif.encode(df, "MS-QA", vocab, q_max_length, ans2idx)
    empty = tgif.empty_encodings(fields, "MS-QA")
    if len(empty):
        raise tgif.DataError(f"{path}: {len(empty)} question(s) have no tokens after cleaning "
                             f"(records {empty[:5].tolist()})")
    return QADataset("MS-QA", df["video_id"].to_numpy(dtype=np.int64), fields, features)


def load_tgif(task: str, df_dir: Path, feat_dir: Path, vc_dir: Path, glove: Path | None = None, *,
              q_max_length: int = 20, v_max_length: int = 20, max_n_videos: int | None = None,
              val_ratio: float = 0.1, split_seed: int = 999, answers: list[str] | None = None,
              allow_missing: bool = False, log=print) -> QAData:
    """TGIF-QA: train CSV split into train/val (seeded), test CSV as test."""
    if task not in tgif.TASKS:
        raise tgif.DataError(f"unknown TGIF-QA task {task!r}; choose one of {', '.join(tgif.TASKS)}")
    train_df = tgif.read_csv(tgif.csv_path(df_dir, task, "train"), task)
    test_df = tgif.read_csv(tgif.csv_path(df_dir, task, "test"), task)
    vocab = tgif.build_vocabulary(train_df, task)
    matrix = load_embedding(vocab, _glove_path(glove, vc_dir), f"vocab_embedding_{task}", log=log)
    if task == "FrameQA" and answers is None:
        answers = frameqa_answers(df_dir, lambda: train_df, test_df)
    ans2idx = {a: i for i, a in enumerate(answers)} if task == "FrameQA" else None
    if max_n_videos is not None:
        train_df, test_df = train_df[:max_n_videos], test_df[:max_n_videos]
    tgif.check_keys({tgif.csv_path(df_dir, task, "train"): train_df, tgif.csv_path(df_dir, task, "test"): test_df})
    features = VideoFeatures(resolve_feature_files(feat_dir, "tgif-qa"), "", v_max_length, allow_missing)
    datasets = {split: tgif_dataset(task, df, tgif.csv_path(df_dir, task, split), split, vocab, q_max_length,
                                    ans2idx, features) for split, df in (("train", train_df), ("test", test_df))}
    train_idx, val_idx = random_val_split(len(datasets["train"]), val_ratio, split_seed)
    missing = check_features(features, np.concatenate([train_df["key"], test_df["key"]]), allow_missing, log)
    splits = {"train": Subset(datasets["train"], train_idx), "val": Subset(datasets["train"], val_idx),
              "test": datasets["test"]}
    return QAData("tgif-qa", task, vocab, matrix, answers, splits, missing)


def load_msqa(dataset: str, df_dir: Path, feat_dir: Path, vc_dir: Path, glove: Path | None = None, *,
              q_max_length: int = 20, v_max_length: int = 30, max_n_videos: int | None = None,
              answers: list[str] | None = None, allow_missing: bool = False, log=print) -> QAData:
    """MSVD-QA / MSRVTT-QA with their explicit train/val/test files."""
    if dataset not in msqa.TOP_K:
        raise tgif.DataError(f"unknown data set {dataset!r}; choose one of {', '.join(msqa.TOP_K)}")
    dfs = {s: msqa.read_json(msqa.json_path(df_dir, s)) for s in msqa.SPLITS}
    vocab = Vocabulary.build(dfs["train"]["question"].astype(str))
    matrix = load_embedding(vocab, _glove_path(glove, vc_dir), "vocab_embedding", log=log)
    if answers is None:
        answers = top_k_order(dfs["train"]["answer"], msqa.TOP_K[dataset])
    ans2idx = {a: i for i, a in enumerate(answers)}
    layout = LAYOUTS[dataset]
    features = VideoFeatures(resolve_feature_files(feat_dir, dataset), layout.key_prefix, v_max_length,
                             allow_missing)
    splits = {}
    for split, df in dfs.items():
        if max_n_videos is not None:
            df = df[:max_n_videos]
        splits[split] = msqa_dataset(df, msqa.json_path(df_dir, split), split, vocab, q_max_length, ans2idx,
                                     features)
        dfs[split] = df
    missing = check_features(features, np.concatenate([d["video_id"] for d in dfs.values()]), allow_missing, log)
    return QAData(dataset, "MS-QA", vocab, matrix, answers, splits, missing)


def load_test_split(dataset: str, task: str, df_dir: Path, feat_dir: Path, vocab: Vocabulary | None, *,
                    answers: list[str] | None = None, q_max_length: int = 20, v_max_length: int = 20,
                    max_n_videos: int | None = None, allow_missing: bool = False, log=print) -> QAData:
    """The test split alone, to evaluate a checkpoint: its questions encoded with the checkpoint's vocabulary
    and answer order, and the features of its videos; no GloVe. The training split is read only for a
    checkpoint without them (the authors' file converted without ``--csv_dir`` / ``--answer-index``), to
    rebuild them by the training rule."""
    if dataset == "tgif-qa":
        if task not in tgif.TASKS:
            raise tgif.DataError(f"unknown TGIF-QA task {task!r}; choose one of {', '.join(tgif.TASKS)}")
        path = tgif.csv_path(df_dir, task, "test")
        df = tgif.read_csv(path, task)
        train = functools.cache(lambda: tgif.read_csv(tgif.csv_path(df_dir, task, "train"), task))
        vocab = vocab or tgif.build_vocabulary(train(), task)
        if task == "FrameQA" and answers is None:
            answers = frameqa_answers(df_dir, train, df)
    else:
        if dataset not in msqa.TOP_K:
            raise tgif.DataError(f"unknown data set {dataset!r}; choose one of {', '.join(msqa.TOP_K)}")
        path = msqa.json_path(df_dir, "test")
        df = msqa.read_json(path)
        train = functools.cache(lambda: msqa.read_json(msqa.json_path(df_dir, "train")))
        vocab = vocab or Vocabulary.build(train()["question"].astype(str))
        answers = answers or top_k_order(train()["answer"], msqa.TOP_K[dataset])
    ans2idx = {a: i for i, a in enumerate(answers)} if task in ("FrameQA", "MS-QA") else None
    if max_n_videos is not None:
        df = df[:max_n_videos]
    features = VideoFeatures(resolve_feature_files(feat_dir, dataset), LAYOUTS[dataset].key_prefix, v_max_length,
                             allow_missing)
    if dataset == "tgif-qa":
        tgif.check_keys({path: df})
        test, keys = tgif_dataset(task, df, path, "test", vocab, q_max_length, ans2idx, features), df["key"]
    else:
        test, keys = msqa_dataset(df, path, "test", vocab, q_max_length, ans2idx, features), df["video_id"]
    missing = check_features(features, keys.to_numpy(), allow_missing, log)
    return QAData(dataset, task, vocab, None, answers, {"test": test}, missing)
