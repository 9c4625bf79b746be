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

from engine.cli import accept_both_spellings
from masn.answer_index import frameqa_order, top_k_order
from masn.data import msqa, tgif
from masn.data.features import LAYOUTS, FeatureError, VideoFeatures, container_label, resolve_feature_files
from masn.data.glove import GloveError, read_glove_vectors
from masn.data.text import Vocabulary


def build_parser(dataset: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"check_data.py {dataset}", description=__doc__)
    if dataset == "tgif-qa":
        p.add_argument("--task", required=True, choices=tgif.TASKS)
    p.add_argument("--csv-dir", "--df_dir", dest="csv_dir", type=Path, required=True,
                   help="folder of the question files")
    p.add_argument("--feat_dir", type=Path, default=None, help="folder of the four HDF5 feature files")
    p.add_argument("--glove", type=Path, default=None, help="GloVe text file: report how many words it covers")
    p.add_argument("--q_max_length", type=int, default=20)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return accept_both_spellings(p)


def _check_features(dataset: str, feat_dir: Path, video_ids: np.ndarray, report: dict, problems: list) -> None:
    """The loader's own checks (``VideoFeatures.check_videos``) over every video, then a full NaN / inf scan."""
    try:
        features = VideoFeatures(resolve_feature_files(feat_dir, dataset), LAYOUTS[dataset].key_prefix, 1)
        try:
            missing, bad = features.check_videos(video_ids)
            nonfinite = nonfinite_videos(features, video_ids)
        finally:
            features.close()
    except FeatureError as e:
        problems.append(str(e))
        report["features"] = {"error": str(e)}
        return
    keys = sorted({features.key(v) for v in video_ids})
    out = {"videos": len(keys), "files": {}, "unusable": len(bad), "unusable_examples": bad[:10],
           "nonfinite": len(nonfinite), "nonfinite_examples": nonfinite[:10]}
    for label, lost in missing.items():
        out["files"][label] = {"missing": len(lost), "missing_examples": lost[:10]}
        problems.append(f"{label}: {len(lost)} of {len(keys)} videos missing (e.g. {', '.join(lost[:5])})")
    problems += bad[:20] + nonfinite[:20]
    report["features"] = out


def nonfinite_videos(features: VideoFeatures, video_ids) -> list[str]:
    """Every usable video's arrays read whole, one at a time (memory bounded by one video): NaN / inf found."""
    data = features._data()
    found = []
    for key in sorted({features.key(v) for v in video_ids}):
        try:
            arrays = features.video_arrays(data, key) or {}
            for name, ds in arrays.items():
                if not np.isfinite(ds[()]).all():
                    found.append(f"{container_label(features.paths, name)}: video {key!r} ({name}) holds NaN or "
                                 "inf values")
        except (FeatureError, OSError, RuntimeError):
            continue  # unusable or unreadable: reported by check_videos
    return found


def _check_glove(path: Path, vocab: Vocabulary, report: dict, problems: list) -> None:
    try:
        found = read_glove_vectors(path, set(vocab.words))
        report["glove"] = {"path": str(path), "words_found": len(found), "vocab_words": len(vocab.words)}
    except GloveError as e:
        problems.append(str(e))
        report["glove"] = {"path": str(path), "error": str(e)}


def check(dataset: str, args: argparse.Namespace) -> dict:
    if not Path(args.csv_dir).is_dir():  # nothing to check: a usage error, not a finding
        raise tgif.DataError(f"--csv-dir {args.csv_dir}: no such folder; give the folder of the question files")
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
    if dataset == "tgif-qa" and frames:
        try:
            tgif.check_keys({split_paths[s]: df for s, df in frames.items()})
        except tgif.DataError as e:
            problems.append(str(e))
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
    args = build_parser(argv[0]).parse_args(argv[1:])
    report = check(argv[0], args)
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{report['dataset']} {report['task']}: vocabulary {report['vocab_size']} rows"
              + (f", {report['answer_classes']} answer classes" if "answer_classes" in report else ""))
        for split, info in report["splits"].items():
            print(f"  {split}: " + ", ".join(f"{k}={v}" for k, v in info.items()))
        feats = report.get("features", {})
        if "videos" in feats:
            print(f"  features: {feats['videos']} videos, {sum(i['missing'] for i in feats['files'].values())} "
                  f"missing entries, {feats['unusable']} unusable, {feats['nonfinite']} with NaN/inf")
        if "glove" in report:
            print(f"  glove: {report['glove']}")
        for p in report["problems"]:
            print(f"PROBLEM: {p}")
        print("OK" if report["ok"] else f"{len(report['problems'])} problem(s)")
    return 0 if report["ok"] else 1
