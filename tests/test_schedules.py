"""``--change_lr acc|loss|cos|step`` through masn/main.py: the learning rate Adam actually stepped with.

The rate is read by a global optimizer step hook (one step per epoch here: 9 training questions,
batch 16) and compared with the original's rules written out from its main.py and warmup_scheduler.py:

* cos: Adam at lr/5, GradualWarmupScheduler(x5, 5 epochs) around CosineAnnealingLR(max_epoch),
  stepped at each epoch start: 2e-5, 3.6e-5, 5.2e-5, 6.8e-5, 8.4e-5, 1e-4, 1e-4 [verified on the
  original], then lr * (1 + cos(pi * (e - 5) / max_epoch)) / 2.
* step: MultiStepLR(lr_list, gamma 0.1) stepped after each epoch.
* acc / loss: Adam at lr/5; the warm-up's constructor steps it to x1.8; stepped after each epoch with
  epoch 0 counted as 1, then ReduceLROnPlateau(factor 0.1, patience 3) on the validation value:
  ``acc`` maximises accuracy -- for Count the original's validation "acc" is -MSE, so a *falling*
  MSE is an improvement -- and ``loss`` minimises the validation loss.

For the plateau runs the validation values are scripted (the model's own are too flat on 13 tiny
samples to tell a wrong sign from a right one): improvements until epoch 7 (0-based), then flat, so
the right watcher cuts the rate after epoch 11 and a wrong-sign or wrong-metric one after epoch 10.
Their values are scripted into the real run's validation metrics; everything else is main.py's.
"""
from __future__ import annotations

import math

import pytest
from torch.optim.optimizer import register_optimizer_step_pre_hook

from masn.data.synthetic import make_demo
from masn.main import main
from masn.tasks import MASNTask

pytestmark = pytest.mark.slow
LR = 1e-4


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("masn_sched")
    make_demo(root, seed=1, n_train=10, n_test=3, frames=2)
    return root


def lrs_used(demo, run_dir, *extra: str) -> list[float]:
    used: list[float] = []
    handle = register_optimizer_step_pre_hook(lambda opt, args, kwargs: used.append(opt.param_groups[0]["lr"]))
    try:
        main(["--task", "Count", "--df_dir", str(demo / "question"), "--feat_dir", str(demo), "--vc_dir",
              str(demo / "vocab"), "--v_max_length", "3", "--batch_size", "16", "--num_workers", "0", "--quiet",
              "--device", "cpu", "--hidden_size", "16", "--lr", str(LR), "--run_dir", str(run_dir), *extra])
    finally:
        handle.remove()
    return used


def test_cos(demo, tmp_path):
    max_epoch = 9
    expect = [2e-5, 3.6e-5, 5.2e-5, 6.8e-5, 8.4e-5, 1e-4, 1e-4] + [
        LR * (1 + math.cos(math.pi * (e - 5) / max_epoch)) / 2 for e in (7, 8)]
    assert lrs_used(demo, tmp_path / "r", "--change_lr", "cos", "--max_epoch", str(max_epoch)) == pytest.approx(expect)


def test_step_with_lr_list(demo, tmp_path):
    used = lrs_used(demo, tmp_path / "r", "--change_lr", "step", "--lr_list", "1", "3", "--max_epoch", "4")
    assert used == pytest.approx([LR, LR / 10, LR / 10, LR / 100])


# epochs 0..12: better at 6 and 7, then worse. (Worse, not flat: like the original, the plateau sees
# Count's -MSE in "max" mode with torch's relative threshold, where a repeated negative value counts as
# an improvement, since -3 > -3 * 1.0001; a flat Count MSE therefore never cuts the rate.)
IMPROVING = [5.0] * 6 + [4.0, 3.0] + [3.5] * 5
FLAT = [5.0] * 13
WARMUP = [LR / 5 * f for f in (1.8, 1.8, 1.8, 2.6, 3.4, 4.2)]
# epochs 6..11 at lr; four epochs without improvement after epoch 7 -> cut after epoch 11
EXPECT_PLATEAU = WARMUP + [LR] * 6 + [LR / 10]


@pytest.mark.parametrize("mode,mse,loss", [("acc", IMPROVING, FLAT), ("loss", FLAT, IMPROVING)])
def test_plateau_watches_the_right_value_with_the_right_sign(demo, tmp_path, monkeypatch, mode, mse, loss):
    original = MASNTask.on_epoch_end

    def scripted(self, epoch, metrics_by_split, trainer):
        metrics_by_split["val"].update(mse=mse[epoch], loss=loss[epoch])
        return original(self, epoch, metrics_by_split, trainer)

    monkeypatch.setattr(MASNTask, "on_epoch_end", scripted)
    used = lrs_used(demo, tmp_path / "r", "--change_lr", mode, "--max_epoch", str(len(mse)))
    assert used == pytest.approx(EXPECT_PLATEAU)
