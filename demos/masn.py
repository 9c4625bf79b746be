"""``make demo`` for MASN: train and test on the synthetic TGIF-QA data, all four tasks, beside chance.

Tiny settings (few frames, a few epochs) keep MASN's share of the demo to minutes on a CPU; the
numbers show that the pipeline learns the planted signal, not the paper's results. Action and Trans
run at width 128 instead of 512: their multiple-choice signal is only learnt after a plateau of about
100-200 steps (the loss sits at the hinge margin, 1.0, then drops), which the narrower model reaches
in demo time.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from demos.folders import fresh_folder
from masn.data import tgif
from masn.main import main as run_main

TASK_SETTINGS = {"Count": (4, 512), "Action": (25, 128), "Trans": (25, 128), "FrameQA": (2, 512)}  # epochs, width
BATCH, LR, DROPOUT = 16, 1e-3, 0.0  # no dropout and a higher lr: few steps must suffice
FRAMES = 4  # the synthetic videos' length; v_max_length = FRAMES + 1 keeps the last frame unmasked


def chance_level(question_dir: Path, task: str) -> tuple[float, str]:
    """What a model that ignores the video can reach on the test split (from train statistics)."""
    train = tgif.read_csv(tgif.csv_path(question_dir, task, "train"), task)
    test = tgif.read_csv(tgif.csv_path(question_dir, task, "test"), task)
    if task == "Count":
        guess = float(np.clip(np.round(np.maximum(train["answer"], 1).mean()), 1, 10))
        return float(((np.maximum(test["answer"], 1) - guess) ** 2).mean()), f"MSE of always answering {guess:.0f}"
    if task == "FrameQA":
        majority = train.groupby("type")["answer"].agg(lambda a: a.value_counts().index[0])
        hits = test["answer"] == test["type"].map(majority)
        return float(hits.mean() * 100), "accuracy of the majority answer per question type"
    position = train["answer"].value_counts().index[0]
    return float((test["answer"] == position).mean() * 100), "accuracy of the most frequent answer position"


def run(demo_dir: Path, runs_dir: Path, quick: bool = False) -> None:
    """Train + test MASN on ``demo_dir`` (written by masn.data.synthetic.make_demo); runs under ``runs_dir``.

    ``quick``: one epoch per task (smoke size: the pipeline runs, the numbers mean nothing).
    """
    demo_dir, runs_dir = Path(demo_dir), fresh_folder(Path(runs_dir), "--runs")
    rows = []
    for task, (epochs, width) in TASK_SETTINGS.items():
        epochs = 1 if quick else epochs
        run_dir = runs_dir / task
        print(f"--- MASN {task}: {epochs} epochs on synthetic data, hidden size {width} ---", flush=True)
        summary = run_main([
            "--task", task, "--df_dir", str(demo_dir / "question"), "--feat_dir", str(demo_dir),
            "--vc_dir", str(demo_dir / "vocab"), "--v_max_length", str(FRAMES + 1), "--batch_size", str(BATCH),
            "--eval-batch-size", "96", "--max_epoch", str(epochs), "--hidden_size", str(width),
            "--lr", str(LR), "--dropout", str(DROPOUT),
            "--num_workers", "0", "--run-dir", str(run_dir),
            "--seed", "0", "--quiet", "--device", "cpu"])
        result = summary["val_selected"]["test"]
        chance, how = chance_level(demo_dir / "question", task)
        metric = "mse" if task == "Count" else "acc"
        rows.append((task, metric, result[metric], chance, how))
    print("MASN on synthetic TGIF-QA (test split, model selected on validation):")
    for task, metric, value, chance, how in rows:
        unit = "" if metric == "mse" else "%"
        better = "lower" if metric == "mse" else "higher"
        print(f"  {task:8s} {metric.upper()} {value:6.2f}{unit}   chance {chance:6.2f}{unit} "
              f"({how}; {better} is better)")
