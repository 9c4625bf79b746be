"""``scripts/check_data.py {tgif-qa,msvd-qa,msrvtt-qa} ...``: check a MASN data set before a long run.

Reports per split the number of questions, the vocabulary size built from train (rows of the
embedding matrix, pad and UNK included), the answer classes (FrameQA, MSVD/MSRVTT), and with
``--feat_dir`` (the HDF5 files) or ``--packed`` (a store of ``python -m masn.data.pack``) the videos
missing from each feature file, arrays of the wrong shape and every NaN / inf (a packed store is scanned
even when marked checked: this is the check). Exit status 1 on any problem; a split whose file is
absent is reported as absent.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from engine.cli import CommandParser, accept_both_spellings, only_when, positive_int
from masn.data import build, tgif
from masn.data.features import LAYOUTS, FeatureError, PaddedBatches
from masn.data.glove import GloveError, read_glove_vectors
from masn.data.text import Vocabulary


def build_parser(dataset: str) -> argparse.ArgumentParser:
    p = CommandParser(prog=f"check_data.py {dataset}", description=__doc__)
    if dataset == "tgif-qa":
        p.add_argument("--task", required=True, choices=tgif.TASKS)
    p.add_argument("--csv-dir", "--df_dir", dest="csv_dir", type=Path, required=True,
                   help="folder of the question files")
    p.add_argument("--feat_dir", type=Path, default=None, help="folder of the four HDF5 feature files")
    p.add_argument("--packed", type=Path, default=None, help="packed feature store (python -m masn.data.pack)")
    only_when(p, ["--feat_dir"], lambda a: a.packed is None, "with --packed (the features come from the packed store)")
    p.add_argument("--glove", type=Path, default=None, help="GloVe text file: report how many words it covers")
    p.add_argument("--q_max_length", type=positive_int, default=20)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return accept_both_spellings(p)


LONGEST = 256  # encoding length at which no question is cut, to count those longer than --q_max_length


def _check_features(dataset: str, feat_dir: Path | None, packed: Path | None, video_ids: np.ndarray, report: dict,
                    problems: list) -> None:
    """The loader's own checks (``check_videos``) over every video, then a full NaN / inf scan."""
    try:
        features = build.open_features(dataset, feat_dir, 1, packed=packed)
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


def nonfinite_videos(features: PaddedBatches, video_ids) -> list[str]:
    """Every usable video's arrays read whole, one at a time (memory bounded by one array): NaN / inf found."""
    found = []
    for key in sorted({features.key(v) for v in video_ids}):
        try:
            for name, rows in features.whole_arrays(key):
                if not np.isfinite(rows).all():
                    found.append(features.nonfinite(name, key))
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
    """masn/data/build.py's steps over every split, each problem recorded instead of stopping at the first."""
    if not Path(args.csv_dir).is_dir():  # nothing to check: a usage error, not a finding
        raise tgif.DataError(f"--csv-dir {args.csv_dir}: no such folder; give the folder of the question files")
    problems: list[str] = []
    task = getattr(args, "task", "MS-QA")
    report: dict = {"dataset": dataset, "task": task, "splits": {}}
    split_paths = build.split_paths(dataset, task, args.csv_dir)
    frames = {}
    for split, path in split_paths.items():
        if not path.is_file():
            report["splits"][split] = {"absent": True, "path": str(path)}
            problems.append(f"{path}: absent")
            continue
        try:
            frames[split] = build.read_split(dataset, task, path)
            report["splits"][split] = {"questions": len(frames[split])}
        except tgif.DataError as e:
            report["splits"][split] = {"error": str(e), "path": str(path)}
            problems.append(str(e))
    if dataset == "tgif-qa" and frames:
        try:
            tgif.check_keys({split_paths[s]: df for s, df in frames.items()})
        except tgif.DataError as e:
            problems.append(str(e))
    vocab = build.build_vocab(dataset, task, frames["train"]) if "train" in frames else None
    report["vocab_size"] = len(vocab) if vocab is not None else None
    if vocab is None:
        problems.append("no train split: the vocabulary cannot be built")
    answers = None
    if frames and (dataset == "tgif-qa" or "train" in frames):
        try:
            answers = build.answer_order(dataset, task, args.csv_dir, frames)
        except tgif.DataError as e:
            problems.append(str(e))
    if answers is not None:
        report["answer_classes"] = len(answers)
        known = set(answers)
        for split, df in frames.items():
            report["splits"][split]["answers_outside_index"] = int((~df["answer"].astype(str).isin(known)).sum())
    if vocab is not None:
        for split, df in frames.items():
            try:  # long enough for every question: the lengths beyond --q_max_length are counted
                fields = build.encode_split(df, task, vocab, LONGEST, answers, split_paths[split])
            except tgif.DataError as e:
                problems.append(str(e))
                continue
            lengths = fields[1] if fields[1].ndim == 1 else fields[1].max(axis=1)
            report["splits"][split]["longer_than_q_max_length"] = int((lengths > args.q_max_length).sum())
    if args.glove is not None and vocab is not None:
        _check_glove(args.glove, vocab, report, problems)
    if (args.feat_dir is not None or args.packed is not None) and frames:
        ids = np.concatenate([build.video_ids(dataset, df) for df in frames.values()])
        _check_features(dataset, args.feat_dir, args.packed, ids, report, problems)
    report["problems"] = problems
    report["ok"] = not problems
    return report


def main(argv: list[str]) -> int:
    """``argv[0]`` is the data-set name (tgif-qa, msvd-qa, msrvtt-qa); returns the exit status."""
    if not argv or argv[0] not in LAYOUTS:
        print(f"usage: check_data.py {{{','.join(LAYOUTS)}}} [options]")
        return 2
    args = build_parser(argv[0]).parse_command(argv[1:])
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
