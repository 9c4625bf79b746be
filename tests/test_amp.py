"""``--amp bf16|fp16`` really runs the networks under autocast: in training steps and in evaluation
(engine, and MASN through masn/main.py), and in the extractors; ``--amp off`` does not.

Observed from inside: a global forward hook on every nn.Linear / nn.Conv2d records whether autocast
was on and the dtype of the layer's output (a Linear under autocast returns the autocast dtype).
"""
from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from engine_toy import Points, Regression, make_net
from torch import nn

from engine.cli import add_engine_args
from engine.run import Run
from engine.trainer import Trainer

DTYPES = {"off": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class LayerLog:
    """Context manager: (training?, autocast on?, output dtype) of every Linear/Conv2d call."""

    def __enter__(self):
        self.calls: list[tuple[bool, bool, torch.dtype]] = []

        def hook(module, inputs, output):
            if isinstance(module, (nn.Linear, nn.Conv2d)) and isinstance(output, torch.Tensor):
                self.calls.append((module.training, torch.is_autocast_enabled("cpu"), output.dtype))

        self.handle = nn.modules.module.register_module_forward_hook(hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()

    def phase(self, training: bool) -> set[tuple[bool, torch.dtype]]:
        return {(on, dtype) for t, on, dtype in self.calls if t == training}


@pytest.mark.parametrize("amp", ["off", "bf16", "fp16"])
def test_engine_train_and_eval_under_autocast(tmp_path, amp):
    args = add_engine_args(argparse.ArgumentParser()).parse_args(["--run-dir", str(tmp_path / "run"), "--quiet",
                                                                   "--amp", amp])
    torch.manual_seed(0)
    model = make_net(0.0)
    run = Run(args, "amp")
    trainer = Trainer(run, model, torch.optim.SGD(model.parameters(), lr=1e-3), Regression(0, 0),
                      device=torch.device("cpu"), epochs=1, batch_size=4, amp=amp)
    with LayerLog() as log:
        trainer.fit(Points(8, 1), Points(4, 2))
    run.close()
    expect = {(amp != "off", DTYPES[amp])}
    assert log.phase(training=True) == expect
    assert log.phase(training=False) == expect
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast, not a cast of the weights


@pytest.mark.slow
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_masn_main_trains_and_evaluates_under_autocast(tmp_path, amp):
    from masn.data.synthetic import make_demo
    from masn.main import main

    make_demo(tmp_path / "d", seed=1, n_train=10, n_test=3, frames=2)
    d = tmp_path / "d"
    with LayerLog() as log:
        main(["--task", "FrameQA", "--df_dir", str(d / "question"), "--feat_dir", str(d), "--vc_dir", str(d / "vocab"),
              "--v_max_length", "3", "--batch_size", "16", "--max_epoch", "1", "--num_workers", "0", "--quiet",
              "--device", "cpu", "--hidden_size", "16", "--amp", amp, "--run_dir", str(tmp_path / "run")])
    for training in (True, False):
        assert (True, DTYPES[amp]) in log.phase(training), f"no autocast Linear with training={training}"


@pytest.mark.slow
def test_extractor_amp_runs_the_model_under_autocast(tmp_path):
    from feat_script.base import main
    from feat_script.extract_14x14 import Res18x14
    from feat_script.synthetic_video import make_pattern_video

    (tmp_path / "v").mkdir()
    make_pattern_video(tmp_path / "v" / "a.mp4", seconds=1, audio=None)
    outs = {}
    for amp in ("off", "bf16"):
        torch.manual_seed(0)  # --random-init draws from the global generator: the same weights both times
        with LayerLog() as log:
            assert main(Res18x14, ["--videos", str(tmp_path / "v"), "--out", str(tmp_path / amp), "--quiet",
                                   "--workers", "0", "--random-init", "--sampling", "1fps", "--amp", amp]) == 0
        assert log.phase(training=False) == {(amp != "off", DTYPES[amp])}
        outs[amp] = np.load(tmp_path / amp / "a.npy")
    assert outs["bf16"].dtype == np.float32 and outs["bf16"].shape == outs["off"].shape
    assert not np.array_equal(outs["bf16"], outs["off"])  # bf16 arithmetic shows in the features
    rel = np.linalg.norm(outs["bf16"] - outs["off"]) / np.linalg.norm(outs["off"])
    assert rel < 0.1, rel  # the same features up to bf16 rounding through 18 random layers
