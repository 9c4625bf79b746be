"""Engine: atomic checkpoints, resume after SIGKILL, DDP on CPU, seeding, the NaN guard."""
from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from engine_toy import Points, Regression, make_net

from engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from engine.cli import add_engine_args
from engine.run import Run
from engine.sampling import EpochSampler
from engine.seed import seed_everything
from engine.trainer import Trainer

TOY = Path(__file__).with_name("engine_toy.py")
ROOT = TOY.parent.parent


def toy(run_dir: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(TOY), "--run_dir", str(run_dir), "--quiet", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=300, cwd=ROOT)


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_save_is_atomic_when_the_writer_dies(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(3)}, "epoch": 1})
    before = path.read_bytes()

    def dying_save(obj, f):
        Path(f).write_bytes(b"half a checkpoint")
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"model": {"w": torch.zeros(3)}, "epoch": 2})
    assert path.read_bytes() == before
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")  # the hostile file is protocol 4
def test_load_refuses_arbitrary_pickles(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(pickle.dumps({"model": _Exploit()}))
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(bad)
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_resume_after_sigkill_is_bit_identical(tmp_path):
    common = ["--epochs", "3", "--save_every_steps", "3"]
    toy(tmp_path / "straight", *common, "--dump", str(tmp_path / "straight.pt"))

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(TOY), "--run_dir", str(killed), "--quiet", *common,
                             "--hang_at_step", "17"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    for line in proc.stdout:
        if line.strip() == "HANG":
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    last = load_checkpoint(killed / "checkpoints" / "last.pt")
    assert (last["epoch"], last["step_in_epoch"]) == (1, 5), "17th step of 10/epoch: saved after step 15"

    toy(killed, *common, "--resume", "--dump", str(tmp_path / "resumed.pt"))
    straight, resumed = torch.load(tmp_path / "straight.pt"), torch.load(tmp_path / "resumed.pt")
    assert states_equal(straight["model"], resumed["model"])
    assert straight["metrics"] == resumed["metrics"]
    history = [load_checkpoint(d / "checkpoints" / "last.pt")["history"] for d in (tmp_path / "straight", killed)]
    assert history[0] == history[1], "the resumed epoch's train loss averages all its steps, not just the last 5"


def test_run_directory_records_the_experiment_and_refuses_overwrite(tmp_path):
    toy(tmp_path / "run", "--epochs", "1", "--seed", "11")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    env = json.loads((tmp_path / "run" / "env.json").read_text())
    assert config["seed"] == 11 and config["epochs"] == 1
    assert env["seed"] == 11 and env["packages"]["torch"] == torch.__version__.split("+")[0]
    assert len(env["git_commit"].split("+")[0]) == 40
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "epoch 1/1" in log and "batch size 4 per process x 1 process(es) = 4 samples per optimizer step" in log
    assert env["kernels"] == {"deterministic": False, "cudnn_benchmark": True, "tf32_matmul": True,
                              "tf32_cudnn": True}
    args = add_engine_args(argparse.ArgumentParser()).parse_args(["--run-dir", str(tmp_path / "det"),
                                                                   "--deterministic"])
    seed_everything(1, deterministic=True)
    try:
        Run(args, "det").close()
    finally:
        seed_everything(1)
    kernels = json.loads((tmp_path / "det" / "env.json").read_text())["kernels"]
    assert not any(kernels[k] for k in ("cudnn_benchmark", "tf32_matmul", "tf32_cudnn")) and kernels["deterministic"]
    assert any((tmp_path / "run" / "tb").iterdir()), "TensorBoard events written"
    before = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    result = toy(tmp_path / "run", "--epochs", "1", "--seed", "12", check=False)
    assert result.returncode != 0 and "--resume" in result.stderr
    assert {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()} == before


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    result = toy(tmp_path / "run", "--epochs", "2", "--save_every_steps", "2", "--nan_at_step", "7", check=False)
    assert result.returncode != 0
    assert "non-finite loss" in result.stderr and "epoch 1, step 7" in result.stderr
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert last["global_step"] == 6
    assert all(torch.isfinite(v).all() for v in last["model"].values())


def test_training_steps_do_not_wait_for_the_device(tmp_path, monkeypatch):
    """No host sync per step (loss.item(), a NaN check before backward): a tensor's value is read at log
    points, checkpoints and the epoch end only. Counted here as reads of tensor values on the host."""
    args = add_engine_args(argparse.ArgumentParser()).parse_args(["--run-dir", str(tmp_path / "r"), "--quiet"])
    model = make_net(0.0)
    trainer = Trainer(Run(args, "r"), model, torch.optim.SGD(model.parameters(), lr=0.01), Regression(0, 0),
                      device=torch.device("cpu"), epochs=1, batch_size=2)
    reads = []
    for name in ("item", "__bool__", "__float__", "__int__"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _f=original, _n=name: reads.append(_n) or _f(self, *a))
    stats = trainer.train_epoch(Points(40, 1), EpochSampler(40, 2, shuffle=True, seed=1))
    monkeypatch.undo()
    trainer.run.close()
    assert len(reads) <= 3, f"{len(reads)} host reads in 20 steps: {reads}"
    assert math.isfinite(stats["loss"])


def _train_in_process(tmp_path: Path, seed: int, name: str) -> dict:
    args = add_engine_args(argparse.ArgumentParser()).parse_args(
        ["--run-dir", str(tmp_path / name), "--seed", str(seed), "--quiet"])
    seed_everything(seed)
    model = make_net(0.2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    run = Run(args, name)
    trainer = Trainer(run, model, opt, Regression(0, 0), device=torch.device("cpu"), epochs=2, batch_size=4,
                      num_workers=1, seed=seed)
    trainer.fit(Points(24, 1), Points(8, 2))
    run.close()
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    a, b = _train_in_process(tmp_path, 5, "a"), _train_in_process(tmp_path, 5, "b")
    c = _train_in_process(tmp_path, 6, "c")
    assert states_equal(a, b)
    assert not states_equal(a, c)


def test_ddp_two_processes_equals_one_process_on_the_union_of_batches(tmp_path):
    """Gradient averaging over 2 ranks of batch b == one step on the 2b samples they saw."""
    run_dir, dump = tmp_path / "ddp", tmp_path / "ddp.pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(TOY),
           "--run_dir", str(run_dir), "--quiet", "--epochs", "2", "--dropout", "0", "--optimizer", "sgd",
           "--train_size", "21", "--batch_size", "3", "--seed", "3", "--dump", str(dump)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = torch.load(dump)
    log = (run_dir / "log.txt").read_text().splitlines()
    assert [sum(f"epoch {e}/2 " in line for line in log) for e in (1, 2)] == [1, 1], "rank 0 alone logs"
    assert len(list((run_dir / "tb").glob("events.*"))) == 1, "rank 0 alone writes TensorBoard events"

    seed_everything(3)
    model = make_net(0.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    data = Points(21, 1)
    for epoch in range(2):
        orders = []
        for rank in range(2):
            s = EpochSampler(21, 3, shuffle=True, seed=3, rank=rank, world=2)
            s.set_epoch(epoch)
            orders.append(s.epoch_order())
        assert set(orders[0] + orders[1]) == set(range(21)), "every sample seen, padding wraps around"
        for start in range(0, len(orders[0]), 3):
            opt.zero_grad()
            losses = []
            for order in orders:
                x, y = data[torch.tensor(order[start:start + 3])]
                losses.append(torch.nn.functional.mse_loss(model(x).squeeze(-1), y))
            (sum(losses) / 2).backward()
            opt.step()
        sched.step()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(got["model"][key], value, rtol=0, atol=1e-6)
    assert got["metrics"]["n"] == 13, "validation metrics cover every sample once over both ranks"
    val = Points(13, 2)
    with torch.no_grad():
        expected = float(((model(val.x).squeeze(-1) - val.y) ** 2).mean())
    assert got["metrics"]["mse"] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_trains_and_records_the_scaler(tmp_path, amp):
    result = toy(tmp_path / amp, "--epochs", "2", "--amp", amp)
    assert "epoch 2/2" in result.stdout
    last = load_checkpoint(tmp_path / amp / "checkpoints" / "last.pt")
    assert all(torch.isfinite(v).all() for v in last["model"].values())
    assert bool(last["scaler"]) == (amp == "fp16"), "only fp16 runs a GradScaler"
