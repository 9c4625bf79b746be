"""Engine under torchrun: joining and leaving the process group, per-node resume, rank-0-only files."""
from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from engine import dist
from engine.device import resolve_device
from engine.errors import UserError

TOY = Path(__file__).with_name("engine_toy.py")
ROOT = TOY.parent.parent


def test_process_group_gets_a_timeout_the_gpu_and_is_destroyed_at_exit(monkeypatch):
    calls, registered = [], []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv(dist.TIMEOUT_ENV, "90")
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda **kw: calls.append(kw))
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.setattr(dist.atexit, "register", registered.append)
    dist.init_distributed(torch.device("cpu"))
    dist.init_distributed(torch.device("cuda", 1))
    assert calls[0] == {"backend": "gloo", "timeout": datetime.timedelta(seconds=90)}
    assert calls[1]["backend"] == "nccl" and calls[1]["device_id"] == torch.device("cuda", 1)
    assert calls[1]["timeout"].total_seconds() == 90
    assert registered == [dist.shutdown, dist.shutdown]


def test_device_names_resolve_to_this_process_gpu_or_a_clear_error(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(UserError, match="--device gpu: unknown device"):
        resolve_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(UserError, match="no CUDA device"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("cuda") == resolve_device("auto") == torch.device("cuda", 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(UserError, match="only 2 CUDA"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("rank", [0, 1])
def test_only_rank_0_writes_masn_threshold_checkpoints(tmp_path, monkeypatch, rank):
    from masn.main import ThresholdSaver

    monkeypatch.setattr(dist, "rank", lambda: rank)
    args = SimpleNamespace(save_path=str(tmp_path), model_name="m", task="Action")
    trainer = SimpleNamespace(task=SimpleNamespace(select_metric="acc"), model=torch.nn.Linear(1, 1),
                              run=SimpleNamespace(log=lambda msg: None))
    ThresholdSaver(args, {}).on_epoch_end(0, {"test": {"acc": 90.0}}, trainer)
    assert [p.name for p in (tmp_path / "m").glob("*.pth")] == (["Action_90.0.pth"] if rank == 0 else [])


def torchrun(run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(TOY),
           "--run_dir", str(run_dir), "--quiet", "--train_size", "21", "--batch_size", "3", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1", dist.TIMEOUT_ENV: "60"})


@pytest.mark.slow
def test_ddp_resume_inside_an_epoch_equals_the_uninterrupted_run(tmp_path):
    """Both ranks stop mid-epoch 2 (their 7th step; the last checkpoint is after step 6) and resume: each
    rank restores its own RNG stream (dropout) and running sums before DDP wraps the model."""
    common = ["--epochs", "2", "--dropout", "0.3", "--save_every_steps", "2"]
    straight = torchrun(tmp_path / "straight", *common, "--dump", str(tmp_path / "a.pt"))
    assert straight.returncode == 0, straight.stderr[-3000:]
    killed = torchrun(tmp_path / "killed", *common, "--exit_at_step", "7")
    assert killed.returncode != 0
    last = torch.load(tmp_path / "killed" / "checkpoints" / "last.pt", weights_only=True)
    assert (last["epoch"], last["step_in_epoch"]) == (1, 2)
    resumed = torchrun(tmp_path / "killed", *common, "--resume", "--dump", str(tmp_path / "b.pt"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = torch.load(tmp_path / "a.pt"), torch.load(tmp_path / "b.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    histories = [torch.load(d / "checkpoints" / "last.pt", weights_only=True)["history"]
                 for d in (tmp_path / "straight", tmp_path / "killed")]
    assert histories[0] == histories[1]


@pytest.mark.slow
def test_resume_is_refused_when_a_rank_cannot_see_the_checkpoint(tmp_path):
    """Nodes without a shared filesystem (emulated: each rank has its own folder). Every rank resumes
    from its own view before DDP wraps the model; rank 1 has no checkpoint, so the run stops instead
    of rank 1 silently starting from scratch (or from rank 0's broadcast weights)."""
    first = torchrun(tmp_path, "--per_rank_dir", "--epochs", "1")
    assert first.returncode == 0, first.stderr[-3000:]
    assert (tmp_path / "rank0" / "checkpoints" / "last.pt").is_file()
    assert not (tmp_path / "rank1").exists(), "rank 1 writes nothing"
    resumed = torchrun(tmp_path, "--per_rank_dir", "--epochs", "1", "--resume")
    assert resumed.returncode != 0
    assert "not visible on rank(s) [1]" in resumed.stderr, resumed.stderr[-3000:]
