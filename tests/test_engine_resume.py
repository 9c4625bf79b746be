"""Engine: what a start or a --resume may do to a run folder, and resuming onto another device."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from engine_toy import Points, Regression, make_net

from engine.checkpoint import load_checkpoint
from engine.cli import add_engine_args
from engine.errors import UserError
from engine.files import atomic_write_text
from engine.run import Run
from engine.seed import seed_everything
from engine.trainer import Trainer


def toy_args(run_dir: Path, *extra: str) -> argparse.Namespace:
    parser = add_engine_args(argparse.ArgumentParser())
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--num_workers", type=int, default=0)
    return parser.parse_args(["--run-dir", str(run_dir), "--quiet", *extra])


def trainer_for(args: argparse.Namespace, task: Regression | None = None, epochs: int = 1) -> Trainer:
    seed_everything(args.seed)
    model = make_net(0.2)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    return Trainer(Run(args, "toy"), model, opt, task or Regression(0, 0), device=torch.device("cpu"),
                   epochs=epochs, batch_size=4, seed=args.seed)


@pytest.fixture
def trained(tmp_path) -> Path:
    """A finished one-epoch toy run (config.json, env.json, checkpoints/last.pt)."""
    trainer = trainer_for(toy_args(tmp_path / "run"))
    trainer.fit(Points(16, 1), Points(8, 2))
    trainer.run.close()
    return tmp_path / "run"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resume_reads_the_checkpoint_on_the_cpu_whatever_the_training_device(trained):
    """On CUDA the trainer used map_location=<its device>: RNG states then land on the GPU and cannot be
    restored. The meta device stands in for a GPU: loading must not follow the trainer's device."""
    saved = load_checkpoint(trained / "checkpoints" / "last.pt")
    trainer = trainer_for(toy_args(trained, "--resume"))
    trainer.device = torch.device("meta")  # as if training on an accelerator
    assert trainer.resume()
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, saved["model"][key])
    for state in trainer.optimizer.state.values():
        assert all(v.device.type == "cpu" for v in state.values()), "Adam state (and step) on the params' device"
    torch.set_rng_state(saved["rng"][0]["torch"])
    expected = torch.rand(3)
    restore = trainer_for(toy_args(trained, "--resume"))
    restore.device = torch.device("meta")
    restore.resume()
    assert torch.equal(torch.rand(3), expected), "the CPU generator continues the saved stream"


def test_a_refused_start_writes_nothing(trained):
    before = snapshot(trained)
    with pytest.raises(FileExistsError, match="--resume"):
        trainer_for(toy_args(trained, "--seed", "12"))  # a new run into a folder with checkpoints
    assert snapshot(trained) == before


def test_resume_refuses_changed_settings_and_names_them(trained):
    before = snapshot(trained)
    with pytest.raises(UserError, match=r"--lr 0\.01 -> 0\.1; --seed 1 -> 7"):
        trainer_for(toy_args(trained, "--resume", "--lr", "0.1", "--seed", "7"))
    assert snapshot(trained) == before, "config.json, env.json and the checkpoints untouched"
    trainer = trainer_for(toy_args(trained, "--resume", "--num_workers", "2", "--device", "cpu"))  # harmless
    assert json.loads((trained / "config.resumed.json").read_text())["num_workers"] == 2
    assert json.loads((trained / "config.json").read_text())["num_workers"] == 0
    trainer.run.close()


def test_start_and_resume_remove_only_stale_checkpoint_temporaries(trained):
    ckpt = trained / "checkpoints"
    stale = [ckpt / ".last.pt.k3j_x9q2.tmp", ckpt / ".best.pt.a1b2c3d4.tmp", trained / ".config.json.zz99yy88.tmp"]
    foreign = [ckpt / "notes.tmp", ckpt / ".last.pt.tmp", trained / "mine.last.pt.12345678.tmp"]
    for path in stale + foreign:
        path.write_bytes(b"x" * 10)
    trainer_for(toy_args(trained, "--resume")).run.close()
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in foreign), "only the engine's own temporary names are removed"


def test_atomic_write_leaves_no_temporary_behind(tmp_path):
    atomic_write_text(tmp_path / "a.json", "{}")
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


class Flat(Regression):
    """Every epoch scores the same: a tie for the selection rule to break."""

    def metrics(self, records):
        return {"mse": 1.0}


def test_a_tie_selects_the_later_epoch_for_best_pt(tmp_path):
    trainer = trainer_for(toy_args(tmp_path / "run"), Flat(0, 0), epochs=2)
    result = trainer.fit(Points(8, 1), Points(4, 2))
    trainer.run.close()
    assert result["best_epoch"] == 2
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")["epoch"] == 2


def test_the_trainer_refuses_to_resume_a_run_without_a_checkpoint(tmp_path):
    """Trainer.resume, called without the run folder's start check, still refuses: never a silent fresh start."""
    trainer = trainer_for(toy_args(tmp_path / "run"))
    with pytest.raises(UserError, match="last.pt: nothing to resume"):
        trainer.resume()
    trainer.run.close()
