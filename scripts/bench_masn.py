"""Training-step speed of our MASN against the original, in one process on the same inputs.

    python scripts/bench_masn.py --original /work/orig/masn          # Count and Action, batch 8, CPU

One step = forward + loss + backward + Adam step, in training mode, for both models built from the
same weights and inputs: ours with its task's loss (``masn.tasks.MASNTask``), the original with its own
(``nn.MSELoss``, its multiple-choice hinge loop; shims in ``benchkit/originals.py``). Prints the median
seconds per step and original / ours, as wall time and as process CPU time (steadier on a shared machine).
"""
from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

from benchkit.batches import masn_batch
from benchkit.originals import original_masn, original_mc_loss
from benchkit.timing import interleaved, ratio_lines
from engine.errors import run_cli
from masn.model import MASN
from masn.tasks import MASNTask


def train_step(model: torch.nn.Module, loss: Callable[[], torch.Tensor]) -> Callable[[], None]:
    """One Adam step of ``model`` on ``loss()``."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()

    return step


def ours_loss(model: torch.nn.Module, task: MASNTask, batch: list[torch.Tensor]) -> torch.Tensor:
    return task.training_loss(model, batch)[0]


def original_loss(model: torch.nn.Module, task: str, batch: list[torch.Tensor]) -> torch.Tensor:
    """The original main.py's loss: MSE for Count, its multiple-choice hinge loop for Action."""
    out, _, answers = model(task, *batch)
    return (original_mc_loss if task == "Action" else torch.nn.functional.mse_loss)(out, answers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--original", type=Path, required=True, help="checkout of ahjeongseo/MASN-pytorch")
    parser.add_argument("--tasks", nargs="+", default=["Count", "Action"], choices=["Count", "Action"])
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--vocab", type=int, default=200)
    parser.add_argument("--iters", type=int, default=2, help="timed steps per model (after one warm-up)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    warnings.filterwarnings("ignore")
    OriginalMASN = original_masn(args.original)
    emb = np.random.RandomState(0).normal(size=(args.vocab, 300))

    print(f"device={device} threads={torch.get_num_threads()} batch={args.batch_size} frames={args.frames} "
          f"torch={torch.__version__}")
    for task in args.tasks:
        torch.manual_seed(999)
        original = OriginalMASN(args.vocab, 1, emb, 2048, 2048, 512, dropout_p=0.3, q_max_len=20,
                                v_max_len=args.frames).to(device).train()
        ours = MASN(args.vocab, 1, emb, 2048, 2048, 512, dropout_p=0.3, q_max_len=20,
                    v_max_len=args.frames).to(device).train()
        ours.load_state_dict(original.state_dict())
        batch = [x.to(device) for x in masn_batch(task, batch=args.batch_size, frames=args.frames,
                                                  vocab=args.vocab)]
        steps = {"original": train_step(original, partial(original_loss, original, task, batch)),
                 "ours": train_step(ours, partial(ours_loss, ours, MASNTask(task), batch))}
        medians = interleaved(steps, args.iters, device)
        print(f"{task} train step, median of {args.iters}:")
        print("\n".join(ratio_lines(medians)))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
