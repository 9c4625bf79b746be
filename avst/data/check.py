"""``check_data.py music-avqa``: check one split before a long run.

Reports what the file is (known files registry: "json_update test, 9,129 questions", with a warning for a
known problem or a file named like a known one with other content), the number of questions, counts per
(modality, type), records that cannot be used (each with its reason), ids derived for records without
one, extra keys, the vocabulary sizes, unknown words per type under the unknown-word policy, unknown
answers, duplicate question ids and, with features, what the loaders refuse (missing, unreadable,
mis-shaped or non-float files, a packed index with bad ranges), NaN / inf anywhere in the features
(every row is read, a few at a time), short files and videos whose audio and visual row counts differ.
MUSIC-AVQA v2.0 and -R files are read as well as the original ones. The exit status is 1 on any problem
(short files are padded, duplicate question ids and differing row counts occur in the released data,
and words that ``--unknown_words pad|drop`` accepts are counted: those are reported but not problems).
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from avst.benchmarks.known_files import describe
from avst.benchmarks.oov import oov_counts
from avst.data.annotations import MODALITIES, QUESTION_TYPES, AnnotationError, load_annotations, video_list
from avst.data.features import ROWS, FeatureError, feature_problems, nonfinite_error, open_features
from avst.data.vocab import OOV_POLICIES, Vocab, VocabError
from engine.cli import CommandParser, accept_both_spellings, default_path_problem, only_when
from engine.errors import run_cli

DEFAULT_VOCAB_JSON = "data/json/avqa-train.json"


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(prog="check_data.py music-avqa", description=__doc__)
    p.add_argument("--json-file", required=True, help="the split to check (MUSIC-AVQA JSON)")
    p.add_argument("--vocab-json", default=DEFAULT_VOCAB_JSON,
                   help="original train JSON the vocabularies come from (default %(default)s)")
    p.add_argument("--answer-file", help="answer order file (answer2idx.json, e.g. MUSIC-AVQA v2.0's 42 answers)")
    p.add_argument("--unknown-words", choices=OOV_POLICIES, default="error",
                   help="as avst/main_avst.py: error (a problem), pad or drop (counted, not a problem)")
    p.add_argument("--audio_dir", help="VGGish [60,128] .npy per video")
    p.add_argument("--video_res14x14_dir", help="ResNet-18 [60,512,14,14] .npy per video")
    p.add_argument("--packed", help="packed feature store (instead of the two directories)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    only_when(p, ["--audio_dir", "--video_res14x14_dir"], lambda a: a.packed is None,
              "with --packed (the features come from the packed store)")
    return accept_both_spellings(p)


def check(args: argparse.Namespace) -> dict:
    if not Path(args.json_file).is_file():  # nothing to check: a usage error, not a finding
        raise AnnotationError(f"--json-file {args.json_file}: no such file; give the MUSIC-AVQA JSON to check")
    report: dict = {"json_file": str(args.json_file), "problems": []}
    problems = report["problems"]
    try:
        ann = load_annotations(args.json_file)
    except (AnnotationError, FileNotFoundError) as err:
        problems.append(str(err))
        return report
    records = ann.records
    report["known"], report["warnings"] = describe(args.json_file)
    report["skipped"], report["derived_question_ids"] = ann.skipped, ann.derived_ids
    report["extra_keys"] = ann.extra_keys
    problems += ann.skipped[:20]
    report["questions"] = len(records)
    counts = Counter((r.modality, r.qtype) for r in records)
    report["types"] = {m: {t: counts[(m, t)] for mm, t in QUESTION_TYPES if mm == m} for m in MODALITIES}
    report["videos"] = len(video_list(records))
    dup = [q for q, n in Counter(r.question_id for r in records).items() if n > 1]
    report["duplicate_question_ids"] = len(dup)
    try:
        vocab = Vocab.build(args.vocab_json, args.answer_file).with_oov(args.unknown_words)
    except (AnnotationError, FileNotFoundError, VocabError) as err:
        problems.append(f"vocabulary: {default_path_problem(args, 'vocab_json') or err}")
        vocab = None
    if vocab is not None:
        known, warnings = describe(args.vocab_json)[0], []
        if "train" not in known and known != "not a known file":
            warnings.append(f"{args.vocab_json}: the vocabulary comes from the {known}, not a train file; the "
                            "authors' checkpoints need the original train JSON's word and answer order")
        report["warnings"] += warnings
        report["vocab_known"] = known
        report["unknown_word_policy"] = vocab.oov
        report["unknown_word_questions"] = oov_counts(records, vocab)
        report["vocab_json"] = str(args.vocab_json)
        report["vocab_size"] = len(vocab.words)
        report["answers"] = len(vocab.answers)
        unknown_words, unknown_answers = [], []
        for r in records:
            try:
                vocab.encode_question(r)
            except VocabError as err:
                unknown_words.append(str(err))
            try:
                vocab.answer_index(r)
            except VocabError as err:
                unknown_answers.append(str(err))
        report["unknown_words"] = unknown_words
        report["unknown_answers"] = unknown_answers
        problems += unknown_words[:20] + unknown_answers[:20]
    if args.packed or args.audio_dir or args.video_res14x14_dir:
        _check_features(args, video_list(records), report)
    return report


def _check_features(args: argparse.Namespace, videos: list[str], report: dict) -> None:
    """The loaders' own check (``feature_problems``), then a full NaN / inf scan and the row counts."""
    dirs = {"audio": args.audio_dir, "visual": args.video_res14x14_dir}
    report["missing_files"], report["bad_files"], report["short_videos"] = [], [], {}
    report["nonfinite"], rows = [], {}
    for kind, directory in dirs.items():
        if directory is None and args.packed is None:
            continue
        try:
            src = open_features(kind, directory, args.packed)
        except FeatureError as err:
            report["problems"].append(str(err))
            continue
        for err in feature_problems(videos, {kind: src}):
            target = report["missing_files"] if "not found" in err or "not in" in err else report["bad_files"]
            target.append(err)
        rows[kind] = _row_counts(src, videos)
        report["short_videos"][kind] = sum(n < ROWS for n in rows[kind].values())
        report["nonfinite"] += nonfinite_videos(src, kind, rows[kind])
    report["rows_differ"] = _rows_differ(rows)
    report["problems"] += report["missing_files"][:20] + report["bad_files"][:20] + report["nonfinite"][:20]


def _row_counts(src, videos: list[str]) -> dict[str, int]:
    """Rows per readable video (unreadable ones are reported by ``feature_problems``)."""
    out = {}
    for v in videos:
        try:
            out[v] = src.num_rows(v)
        except FeatureError:
            pass
    return out


def nonfinite_videos(src, kind: str, rows: dict[str, int], chunk: int = 8) -> list[str]:
    """Every row of every video read ``chunk`` rows at a time (bounded memory); videos holding NaN / inf."""
    found = []
    for video, n in rows.items():
        for start in range(0, n, chunk):
            if not np.isfinite(src.read(video, np.arange(start, min(n, start + chunk)))).all():
                found.append(str(nonfinite_error(kind, video, src.path(video))))
                break
    return found


def _rows_differ(rows: dict[str, dict[str, int]]) -> int:
    """Videos whose audio and visual row counts differ. Not a problem: both are seconds from the start and
    short ones are padded with their last row (older VGGish files hold the wav's true length)."""
    if len(rows) < 2:
        return 0
    return sum(rows["audio"][v] != rows["visual"][v] for v in rows["audio"].keys() & rows["visual"].keys())


def _print_text(report: dict) -> None:
    print(f"file: {report['json_file']}" + (f" ({report['known']})" if "known" in report else ""))
    for w in report.get("warnings", []):
        print(f"WARNING: {w}")
    if "questions" in report:
        print(f"questions: {report['questions']} usable ({report['videos']} videos, "
              f"{report['duplicate_question_ids']} duplicated question ids), {len(report['skipped'])} skipped, "
              f"{report['derived_question_ids']} without a question_id (id = -position in the file)")
        if report["extra_keys"]:
            print("extra keys (ignored): " + ", ".join(f"{k} in {n}" for k, n in report["extra_keys"].items()))
        for m, types in report["types"].items():
            print(f"  {m:<13} " + ", ".join(f"{t} {n}" for t, n in types.items()) + f"  (total {sum(types.values())})")
    if "vocab_size" in report:
        print(f"vocabulary ({report['vocab_json']}): {report['vocab_size']} words incl. <pad>, "
              f"{report['answers']} answers; unknown words {len(report['unknown_words'])}, "
              f"unknown answers {len(report['unknown_answers'])}")
        oov = report["unknown_word_questions"]
        print(f"unknown-word policy {report['unknown_word_policy']}: questions with unknown words "
              f"{sum(oov['affected'].values())}, longer than 14 tokens {sum(oov['truncated'].values())}"
              + "".join(f"; {k} {n}" for k, n in oov["affected"].items() if n))
    if "missing_files" in report:
        print(f"features: {len(report['missing_files'])} missing, {len(report['bad_files'])} bad, "
              f"{len(report['nonfinite'])} with NaN/inf, short (padded) videos {report['short_videos']}, "
              f"audio and visual row counts differ for {report['rows_differ']} videos")
    for p in report["problems"]:
        print(f"PROBLEM: {p}")
    print("OK" if not report["problems"] else f"{len(report['problems'])} problem(s) shown")


def main(argv: list[str]) -> int:
    """``argv[0]`` is the data-set name (``music-avqa``)."""
    args = build_parser().parse_command(argv[1:])
    report = check(args)
    report["ok"] = not report["problems"]
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        _print_text(report)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    import sys

    sys.exit(run_cli(main, ["music-avqa", *sys.argv[1:]]))
