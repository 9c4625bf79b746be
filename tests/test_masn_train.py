"""MASN training/evaluation: losses and metrics per task, the five LR schedules, and main.py end to end
on tiny generated TGIF-QA data (real MASN, a couple of steps)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from engine.errors import UserError
from engine.schedule import EpochSchedule, initial_lr
from masn.data.glove import GloveError
from masn.data.synthetic import make_demo
from masn.losses import build_criterion
from masn.main import main, summarize
from masn.tasks import MASNTask, per_sample_loss

ROOT = Path(__file__).resolve().parent.parent


# --- losses, metrics -----------------------------------------------------------------------------------

def original_mc_loss(scores, target):
    """embed_loss.MultipleChoiceLoss as a double loop: sum of max(0, 1 + s_c - s_y) over wrong c, / 4B."""
    total = 0.0
    for b in range(scores.shape[0]):
        for c in range(5):
            if c != target[b]:
                total += max(0.0, 1 + float(scores[b, c] - scores[b, target[b]]))
    return total / (4 * scores.shape[0])


def test_per_sample_losses_average_to_the_original_batch_loss():
    g = torch.Generator().manual_seed(0)
    scores, target = torch.randn(6, 5, generator=g), torch.tensor([0, 4, 2, 2, 1, 3])
    assert per_sample_loss("Action", scores, target).mean().item() == pytest.approx(original_mc_loss(scores, target))
    out, ans = torch.randn(6, generator=g) * 3, torch.tensor([1.0, 2, 3, 4, 5, 6])
    assert per_sample_loss("Count", out, ans).mean().item() == pytest.approx(((out - ans) ** 2).mean().item())
    logits, labels = torch.randn(6, 7, generator=g), torch.tensor([0, 1, 2, 3, 4, 6])
    assert per_sample_loss("FrameQA", logits, labels).mean().item() == pytest.approx(
        build_criterion("FrameQA")(logits, labels).item(), rel=1e-6)


def test_count_and_frameqa_metrics():
    m = MASNTask("Count").metrics({"prediction": torch.tensor([1, 3, 10, 2]), "answer": torch.tensor([2, 3, 7, 2]),
                                   "loss": torch.zeros(4)})
    assert m["mse"] == pytest.approx((1 + 0 + 9 + 0) / 4) and m["acc"] == pytest.approx(50.0)
    task = MASNTask("FrameQA")
    assert (task.select_metric, task.select_mode) == ("acc", "max")
    m = task.metrics({"prediction": torch.tensor([0, 1, 2, 2, 5]), "answer": torch.tensor([0, 1, 1, 2, 4]),
                      "answer_type": torch.tensor([0, 0, 2, 2, 3]), "loss": torch.zeros(5)})
    assert m["acc_object"] == 100 and m["acc_color"] == 50 and m["acc_location"] == 0 and "acc_number" not in m


# --- schedules -----------------------------------------------------------------------------------------

def lrs(mode, metrics, max_epoch=100, lr_list=(10, 20)):
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=initial_lr(mode, 1e-4))
    sched = EpochSchedule(opt, mode, 1e-4, max_epoch, list(lr_list), watch=lambda m: m["val"]["watched"])
    out = []
    for e, value in enumerate(metrics):
        sched.epoch_start(e)
        out.append(opt.param_groups[0]["lr"])
        sched.epoch_end(e, {"val": {"watched": value}})
    return out


def test_schedules_follow_the_original_epoch_semantics():
    # cos: the original's GradualWarmupScheduler + CosineAnnealingLR (main.py) [verified on the original]: 2e-5,
    # 3.6e-5, 5.2e-5, 6.8e-5, 8.4e-5, 1e-4, 1e-4, 9.99e-5
    assert lrs("cos", [0] * 8) == pytest.approx([2e-5, 3.6e-5, 5.2e-5, 6.8e-5, 8.4e-5, 1e-4, 1e-4, 9.990e-5],
                                                rel=1e-3)
    # acc/loss: what the original GradualWarmupScheduler + ReduceLROnPlateau(patience 3) gave when driven
    # with each epoch's own validation value [1, 2, 3, 3, ...] (run side by side, torch 2.14)
    expect = [3.6e-5] * 3 + [5.2e-5, 6.8e-5, 8.4e-5] + [1e-4] * 5 + [1e-5] * 3
    assert lrs("acc", [1, 2] + [3] * 12) == pytest.approx(expect)
    assert lrs("loss", [1, 2] + [3] * 12) == pytest.approx(expect)
    assert lrs("step", [0] * 21) == pytest.approx([1e-4] * 10 + [1e-5] * 10 + [1e-6])
    assert lrs("none", [0] * 3) == [1e-4] * 3


# --- main.py end to end --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("masn_demo")
    make_demo(root, seed=1, n_train=10, n_test=3, frames=2)
    return root


def data(demo, run_dir, *extra):
    """The flags of both modes (training and --test)."""
    return ["--df_dir", str(demo / "question"), "--feat_dir", str(demo), "--batch_size", "5", "--num_workers", "0",
            "--quiet", "--device", "cpu", "--run_dir", str(run_dir), *extra]


def common(demo, run_dir, *extra):
    """Training flags: --test refuses these (the checkpoint holds the model)."""
    return [*data(demo, run_dir), "--vc_dir", str(demo / "vocab"), "--v_max_length", "3", "--max_epoch", "1",
            "--hidden_size", "16", *extra]


def test_count_train_select_test_then_evaluate_checkpoint(demo, tmp_path):
    run = tmp_path / "count"
    summary = main(["--task", "Count", "--select", "test", *common(demo, run), "--save_path", str(tmp_path / "saved")])
    assert {"config.json", "env.json", "log.txt", "report.json"} <= {p.name for p in run.iterdir()}
    assert (run / "checkpoints" / "best.pt").is_file() and (run / "checkpoints" / "last.pt").is_file()
    test_mse = summary["best_test"]["test"]["mse"]
    assert test_mse <= 1.0  # answers are 1..2 frames and predictions are clamped to >= 1
    saved = list((tmp_path / "saved" / "[MASN]").glob("Count_*.pth"))  # the original's threshold file
    assert [p.name for p in saved] == [f"Count_{str(test_mse)[:5]}.pth"]
    config = (run / "config.json").read_bytes()
    again = main(["--task", "Count", "--test", "--checkpoint", str(saved[0]), *data(demo, run)])
    assert again["test"]["mse"] == pytest.approx(test_mse)
    assert (run / "config.json").read_bytes() == config, "evaluating into a training run keeps its config"
    report = json.loads((run / f"test_{saved[0].stem}" / "test_report.json").read_text())
    assert report["test"]["mse"] == pytest.approx(test_mse)
    # beside the model, the no-video prior: the training split's mean count (0 read as 1), rounded
    train = pd.read_csv(demo / "question" / "Train_count_question.csv", sep="\t")["answer"].clip(lower=1)
    test = pd.read_csv(demo / "question" / "Test_count_question.csv", sep="\t")["answer"].clip(lower=1)
    guess = round(train.mean())
    for prior in (summary["answer_prior"], report["answer_prior"]):
        assert prior["guess"] == guess and prior["mse"] == pytest.approx(((test - guess) ** 2).mean())
    with pytest.raises(CheckpointError, match="trained for task Count, not --task Action"):
        main(["--task", "Action", "--test", "--checkpoint", str(saved[0]), *data(demo, tmp_path / "wrong")])
    # the checkpoint and the test split suffice: no GloVe, no train CSV; task and frame count from the checkpoint
    alone = tmp_path / "test_only"
    (alone / "question").mkdir(parents=True)
    (alone / "question" / "Test_count_question.csv").symlink_to(demo / "question" / "Test_count_question.csv")
    (alone / "feat_r6_vsync2").symlink_to(demo / "feat_r6_vsync2")
    only = main(["--test", "--checkpoint", str(saved[0]), "--df_dir", str(alone / "question"), "--feat_dir",
                 str(alone), "--num_workers", "0", "--quiet", "--device", "cpu",
                 "--run_dir", str(tmp_path / "alone_run")])
    assert only["test"]["mse"] == pytest.approx(test_mse) and "answer_prior" not in only
    # a checkpoint without its vocabulary (an authors' file converted without --csv_dir): rebuilt from the train CSV
    payload = load_checkpoint(saved[0])
    payload["meta"] = {k: v for k, v in payload["meta"].items() if k not in ("vocab_words", "vocab_sha256")}
    save_checkpoint(tmp_path / "bare.pt", payload)
    rebuilt = main(["--test", "--checkpoint", str(tmp_path / "bare.pt"), *data(demo, tmp_path / "bare_run")])
    assert rebuilt["test"]["mse"] == pytest.approx(test_mse)


def test_frameqa_answer_index_in_run_dir_and_checkpoint(demo, tmp_path):
    run = tmp_path / "fq"
    main(["--task", "FrameQA", "--change_lr", "cos", *common(demo, run)])
    answers = json.loads((run / "answer_index.json").read_text())["answers"]
    meta = load_checkpoint(run / "checkpoints" / "best.pt")["meta"]
    total = pd.read_csv(demo / "question" / "Total_frameqa_question.csv", sep="\t")
    assert meta["answers"] == answers and meta["task"] == "FrameQA" and sorted(answers) == sorted(set(total["answer"]))
    reordered = tmp_path / "other.json"
    reordered.write_text(json.dumps({"answers": answers[::-1]}))
    with pytest.raises(CheckpointError):  # head/answer order of the checkpoint vs the one asked for
        main(["--task", "FrameQA", "--test", "--checkpoint", str(run / "checkpoints" / "best.pt"),
              "--answer-index", str(reordered), "--max_n_videos", "2", *data(demo, tmp_path / "fq_eval")])


def test_action_trains_with_acc_plateau_schedule(demo, tmp_path):
    summary = main(["--task", "Action", "--change_lr", "acc", "--lr_list", "3", "4", *common(demo, tmp_path / "a")])
    acc = summary["val_selected"]["test"]["acc"]
    assert 0 <= acc <= 100 and summary["val_selected"]["epoch"] == 1


# --- entry points and bad input ------------------------------------------------------------------------

def run_cli(args, cwd=ROOT):
    """As a user runs it after ``make setup``: the installed package, no PYTHONPATH."""
    env = {**os.environ, "PYTHONPATH": ""}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args,cwd", [(["masn/main.py"], ROOT), (["-m", "masn.main"], ROOT),
                                      (["main.py"], ROOT / "masn"), (["masn/main_msrvtt.py"], ROOT)])
def test_entry_points_run_from_anywhere(args, cwd):
    installed = run_cli(["-c", "import masn; print(masn.__file__)"], cwd="/").stdout.strip()
    if not installed.startswith(str(ROOT)):
        pytest.skip(f"the installed avqa-repro is another checkout ({installed}); pip install -e . here")
    proc = run_cli([*args, "--task", "Counting", "--device", "cpu"], cwd)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith("error: unknown task 'Counting'"), proc.stderr


@pytest.mark.parametrize("flag", [["--batch_size", "0"], ["--val_ratio", "1.0"], ["--val_ratio", "0"],
                                  ["--max_epoch", "0"], ["--num_workers", "-1"]])
def test_options_that_leave_nothing_to_train_are_refused(demo, tmp_path, flag, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--task", "Count", *common(demo, tmp_path / "r"), *flag])
    assert exit_.value.code == 2 and flag[0] in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_resume_refuses_a_changed_width_and_accepts_harmless_changes(demo, tmp_path):
    run = tmp_path / "r"
    main(["--task", "Count", *common(demo, run)])
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(UserError, match=r"--hidden_size 16 -> 64; --lr 0\.0001 -> 0\.001"):
        main(["--task", "Count", *common(demo, run), "--resume", "--hidden_size", "64", "--lr", "1e-3"])
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    again = main(["--task", "Count", *common(demo, run), "--resume", "--num_workers", "1", "--device", "cpu"])
    assert again["val_selected"]["epoch"] == 1, "the finished run resumes to its own summary"


def test_a_split_left_empty_is_refused_before_writing(demo, tmp_path):
    with pytest.raises(UserError, match="validation split is empty|val split is empty"):
        main(["--task", "Count", *common(demo, tmp_path / "r"), "--val_ratio", "0.01"])  # int(0.01 x 10) = 0
    assert not (tmp_path / "r").exists()


def test_ties_select_the_later_epoch_in_the_report_as_in_best_pt():
    """engine.selection's rule (the original AVST's ``>=``), for max (Action acc) and min (Count MSE)."""
    history = [{"epoch": 1, "val": {"acc": 50.0, "mse": 2.0}, "test": {"acc": 40.0, "mse": 3.0}},
               {"epoch": 2, "val": {"acc": 50.0, "mse": 2.0}, "test": {"acc": 40.0, "mse": 3.0}},
               {"epoch": 3, "val": {"acc": 20.0, "mse": 9.0}, "test": {"acc": 10.0, "mse": 9.0}}]
    for task in (MASNTask("Action"), MASNTask("Count")):
        summary = summarize(task, history)
        assert summary["val_selected"]["epoch"] == 2 and summary["best_test"]["epoch"] == 2


def test_bad_input_fails_before_writing_anything(demo, tmp_path):
    run = tmp_path / "bad"
    with pytest.raises(GloveError, match="nowhere/glove.txt"):
        main(["--task", "Count", "--glove", str(tmp_path / "nowhere" / "glove.txt"), *data(demo, run),
              "--max_epoch", "1"])
    assert not run.exists()
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"earlier run")
    with pytest.raises(FileExistsError, match="--resume"):
        main(["--task", "Count", *common(demo, run)])
    assert (run / "checkpoints" / "last.pt").read_bytes() == b"earlier run" and not (run / "config.json").exists()
