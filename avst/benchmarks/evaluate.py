"""``--mode test`` on one or several test files: one checkpoint, features opened once, one report each.

Per file: the nine types, three group averages and overall (correct/count/accuracy), what the file is
(known files registry), skipped records with their reasons, the unknown-word policy and the questions
it touched per type, head/tail accuracies by MUSIC-AVQA-R's rule, answer-prior baselines from the
training split, test-time modality ablations (zeroed features) and the published numbers for a
recognised file, as JSON, Markdown, a per-question TSV and a PNG; plus a summary table across files.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from avst.benchmarks.head_tail import is_head
from avst.benchmarks.known_files import describe, identify, pairing_warning
from avst.benchmarks.oov import oov_counts
from avst.benchmarks.plot import bar_chart
from avst.benchmarks.priors import prior_baselines
from avst.benchmarks.published import published_for
from avst.data.annotations import MAX_LEN, MODALITIES, QUESTION_TYPES, Annotations, load_annotations, load_records
from avst.data.dataset import AVQADataset
from avst.data.features import open_features
from avst.data.vocab import OOV_POLICIES, Vocab
from avst.report import flat_accuracies, fmt_pct, per_question_lines, per_type_report, to_markdown
from avst.tasks import AVQATask
from engine.files import distinct_names
from engine.run import Run
from engine.trainer import Loaders, evaluate, require_samples

ABLATIONS = {"audio": ("audio",), "visual": ("visual_posi",), "both": ("audio", "visual_posi")}


def add_benchmark_args(p: argparse.ArgumentParser) -> None:
    """The flags of this module (``--label_test`` itself takes one or more files in main_avst.py)."""
    p.add_argument("--answer-file", default=None,
                   help="answer order as a file (answer2idx.json: {\"ans2ix\": {answer: index}} or a list), "
                        "e.g. MUSIC-AVQA v2.0's 42 answers incl. 'ten'; default: first appearance in --vocab_json")
    p.add_argument("--unknown-words", choices=OOV_POLICIES, default="error",
                   help="test questions with words outside the vocabulary (MUSIC-AVQA-R): error (the original), "
                        "pad (word -> <pad>), drop (word left out); pad/drop keep the first 14 tokens")
    p.add_argument("--ablate", nargs="*", choices=sorted(ABLATIONS), default=[],
                   help="test: also evaluate with these features zeroed (audio, visual, both)")


def test_label(label_test: list[str]) -> str:
    """The evaluation sub-folder's label: the test file's stem for one file, ``multi`` for several."""
    return Path(label_test[0]).stem if len(label_test) == 1 else "multi"


@dataclass
class TestFile:
    """One --label_test file, parsed and with its dataset built (before any report is written)."""

    path: str
    annotations: Annotations
    dataset: AVQADataset


def load_test_files(args, vocab: Vocab) -> list[TestFile]:
    """Every test file's records and dataset; ``vocab`` carries the ``--unknown_words`` policy (features
    opened once)."""
    sources = (open_features("audio", args.audio_dir, args.packed),
               open_features("visual", args.video_res14x14_dir, args.packed))
    files = []
    for path in args.label_test:
        ann = load_annotations(path)
        dataset = AVQADataset(ann.records, vocab, *sources, negatives=False, seed=args.seed)
        require_samples({f"test ({path})": dataset})
        dataset.short_videos()  # every feature file opened before the report folder is made
        files.append(TestFile(path, ann, dataset))
    return files


class Ablated(Dataset):
    """The items of ``base`` with some feature tensors replaced by zeros."""

    def __init__(self, base: Dataset, keys: tuple[str, ...]) -> None:
        self.base, self.keys = base, keys

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = dict(self.base[i])
        for k in self.keys:
            item[k] = torch.zeros_like(item[k])
        return item


def _subset_accuracies(records, correct: list[bool], mask: list[bool]) -> dict:
    sub = [r for r, m in zip(records, mask) if m]
    flags = [int(not c) for c, m in zip(correct, mask) if m]
    report = per_type_report(sub, flags, [0] * len(sub), "")
    return {"questions": len(sub), "accuracy": flat_accuracies(report),
            "counts": {k: v["count"] for k, v in report["types"].items()}}


def evaluate_file(test: TestFile, predict: Callable[[Dataset], dict], vocab: Vocab, args, train_records,
                  weights_known) -> tuple[dict, list[int], list[int], dict[str, list[int]], AVQADataset]:
    """The full report of one test file (see the module docstring)."""
    path, ann, dataset = test.path, test.annotations, test.dataset
    identity, warnings = describe(path)
    known = identify(path)
    pair = pairing_warning(weights_known, known)
    warnings += [pair] if pair else []
    out = predict(dataset)
    preds, labels = out["prediction"].tolist(), out["label"].tolist()
    report = per_type_report(ann.records, preds, labels, str(path))
    correct = [p == q for p, q in zip(preds, labels)]
    heads = is_head(ann.records, ann.records)
    report |= {
        "known": identity, "warnings": warnings, "skipped": ann.skipped, "derived_ids": ann.derived_ids,
        "extra_keys": ann.extra_keys,
        "unknown_words": {"policy": vocab.oov, **oov_counts(ann.records, vocab)},
        "head_tail": {"rule": "MUSIC-AVQA-R: head if the answer's count > 1.2 x the mean count per answer "
                              "of its question type", "counts_from": str(path),
                      "head": _subset_accuracies(ann.records, correct, heads),
                      "tail": _subset_accuracies(ann.records, correct, [not h for h in heads])},
        "published": [vars(p) for p in published_for(known.key if known else None)],
    }
    if train_records is not None:
        report["priors"] = {"from": str(args.label_train), **prior_baselines(train_records, ann.records)}
    report["ablations"], ablated = {}, {}
    for name in args.ablate:
        ab = predict(Ablated(dataset, ABLATIONS[name]))
        ablated[f"prediction_no_{name}"] = ab["prediction"].tolist()
        report["ablations"][name] = flat_accuracies(per_type_report(ann.records, ablated[f"prediction_no_{name}"],
                                                                    labels, str(path)))
    return report, preds, labels, ablated, dataset


def report_markdown(report: dict) -> str:
    """Header lines, then the per-type table with the model beside every diagnostic column."""
    ht, oov = report["head_tail"], report["unknown_words"]
    lines = [f"# {Path(report['test_file']).name}", "",
             f"- file: `{report['test_file']}`: {report['known']}",
             f"- questions: {report['questions']} evaluated, {len(report['skipped'])} skipped, "
             f"{report['derived_ids']} without a question_id (id = -position in the file)",
             f"- weights: `{report.get('weights')}` ({report.get('weights_known') or 'not a known checkpoint'})",
             f"- unknown words: policy `{oov['policy']}`; questions with unknown words "
             f"{sum(oov['affected'].values())}, longer than {MAX_LEN} tokens {sum(oov['truncated'].values())}",
             f"- head/tail: {ht['rule']}; counts from the test file itself",
             ]
    if "priors" in report:
        lines.append(f"- priors from `{report['priors']['from']}`: majority answer per type; mean count "
                     "(nearest number word) for the Counting types")
    lines += [f"- WARNING: {w}" for w in report["warnings"]]
    lines += [f"- skipped: {s}" for s in report["skipped"][:20]]
    extra: dict[str, dict] = {"head %": ht["head"]["accuracy"], "tail %": ht["tail"]["accuracy"]}
    if "priors" in report:
        extra |= {"majority %": report["priors"]["majority"], "mean count %": report["priors"]["mean_count"]}
    extra |= {f"no {name} %": acc for name, acc in report["ablations"].items()}
    for p in report["published"]:
        if p["metric"].startswith("accuracy"):
            extra[f"paper {p['method']} ({p['protocol']}) %"] = {**p["types"], "All": p["overall"]}
    table = to_markdown(report).split("\n")[2:]  # drop its own header line
    head, sep, rows = table[0], table[1], [r for r in table[2:] if r]
    keys = [f"{m}/{t}" for m, t in QUESTION_TYPES] + list(MODALITIES) + ["All"]
    head += " " + " | ".join(extra) + " | unknown-word q |"
    sep += "---:|" * (len(extra) + 1)
    body = []
    for key, row in zip(keys, rows):
        cells = [fmt_pct(values.get(key)) for values in extra.values()]
        n_oov = oov["affected"].get(key, sum(v for k, v in oov["affected"].items()
                                             if key == "All" or k.startswith(f"{key}/")))
        body.append(row + " " + " | ".join(cells) + f" | {n_oov} |")
    return "\n".join(lines + ["", head, sep, *body]) + "\n"


def _series(report: dict) -> dict[str, dict]:
    series = {"model": flat_accuracies(report)}
    if "priors" in report:
        series["majority prior"] = report["priors"]["majority"]
    for p in report["published"]:
        if p["metric"].startswith("accuracy"):
            series[f"paper {p['method']} ({p['protocol']})"] = {**p["types"], "All": p["overall"]}
    return series


def summary_markdown(reports: list[dict]) -> str:
    """One row per test file: overall and group accuracies beside the priors, ablations and paper."""
    ablations = sorted({a for r in reports for a in r["ablations"]})
    head = ["file", "known as", "questions", "skipped", "All %", "A %", "V %", "AV %", "head %", "tail %",
            "majority %", *[f"no {a} %" for a in ablations], "paper All %"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for r in reports:
        acc = flat_accuracies(r)
        paper = ", ".join(f"{p['overall']:.2f} ({p['protocol']})" for p in r["published"]) or "-"
        cells = [f"`{Path(r['test_file']).name}`", r["known"], str(r["questions"]), str(len(r["skipped"])),
                 *[fmt_pct(acc[k]) for k in ("All", "Audio", "Visual", "Audio-Visual")],
                 fmt_pct(r["head_tail"]["head"]["accuracy"]["All"]), fmt_pct(r["head_tail"]["tail"]["accuracy"]["All"]),
                 fmt_pct(r["priors"]["majority"]["All"]) if "priors" in r else "-",
                 *[fmt_pct(r["ablations"][a]["All"]) if a in r["ablations"] else "-" for a in ablations], paper]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_tests(args, run: Run, vocab: Vocab, device: torch.device, model: torch.nn.Module, weights: Path,
              tests: list[TestFile], on_first: Callable | None = None) -> dict:
    """Evaluate ``model`` (loaded from ``weights``) on every prepared test file; returns the first file's
    report with a ``files`` list of all reports. ``on_first(model, dataset)`` runs after the first file."""
    weights_known = identify(weights)
    train_path = Path(args.label_train)
    train_records = load_records(train_path) if train_path.is_file() else None
    if train_records is None:
        run.log(f"no priors: training split {train_path} not found (--label_train)")
    loaders = Loaders(num_workers=args.num_workers, collate_fn=None, seed=args.seed, device=device,
                      input=args.input)

    def predict(dataset: Dataset) -> dict:
        return evaluate(model, AVQATask(), dataset, device=device, batch_size=args.eval_batch_size,
                        amp=args.amp, seed=args.seed, quiet=run.quiet, loaders=loaders)[1]

    files = [t.path for t in tests]
    reports = []
    for test, name in zip(tests, distinct_names(files)):  # one subfolder per test file
        path = test.path
        report, preds, labels, ablated, dataset = evaluate_file(test, predict, vocab, args, train_records,
                                                                weights_known)
        report["weights"] = str(weights)
        report["weights_known"] = weights_known.describe() if weights_known else None
        sub = "" if len(files) == 1 else f"{name}/"
        markdown = report_markdown(report)
        run.write_json(f"{sub}test_report.json", report)
        run.write_text(f"{sub}test_report.md", markdown)
        run.write_text(f"{sub}test_predictions.tsv",
                       per_question_lines(dataset.records, preds, labels, vocab.answers, ablated))
        if run.is_main:
            bar_chart(_series(report), f"{Path(path).name}: {report['known']}", run.dir / f"{sub}test_report.png")
        run.log(markdown)
        reports.append(report)
        if on_first is not None and len(reports) == 1:
            on_first(model, dataset)
    if len(files) > 1:
        summary = summary_markdown(reports)
        run.write_text("summary.md", summary)
        run.write_json("summary.json", reports)
        run.log(summary)
    return {**reports[0], "files": reports}
