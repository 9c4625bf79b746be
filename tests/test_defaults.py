"""Defaults that decide correctness or speed, asserted where they are set: DDP's unused-parameter walk,
the AMP dtypes, the fp32 islands under autocast, the kernel flags, and the exit statuses."""
from __future__ import annotations

import argparse

import pytest
import torch
from engine_toy import Regression, make_net

import avst.model.question_encoder as avst_question
import masn.model.rnn_encoder as masn_rnn
from avst.tasks import AVQATask
from engine import modules
from engine.cli import add_engine_args
from engine.device import AMP_DTYPES, autocast
from engine.errors import EXIT_USER_ERROR, UserError, run_cli
from engine.run import Run
from engine.seed import seed_everything
from engine.trainer import Task, Trainer
from feat_script.base import _choose_kernels
from grounding_gen.tasks import GroundingTask
from masn.tasks import MASNTask


@pytest.fixture
def kernel_flags():
    """Put the process-wide kernel flags back after a test sets them."""
    saved = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
             torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    yield
    torch.use_deterministic_algorithms(saved[0])
    torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[1:]


def _trainer(tmp_path, task: Task, **kwargs) -> Trainer:
    args = add_engine_args(argparse.ArgumentParser()).parse_args(["--run-dir", str(tmp_path / "r"), "--quiet"])
    model = make_net(0.0)
    return Trainer(Run(args, "r"), model, torch.optim.SGD(model.parameters(), lr=0.01), task,
                   device=torch.device("cpu"), epochs=1, batch_size=2, **kwargs)


def test_ddp_skips_the_unused_parameter_walk_for_every_task():
    """Every model's unused parameters are frozen (engine.modules), so DDP need not search the graph
    each step; tests/test_ddp_models.py trains the real models that way."""
    assert Task.find_unused_parameters is False
    for task in (AVQATask, MASNTask, GroundingTask):
        assert task.find_unused_parameters is False, task


@pytest.mark.parametrize("override", [None, True, False])
def test_trainer_takes_the_tasks_choice_unless_overridden(override, tmp_path):
    trainer = _trainer(tmp_path, Regression(0, 0), find_unused_parameters=override)
    assert trainer.find_unused_parameters is (False if override is None else override)
    trainer.run.close()


def test_amp_dtypes_and_the_scaler_only_for_fp16(tmp_path):
    assert AMP_DTYPES == {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    for amp, scaled in (("off", False), ("bf16", False), ("fp16", True)):
        trainer = _trainer(tmp_path / amp, Regression(0, 0), amp=amp)
        assert trainer.scaler.is_enabled() is scaled, amp
        trainer.run.close()
    x, w = torch.randn(2, 3), torch.randn(3, 3)
    with autocast(torch.device("cpu"), "bf16"):
        assert (x @ w).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), "off"):
        assert (x @ w).dtype == torch.float32
    with pytest.raises(UserError, match="--amp fp8"):
        autocast(torch.device("cpu"), "fp8")


def test_run_in_fp32_is_an_fp32_island_under_autocast():
    linear = torch.nn.Linear(3, 2)
    x = torch.randn(4, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert linear(x).dtype == torch.bfloat16  # what the island prevents
        assert modules.run_in_fp32(linear, x).dtype == torch.float32
        assert modules.run_in_fp32(linear, x.bfloat16()).dtype == torch.float32  # inputs cast up too


def _islands(monkeypatch, module) -> list[torch.dtype]:
    """The output dtypes of every ``run_in_fp32`` call the module makes."""
    seen = []

    def spy(net, *inputs):
        out = modules.run_in_fp32(net, *inputs)
        seen.append((out[0].data if isinstance(out[0], torch.nn.utils.rnn.PackedSequence) else out[0]).dtype)
        return out

    monkeypatch.setattr(module, "run_in_fp32", spy)
    return seen


def test_the_question_lstms_run_in_fp32_under_bf16(monkeypatch):
    avst_seen, masn_seen = _islands(monkeypatch, avst_question), _islands(monkeypatch, masn_rnn)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        avst_question.QstEncoder(20, 8, 8, 1, 8)(torch.randint(0, 20, (2, 5)))
        masn_rnn.SentenceEncoderRNN(8)(torch.randn(2, 5, 8), torch.tensor([5, 3]))
    assert avst_seen == [torch.float32] and masn_seen == [torch.float32]


@pytest.mark.parametrize("deterministic", [True, False])
def test_seed_everything_sets_the_kernel_flags(deterministic, kernel_flags):
    seed_everything(0, deterministic=deterministic)
    assert torch.are_deterministic_algorithms_enabled() is deterministic
    assert torch.backends.cudnn.benchmark is (not deterministic)
    assert torch.backends.cuda.matmul.allow_tf32 is torch.backends.cudnn.allow_tf32 is (not deterministic)


@pytest.mark.parametrize("exact", [True, False])
def test_extraction_never_uses_tf32_and_autotunes_unless_exact(exact, kernel_flags):
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    _choose_kernels(exact)
    assert torch.backends.cudnn.benchmark is (not exact)
    assert torch.backends.cuda.matmul.allow_tf32 is torch.backends.cudnn.allow_tf32 is False


def test_exit_statuses(capsys):
    assert EXIT_USER_ERROR == 2
    assert run_cli(lambda: None) == 0 and run_cli(lambda: 3) == 3
    assert run_cli(lambda: (_ for _ in ()).throw(UserError("x: bad; fix it"))) == 2
    assert capsys.readouterr().err == "error: x: bad; fix it\n"

    def interrupted():
        raise KeyboardInterrupt

    assert run_cli(interrupted) == 130
    with pytest.raises(RuntimeError):  # a bug keeps its traceback
        run_cli(lambda: (_ for _ in ()).throw(RuntimeError("bug")))


@pytest.mark.parametrize(("log_every", "steps"), [(None, []), (1, [1, 2, 3, 4, 5]), (2, [2, 4]), (5, [5]), (6, [])])
def test_log_interval_sets_the_steps_of_the_train_scalars(tmp_path, monkeypatch, log_every, steps):
    """AVST's --log-interval reaches the engine: train/ scalars at every multiple of it (default 50)."""
    from engine_toy import Points

    from engine.sampling import EpochSampler

    kwargs = {} if log_every is None else {"log_every": log_every}
    trainer = _trainer(tmp_path, Regression(0, 0), **kwargs)
    assert trainer.log_every == (50 if log_every is None else log_every)
    seen = []
    monkeypatch.setattr(trainer.run, "scalars", lambda values, step, prefix="": seen.append((prefix, step)))
    try:
        trainer.train_epoch(Points(10, 1), EpochSampler(10, 2, shuffle=False, seed=1))
    finally:
        trainer.run.close()
    assert seen == [("train/", s) for s in steps]


def test_log_interval_zero_is_refused(tmp_path):
    with pytest.raises(UserError, match="logging interval 0"):
        _trainer(tmp_path, Regression(0, 0), log_every=0)
