"""Train or evaluate MASN on TGIF-QA (Count, Action, Trans, FrameQA), MSVD-QA or MSRVTT-QA.

The original's flags and defaults keep working (``python masn/main.py --task Count --batch_size 32``,
``--test --checkpoint NAME``, ``--change_lr``, ``--lr_list 10 20 30 40`` ...), plus the engine's run
options. Model selection is on validation by default; ``--select test`` reproduces the original's
test-set selection and its ``<save_path>/<model_name>/<Task>_<metric>.pth`` threshold checkpoints.
Works as ``python masn/main.py``, ``python -m masn.main`` and ``cd masn && python main.py`` (``make setup`` installs
the packages these import).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from engine import dist
from engine.checkpoint import CheckpointError, save_checkpoint
from engine.cli import (
    CommandParser,
    accept_both_spellings,
    add_engine_args,
    check_default_path,
    drop_probability,
    given,
    non_negative_float,
    non_negative_int,
    only_when,
    positive_float,
    positive_int,
    seed_int,
    unit_fraction,
)
from engine.device import training_device
from engine.errors import UserError, run_cli
from engine.run import Run, check_start, evaluation_dir
from engine.schedule import CHANGE_LR_MODES, EpochSchedule, initial_lr
from engine.seed import seed_everything
from engine.selection import select_epoch
from engine.trainer import Callback, Trainer, evaluate, require_samples
from masn.answer_index import load_answer_index, save_answer_index
from masn.checkpoint import MasnMeta, build_from_checkpoint, new_masn
from masn.data.build import DATASETS, QAData, load_msqa, load_test_split, load_tgif
from masn.data.features import FEAT_DIM
from masn.data.text import Vocabulary
from masn.data.tgif import FRAMEQA_TYPES, TASKS, DataError, csv_path
from masn.tasks import MASNTask, passes_threshold

# Output-only options: a --resume may change them (engine.run.HARMLESS lists the engine's own).
HARMLESS = ("checkpoint", "save_path", "model_name", "save")
FROM_CHECKPOINT = ("task", "v_max_length", "q_max_length")  # with --test, taken from the checkpoint unless given
DEFAULTS = {  # the original scripts' defaults per data set (main.py, main_msvd.py, main_msrvtt.py)
    "tgif-qa": {"model_name": "[MASN]", "feat_dir": "/data/TGIFQA", "vc_dir": "/data/TGIFQA/vocab",
                "df_dir": "/data/TGIFQA/question", "checkpoint": "FrameQA_59.73.pth", "v_max_length": 20,
                "q_max_length": 20, "task": "Count"},
    "msvd-qa": {"model_name": "[MSVD_msvd]", "feat_dir": "/data/MSVD-QA", "vc_dir": "/data/MSVD-QA/vocab",
                "df_dir": "/data/MSVD-QA/question", "checkpoint": "", "v_max_length": 30,
                "q_max_length": 20, "task": "MS-QA"},
    "msrvtt-qa": {"model_name": "[MSVD_msrvtt]", "feat_dir": "/data/MSRVTT-QA/video",
                  "vc_dir": "/data/MSRVTT-QA/vocab4000", "df_dir": "/data/MSRVTT-QA/question",
                  "checkpoint": "", "v_max_length": 30, "q_max_length": 20, "task": "MS-QA"},
}
# Flags that only shape training: with --test the model and its settings come from the checkpoint.
TRAINING_ONLY = ("--vc_dir", "--glove", "--select", "--hidden_size", "--max_epoch", "--val_ratio", "--split-seed",
                 "--rnn_layers", "--gcn_layers", "--lr", "--lr_list", "--dropout", "--change_lr", "--weight_decay",
                 "--ablation", "--resume", "--save-every-steps")


def build_parser(dataset: str = "tgif-qa") -> argparse.ArgumentParser:
    p = CommandParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=DATASETS, default=dataset)
    p.add_argument("--model_name", "--exp_name", dest="model_name", default=None,
                   help="sub-folder of --save_path for the threshold checkpoints (original name)")
    p.add_argument("--feat_dir", default=None, help="HDF5 features (in feat_r6_vsync2/ or vfeat/, or flat)")
    p.add_argument("--packed", default=None,
                   help="packed feature store (python -m masn.data.pack) instead of --feat_dir")
    p.add_argument("--vc_dir", default=None, help="vocabulary folder: GloVe text file and its cache")
    p.add_argument("--df_dir", "--csv-dir", dest="df_dir", default=None, help="question CSV / JSON folder")
    p.add_argument("--glove", default=None, help="GloVe text file (default <vc_dir>/glove.42B.300d.txt)")
    p.add_argument("--answer-index", default=None,
                   help="JSON answer order to use (FrameQA / MS-QA); default: built deterministically")
    p.add_argument("--allow-missing-features", action="store_true",
                   help="use zeros for videos without features, as the original did")
    p.add_argument("--checkpoint", default=None,
                   help="with --test: a file name under <save_path>/<model_name>/, or a path")
    p.add_argument("--save_path", default="./saved_models/")
    p.add_argument("--save", action="store_true", default=True,
                   help="the original's switch for its threshold checkpoints: always on where they "
                        "are written (--select test)")
    p.add_argument("--select", choices=["val", "test"], default="val",
                   help="model selection split; 'test' also writes the original's threshold checkpoints")
    p.add_argument("--hidden_size", type=positive_int, default=512)
    p.add_argument("--test", action="store_true", help="evaluate --checkpoint on the test split only")
    p.add_argument("--max_epoch", type=positive_int, default=100)
    p.add_argument("--val_ratio", type=unit_fraction, default=0.1,
                   help="share of the TGIF-QA train questions held out for validation (0 < r < 1)")
    p.add_argument("--split-seed", type=seed_int, default=999,
                   help="seed of the random train/val split (999 reproduces the original's split)")
    p.add_argument("--q_max_length", type=positive_int, default=None, help="default 20")
    p.add_argument("--v_max_length", type=positive_int, default=None,
                   help="default 20 (TGIF-QA) / 30 (MSVD-QA, MSRVTT-QA)")
    p.add_argument("--task", default=None, help=f"{', '.join(TASKS)} (TGIF-QA) or MS-QA")
    p.add_argument("--rnn_layers", type=positive_int, default=1)
    p.add_argument("--gcn_layers", type=positive_int, default=2)
    p.add_argument("--batch_size", type=positive_int, default=32,
                   help="per process: under torchrun one step sees world size x this many questions")
    p.add_argument("--eval-batch-size", type=positive_int, default=None)
    p.add_argument("--max_n_videos", type=positive_int, default=100000)
    p.add_argument("--num_workers", type=non_negative_int, default=None,
                   help="DataLoader workers per process (default: from the CPUs this process may use)")
    p.add_argument("--lr", type=positive_float, default=1e-4)
    p.add_argument("--lr_list", type=positive_int, nargs="+", default=[10, 20, 30, 40], help="MultiStepLR milestones")
    p.add_argument("--dropout", type=drop_probability, default=0.3)
    p.add_argument("--change_lr", choices=CHANGE_LR_MODES, default="none")
    p.add_argument("--weight_decay", type=non_negative_float, default=0.0)
    p.add_argument("--ablation", default="none", help="stored in the model, unused (as the original)")
    add_engine_args(p, default_seed=999)
    only_when(p, TRAINING_ONLY, lambda a: not a.test, "with --test (the checkpoint holds the model)")
    only_when(p, ["--checkpoint"], lambda a: a.test, "in training (--test evaluates it)")
    only_when(p, ["--save"], lambda a: not a.test and a.select == "test",
              "except in training with --select test (where the threshold checkpoints it switches on are written)")
    only_when(p, ["--ablation"], lambda a: a.ablation == "none",
              "other than none (the original stores it in the model and never reads it)")
    only_when(p, ["--save_path", "--model_name"], lambda a: a.test or a.select == "test",
              "in training without --select test (they locate its threshold checkpoints)")
    only_when(p, ["--val_ratio", "--split-seed"], lambda a: a.dataset == "tgif-qa",
              "on MSVD-QA / MSRVTT-QA (their validation split is given)")
    only_when(p, ["--vc_dir"], lambda a: a.glove is None, "with --glove (it only locates the default GloVe file)")
    only_when(p, ["--feat_dir"], lambda a: a.packed is None, "with --packed (the features come from the packed store)")
    return accept_both_spellings(p)


def parse_args(argv: list[str] | None, dataset: str = "tgif-qa") -> argparse.Namespace:
    args = build_parser(dataset).parse_command(argv)
    for key, value in DEFAULTS[args.dataset].items():
        if getattr(args, key) is None and not (args.test and key in FROM_CHECKPOINT):
            setattr(args, key, value)
    if args.task is not None:
        check_task(args)
    return args


def check_task(args: argparse.Namespace) -> None:
    valid = TASKS if args.dataset == "tgif-qa" else ("MS-QA",)
    if args.task not in valid:
        raise DataError(f"unknown task {args.task!r} for {args.dataset}; choose one of {', '.join(valid)}")


def load_data(args: argparse.Namespace, answers: list[str] | None, log) -> QAData:
    common = {"q_max_length": args.q_max_length, "v_max_length": args.v_max_length,
              "max_n_videos": args.max_n_videos, "answers": answers,
              "allow_missing": args.allow_missing_features, "packed": args.packed, "log": log}
    if args.dataset == "tgif-qa":
        return load_tgif(args.task, args.df_dir, args.feat_dir, args.vc_dir, args.glove,
                         val_ratio=args.val_ratio, split_seed=args.split_seed, **common)
    return load_msqa(args.dataset, args.df_dir, args.feat_dir, args.vc_dir, args.glove, **common)


def training_meta(args: argparse.Namespace, data: QAData) -> MasnMeta:
    """The record of the model to train (stored in every checkpoint it writes)."""
    answers = data.answers if data.task in ("FrameQA", "MS-QA") else None
    return MasnMeta(vocab_size=len(data.vocab), embedding_dim=data.word_matrix.shape[1], s_layers=args.rnn_layers,
                    resnet_input_size=FEAT_DIM, i3d_input_size=FEAT_DIM, hidden_size=args.hidden_size,
                    gcn_layers=args.gcn_layers, answer_vocab_size=len(answers) if answers else None,
                    v_max_length=args.v_max_length, q_max_length=args.q_max_length, task=data.task,
                    dataset=args.dataset, vocab_words=data.vocab.words, answers=answers)


def build_model(args: argparse.Namespace, data: QAData) -> torch.nn.Module:
    return new_masn(training_meta(args, data), data.word_matrix, args.dropout, args.ablation)


def checkpoint_path(args: argparse.Namespace) -> Path:
    """``--checkpoint`` as a path when that file exists, else the name under ``<save_path>/<model_name>/``;
    ``--save_path`` / ``--model_name`` given beside a file they do not locate are refused."""
    path, stored = Path(args.checkpoint), Path(args.save_path) / args.model_name / args.checkpoint
    if not path.is_file():
        return stored
    named = [f"--{key}" for key in ("save_path", "model_name") if key in given(args)]
    if named and not (stored.is_file() and stored.samefile(path)):
        raise UserError(f"--checkpoint {path}: a file, so {' and '.join(named)} (which would name {stored}) have no "
                        f"effect; drop {' and '.join(named)}, or give --checkpoint as a file name under them")
    return path


def summarize(task: MASNTask, history: list[dict]) -> dict:
    """The val-selected epoch's test numbers and the best test numbers over all epochs (ties: the later
    epoch, the rule best.pt follows: engine.selection)."""
    metric, mode = task.select_metric, task.select_mode
    out = {}
    if (best_val := select_epoch(history, "val", metric, mode)) is not None:
        out["val_selected"] = {"epoch": best_val["epoch"], "val": best_val["val"], "test": best_val.get("test")}
    if (best_test := select_epoch(history, "test", metric, mode)) is not None:
        out["best_test"] = {"epoch": best_test["epoch"], "test": best_test["test"]}
    return out


def format_metrics(task: str, m: dict) -> str:
    text = f"MSE {m['mse']:.3f} (exact {m['acc']:.2f}%)" if task == "Count" else f"acc {m['acc']:.2f}%"
    if task == "FrameQA":
        text += " | " + ", ".join(f"{t} {m[f'acc_{t}']:.2f}% (n={m[f'n_{t}']})" for t in FRAMEQA_TYPES
                                  if f"acc_{t}" in m)
    return text


def test_data(args: argparse.Namespace, meta: MasnMeta, path: Path, log) -> QAData:
    """The test split for the checkpoint at ``path``: its task, frame count, vocabulary and answer order."""
    for key, theirs in (("dataset", meta.dataset), ("task", meta.task)):
        if theirs and getattr(args, key) not in (None, theirs):
            raise CheckpointError(f"{path}: trained for {key} {theirs}, not --{key} {getattr(args, key)}; "
                                  f"drop --{key} to use the checkpoint's")
    args.task = args.task or meta.task or DEFAULTS[args.dataset]["task"]
    check_task(args)
    for key in ("v_max_length", "q_max_length"):
        if getattr(args, key) not in (None, getattr(meta, key)):
            raise CheckpointError(f"{path}: trained with --{key} {getattr(meta, key)}, not {getattr(args, key)}; "
                                  f"drop --{key} to use the checkpoint's")
    args.v_max_length, args.q_max_length = meta.v_max_length, meta.q_max_length
    answers = meta.answers
    if args.answer_index:
        asked = load_answer_index(Path(args.answer_index))
        if answers is not None and asked != answers:
            raise CheckpointError(f"{path}: its answer classes are in another order than --answer-index "
                                  f"{args.answer_index}; drop --answer-index to use the checkpoint's own order")
        answers = answers or asked
    vocab = Vocabulary(meta.vocab_words) if meta.vocab_words else None
    data = load_test_split(args.dataset, args.task, args.df_dir, args.feat_dir, vocab, answers=answers,
                           q_max_length=args.q_max_length, v_max_length=args.v_max_length,
                           max_n_videos=args.max_n_videos, allow_missing=args.allow_missing_features,
                           packed=args.packed, log=log)
    if len(data.vocab) != meta.vocab_size:  # rebuilt from the train CSV: must be the one it was trained with
        raise CheckpointError(f"{path}: the word vocabulary built from {args.df_dir} has {len(data.vocab)} rows, "
                              f"the checkpoint's embedding {meta.vocab_size}: trained on other questions")
    if meta.answer_vocab_size is not None and len(data.answers or ()) != meta.answer_vocab_size:
        raise CheckpointError(f"{path}: {len(data.answers or ())} answers, the checkpoint's classifier has "
                              f"{meta.answer_vocab_size}; pass the answer index it was trained with (--answer-index)")
    return data


def evaluate_only(args, run: Run, data: QAData, model, task: MASNTask, path: Path, device) -> dict:
    metrics, _ = evaluate(model, task, data.splits["test"], device=device,
                          batch_size=args.eval_batch_size or args.batch_size, num_workers=args.num_workers,
                          amp=args.amp, seed=args.seed, quiet=run.quiet, input=args.input)
    run.log(f"TEST {args.task} ({path}): {format_metrics(args.task, metrics)}")
    report = {"checkpoint": str(path), "test": metrics, **answer_prior(args, run)}
    run.write_json("test_report.json", report)
    return report


def answer_prior(args, run: Run) -> dict:
    """TGIF-QA's no-video baseline from the training split (masn/priors.py), logged beside the model."""
    if args.dataset != "tgif-qa":
        return {}
    from masn.priors import describe, prior

    train = csv_path(Path(args.df_dir), args.task, "train")
    if not train.is_file():
        run.log(f"no answer prior: training split {train} not found")
        return {}
    out = prior(args.task, Path(args.df_dir))
    run.log(f"PRIOR {describe(out)}")
    return {"answer_prior": out}


def main(argv: list[str] | None = None, dataset: str = "tgif-qa") -> dict:
    args = parse_args(argv, dataset)
    for dest in ("df_dir", *(() if args.packed else ("feat_dir",)), *(() if args.test or args.glove else ("vc_dir",))):
        check_default_path(args, dest, "folder")
    seed_everything(args.seed, args.deterministic)
    device = training_device(args.device)
    if args.test:
        return test(args, device)
    answers = load_answer_index(Path(args.answer_index)) if args.answer_index else None
    name = f"masn-{args.dataset}-{args.task}"
    check_start(args, name, harmless=HARMLESS)
    data = load_data(args, answers, print)  # bad input fails here, before anything is written
    require_samples(data.splits)
    model = build_model(args, data)
    with Run(args, name, harmless=HARMLESS) as run:
        sizes = "/".join(str(len(s)) for s in data.splits.values())
        run.log(f"{args.dataset} {args.task}: train/val/test {sizes} questions, vocabulary {len(data.vocab)}"
                + (f", {len(data.answers)} answers" if data.answers else ""))
        return train(args, run, data, model, MASNTask(args.task), device)


def test(args: argparse.Namespace, device) -> dict:
    """Evaluate ``--checkpoint`` on the test split: the model, vocabulary and answers come from the checkpoint.
    The report goes to <run>/test_<checkpoint>/: a training run's files stay as they are."""
    ckpt = checkpoint_path(args)
    model, meta = build_from_checkpoint(ckpt)
    data = test_data(args, meta, ckpt, print)  # bad input fails here, before anything is written
    require_samples(data.splits)
    name = f"masn-{args.dataset}-{args.task}"
    args.run_dir = str(evaluation_dir(args, name, ckpt.stem))
    check_start(args, name, harmless=HARMLESS)
    with Run(args, name, harmless=HARMLESS) as run:
        run.log(f"{args.dataset} {args.task}: test {len(data.splits['test'])} questions, vocabulary "
                f"{len(data.vocab)}" + (f", {len(data.answers)} answers" if data.answers else "")
                + f" (from {ckpt})")
        return evaluate_only(args, run, data, model.to(device), MASNTask(args.task), ckpt, device)


def train(args, run: Run, data: QAData, model: torch.nn.Module, task: MASNTask, device) -> dict:
    meta = training_meta(args, data).to_dict()
    if meta["answers"] and run.is_main:
        save_answer_index(run.dir / "answer_index.json", data.answers)
    optimizer = torch.optim.Adam(model.parameters(), lr=initial_lr(args.change_lr, args.lr),
                                 weight_decay=args.weight_decay)
    schedule = EpochSchedule(optimizer, args.change_lr, args.lr, args.max_epoch, args.lr_list,
                             watch=lambda metrics: task.val_value(metrics["val"], args.change_lr))
    callbacks = [ThresholdSaver(args, meta)] if args.select == "test" else []
    trainer = Trainer(run, model, optimizer, task, device=device, epochs=args.max_epoch,
                      batch_size=args.batch_size, eval_batch_size=args.eval_batch_size,
                      num_workers=args.num_workers, scheduler=schedule, amp=args.amp,
                      save_every_steps=args.save_every_steps, seed=args.seed, checkpoint_meta=meta,
                      select_split=args.select, callbacks=callbacks)
    trainer.fit(data.splits["train"], data.splits["val"], data.splits["test"])
    summary = summarize(task, trainer.history)
    if "val_selected" in summary and summary["val_selected"]["test"] is not None:
        s = summary["val_selected"]
        run.log(f"RESULT {args.task} val-selected (epoch {s['epoch']}): test {format_metrics(args.task, s['test'])}")
    if "best_test" in summary:
        s = summary["best_test"]
        run.log(f"RESULT {args.task} best test (epoch {s['epoch']}, the original's selection): "
                f"{format_metrics(args.task, s['test'])}")
    summary |= answer_prior(args, run)
    run.write_json("report.json", summary)
    return summary


class ThresholdSaver(Callback):
    """The original's ``<save_path>/<model_name>/<Task>_<metric[:5]>.pth``, written (by rank 0 only)
    after each epoch whose test metric passes the task's bar."""

    def __init__(self, args: argparse.Namespace, meta: dict) -> None:
        self.folder, self.task_name, self.meta = Path(args.save_path) / args.model_name, args.task, meta

    def on_epoch_end(self, epoch: int, metrics: dict, trainer: Trainer) -> None:
        value = metrics.get("test", {}).get(trainer.task.select_metric)
        if value is None or not passes_threshold(self.task_name, value):
            return
        path = self.folder / f"{self.task_name}_{str(value)[:5]}.pth"
        if dist.rank() == 0:
            save_checkpoint(path, {"model": trainer.model.state_dict(), "meta": self.meta, "epoch": epoch + 1})
        trainer.run.log(f"saved {path} (test {trainer.task.select_metric} {value:.4f})")


def cli(dataset: str = "tgif-qa") -> None:
    sys.exit(run_cli(main, dataset=dataset))


if __name__ == "__main__":
    cli()
