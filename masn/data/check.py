"""``scripts/check_data.py {tgif-qa,msvd-qa,msrvtt-qa} ...``: check a MASN data set before a long run.

Reports per split the number of questions, the vocabulary size built from train (rows of the
embedding matrix, pad and UNK included), the answer classes (FrameQA, MSVD/MSRVTT), and with
``--feat_dir`` the videos missing from each feature file and arrays of the wrong shape. Exit status
1 on any problem; a split whose file is absent is reported as absent.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from masn.answer_index import frameqa_order, top_k_order
from masn.data import msqa, tgif
from masn.data.features import (
    EXPECTED_TAIL,
    LAYOUTS,
    FeatureError,
    VideoFeatures,
    container_label,
    resolve_feature_files,
    shape_problem,
)
from masn.data.glove import GloveError, read_glove_vectors
from masn.data.text import Vocabulary


def _parser(dataset: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"check_data.py {dataset}", description=__doc__)
    if dataset == "tgif-qa":
        p.add_argument("--task", required=True, choices=tgif.TASKS)
    p.add_argument("--csv_dir", "--df_dir", dest="csv_dir", type=Path, required=True,
                   help="folder of the question files")
    p.add_argument("--feat_dir", type=Path, default=None, help="folder of the four HDF5 feature files")
    p.add_argument("--glove", type=Path, default=None, help="GloVe text file: report how many words it covers")
    p.add_argument("--q_max_length", type=int, default=20)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def _check_features(dataset: str, feat_dir: Path, video_ids: np.ndarray, report: dict, problems: list) -> None:
    try:
        paths = resolve_feature_files(feat_dir, dataset)
        features = VideoFeatures(paths, LAYOUTS[dataset].key_prefix, 1)
        missing = features.missing(video_ids)
        data = features._data()
    except FeatureError as e:
        problems.append(str(e))
        report["features"] = {"error": str(e)}
        return
    keys = sorted({features.key(v) for v in video_ids})
    out = {"videos": len(keys), "files": {}}
    for name, container in data.items():
        label = container_label(paths, name)
        lost = missing.get(label, [])
        bad = []
        frames = []
        for k in keys:
            if k in container:
                shape = container[k].shape
                why = shape_problem(name, shape)
                if why:
                    bad.append(f"{k}: {why}")
                else:
                    frames.append(shape[0])
        out["files"][label] = {"missing": len(lost), "missing_examples": lost[:10], "shape_errors": len(bad),
                               "shape_error_examples": bad[:10],
                               "frames": [min(frames), max(frames)] if frames else None}
        if lost:
            problems.append(f"{label}: {len(lost)} of {len(keys)} videos missing (e.g. {', '.join(lost[:5])})")
        if bad:
            problems.append(f"{label}: {len(bad)} arrays of the wrong shape (e.g. {bad[0]}); expected "
                            f"(T, {', '.join('<=10' if t is None else str(t) for t in EXPECTED_TAIL[name])})")
    report["features"] = out


def _check_glove(path: Path, vocab: Vocabulary, report: dict, problems: list) -> None:
    try:
        found = read_glove_vectors(path, set(vocab.words))
        report["glove"] = {"path": str(path), "words_found": len(found), "vocab_words": len(vocab.words)}
    except GloveError as e:
        problems.append(str(e))
        report["glove"] = {"path": str(path), "error": str(e)}


def check(dataset: str, args: argparse.Namespace) -> dict:
    problems: list[str] = []
    report: dict = {"dataset": dataset, "task": getattr(args, "task", "MS-QA"), "splits": {}}
    frames = {}
    if dataset == "tgif-qa":
        split_paths = {s: tgif.csv_path(args.csv_dir, args.task, s) for s in ("train", "test")}
        read = lambda path: tgif.read_csv(path, args.task)  # noqa: E731
    else:
        split_paths = {s: msqa.json_path(args.csv_dir, s) for s in msqa.SPLITS}
        read = msqa.read_json
    for split, path in split_paths.items():
        if not path.is_file():
            report["splits"][split] = {"absent": True, "path": str(path)}
            problems.append(f"{path}: absent")
            continue
        try:
            frames[split] = read(path)
            report["splits"][split] = {"questions": len(frames[split])}
        except tgif.DataError as e:
            report["splits"][split] = {"error": str(e), "path": str(path)}
            problems.append(str(e))
    task = report["task"]
    vocab = None
    if "train" in frames:
        sentences = (tgif.vocab_sentences(frames["train"], task) if dataset == "tgif-qa"
                     else frames["train"]["question"].astype(str))
        vocab = Vocabulary.build(sentences)
        report["vocab_size"] = len(vocab)
    else:
        report["vocab_size"] = None
        problems.append("no train split: the vocabulary cannot be built")
    answers = None
    if dataset == "tgif-qa" and task == "FrameQA":
        total = tgif.csv_path(args.csv_dir, task, "total")
        try:
            source = tgif.read_csv(total, task)["answer"] if total.is_file() else None
        except tgif.DataError as e:
            problems.append(str(e))
            source = None
        if source is None and frames:
            source = np.concatenate([df["answer"].astype(str).to_numpy() for df in frames.values()])
        answers = frameqa_order(source) if source is not None else None
    elif dataset != "tgif-qa" and "train" in frames:
        answers = top_k_order(frames["train"]["answer"], msqa.TOP_K[dataset])
    if answers is not None:
        report["answer_classes"] = len(answers)
        known = set(answers)
        for split, df in frames.items():
            report["splits"][split]["answers_outside_index"] = int((~df["answer"].astype(str).isin(known)).sum())
    if vocab is not None:
        for split, df in frames.items():
            fields = tgif.encode(df, task, vocab, 256, {a: i for i, a in enumerate(answers or [])})
            lengths = fields[1] if fields[1].ndim == 1 else fields[1].max(axis=1)
            empty = tgif.empty_encodings(fields, task)
            report["splits"][split]["longer_than_q_max_length"] = int((lengths > args.q_max_length).sum())
            if len(empty):
                problems.append(f"{split_paths[split]}: {len(empty)} question(s) with no tokens after cleaning")
    if args.glove is not None and vocab is not None:
        _check_glove(args.glove, vocab, report, problems)
    if args.feat_dir is not None and frames:
        id_col = "key" if dataset == "tgif-qa" else "video_id"
        ids = np.concatenate([df[id_col].to_numpy(dtype=np.int64) for df in frames.values()])
        _check_features(dataset, args.feat_dir, ids, report, problems)
    report["problems"] = problems
    report["ok"] = not problems
    return report


def main(argv: list[str]) -> int:
    """``argv[0]`` is the data-set name (tgif-qa, msvd-qa, msrvtt-qa); returns the exit status."""
    if not argv or argv[0] not in LAYOUTS:
        print(f"usage: check_data.py {{{','.join(LAYOUTS)}}} [options]")
        return 2
    args = _parser(argv[0]).parse_args(argv[1:])
    report = check(argv[0], args)
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{report['dataset']} {report['task']}: vocabulary {report['vocab_size']} rows"
              + (f", {report['answer_classes']} answer classes" if "answer_classes" in report else ""))
        for split, info in report["splits"].items():
            print(f"  {split}: " + ", ".join(f"{k}={v}" for k, v in info.items()))
        for label, info in report.get("features", {}).get("files", {}).items():
            print(f"  {label}: {info['missing']} missing, {info['shape_errors']} shape errors, "
                  f"frames {info['frames']}")
        if "glove" in report:
            print(f"  glove: {report['glove']}")
        for p in report["problems"]:
            print(f"PROBLEM: {p}")
        print("OK" if report["ok"] else f"{len(report['problems'])} problem(s)")
    return 0 if report["ok"] else 1
