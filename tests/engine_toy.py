"""A tiny regression task trained by the engine; the engine tests run it as a script (and under torchrun)."""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from engine.cli import accept_both_spellings, add_engine_args
from engine.device import training_device
from engine.run import Run
from engine.seed import seed_everything
from engine.trainer import Task, Trainer


class Points(Dataset):
    """y = x . w + noise, fixed by ``offset`` so train and validation differ."""

    def __init__(self, size: int, offset: int) -> None:
        g = torch.Generator().manual_seed(offset)
        self.x = torch.randn(size, 8, generator=g)
        self.y = self.x @ (torch.arange(8.0) / 8) + 0.1 * torch.randn(size, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


def make_net(dropout: float) -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 1))


class Regression(Task):
    select_metric = "mse"
    select_mode = "min"

    def __init__(self, hang_at: int, nan_at: int, exit_at: int = 0) -> None:
        self.hang_at, self.nan_at, self.exit_at, self.calls = hang_at, nan_at, exit_at, 0

    def training_loss(self, model: nn.Module, batch):
        self.calls += 1
        if self.calls == self.hang_at:
            print("HANG", flush=True)
            time.sleep(600)
        if self.calls == self.exit_at:
            os._exit(3)  # as a kill: no cleanup, no checkpoint
        x, y = batch
        loss = nn.functional.mse_loss(model(x).squeeze(-1), y)
        if self.calls == self.nan_at:
            loss = loss * float("nan")
        return loss, {}

    def predict(self, model: nn.Module, batch):
        x, y = batch
        return {"pred": model(x).squeeze(-1), "target": y}

    def metrics(self, records):
        return {"mse": float(((records["pred"] - records["target"]) ** 2).mean()), "n": len(records["pred"])}


def main() -> None:
    parser = add_engine_args(argparse.ArgumentParser())
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--train_size", type=int, default=40)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    parser.add_argument("--hang_at_step", type=int, default=0)
    parser.add_argument("--nan_at_step", type=int, default=0)
    parser.add_argument("--exit_at_step", type=int, default=0)
    parser.add_argument("--dump", default=None)
    parser.add_argument("--per_rank_dir", action="store_true",
                        help="each rank uses <run_dir>/rank<N>: nodes without a shared filesystem")
    args = accept_both_spellings(parser).parse_args()
    if args.per_rank_dir:
        args.run_dir = str(Path(args.run_dir) / f"rank{os.environ.get('RANK', '0')}")
    seed_everything(args.seed, args.deterministic)
    model = make_net(args.dropout)
    params = model.parameters()
    optimizer = torch.optim.Adam(params, lr=1e-2) if args.optimizer == "adam" else torch.optim.SGD(params, lr=0.05)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    task = Regression(args.hang_at_step, args.nan_at_step, args.exit_at_step)
    device = training_device(args.device)
    run = Run(args, "toy", harmless=("dump", "hang_at_step", "nan_at_step", "exit_at_step"))
    trainer = Trainer(run, model, optimizer, task, device=device, epochs=args.epochs,
                      batch_size=args.batch_size, scheduler=scheduler, amp=args.amp,
                      save_every_steps=args.save_every_steps, seed=args.seed, checkpoint_meta={"toy": 1})
    trainer.fit(Points(args.train_size, 1), Points(13, 2))
    metrics, records = trainer.evaluate(Points(13, 2))
    if run.is_main and args.dump:
        torch.save({"model": trainer.model.state_dict(), "metrics": metrics, "records": records}, args.dump)
    run.close()


if __name__ == "__main__":
    main()
