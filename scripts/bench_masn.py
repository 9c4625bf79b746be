"""Training-step speed of our MASN against the original, in one process on the same inputs.

    python scripts/bench_masn.py --original /work/orig/masn          # Count and Action, batch 8, CPU

One step = forward + loss + backward + Adam step, in training mode, for both models built from the
same weights and inputs (the shims the original needs: scripts/masn_original.py). Prints seconds per
step and original / ours, as wall time and as process CPU time (steadier on a shared machine).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from masn_original import original_masn, original_mc_loss  # noqa: E402

from masn.losses import build_criterion  # noqa: E402
from masn.model import MASN  # noqa: E402


def make_batch(task: str, batch: int, frames: int, vocab: int, device: torch.device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, frames + 1, (batch,), generator=g)
    lengths[0] = frames
    feats = [torch.randn(batch, frames, 2048, generator=g), torch.randn(batch, frames, 2048, generator=g),
             torch.randn(batch, frames, 10, 2048, generator=g), torch.rand(batch, frames, 10, 6, generator=g),
             torch.randn(batch, frames, 10, 2048, generator=g)]
    for b, n in enumerate(lengths.tolist()):
        for f in feats:
            f[b, n:] = 0
    shape = (batch, 5) if task == "Action" else (batch,)
    q_len = torch.randint(3, 21, shape, generator=g)
    tokens = torch.randint(2, vocab, (*shape, 20), generator=g) * (torch.arange(20) < q_len.unsqueeze(-1))
    if task == "Action":
        tail = [torch.randint(0, 5, (batch,), generator=g), torch.arange(batch)]
    else:
        tail = [torch.randint(1, 11, (batch,), generator=g).float()]
    return [t.to(device) for t in feats + [lengths, tokens, q_len] + tail]


def step_fn(model, optimizer, task, batch, loss_fn):
    def step():
        optimizer.zero_grad()
        out, _, answers = model(task, *batch)
        loss_fn(out, answers).backward()
        optimizer.step()
        if batch[0].is_cuda:
            torch.cuda.synchronize()
    return step


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
        batch = make_batch(task, args.batch_size, args.frames, args.vocab, device)
        ours_loss = build_criterion(task)
        orig_loss = original_mc_loss if task == "Action" else torch.nn.MSELoss()
        steps = {
            "original": step_fn(original, torch.optim.Adam(original.parameters(), lr=1e-4), task, batch, orig_loss),
            "ours": step_fn(ours, torch.optim.Adam(ours.parameters(), lr=1e-4), task, batch, ours_loss),
        }
        wall: dict[str, list[float]] = {name: [] for name in steps}
        cpu: dict[str, list[float]] = {name: [] for name in steps}
        for step in steps.values():
            step()  # warm-up
        for _ in range(args.iters):
            for name, step in steps.items():  # interleaved, so load changes hit both alike
                start, start_cpu = time.perf_counter(), time.process_time()
                step()
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
        w_orig, w_ours = statistics.median(wall["original"]), statistics.median(wall["ours"])
        c_orig, c_ours = statistics.median(cpu["original"]), statistics.median(cpu["ours"])
        print(f"{task:7s} train step  wall: original {w_orig:7.2f} s  ours {w_ours:7.2f} s  x{w_orig / w_ours:.2f}"
              f"  |  CPU time: original {c_orig:7.2f} s  ours {c_ours:7.2f} s  x{c_orig / c_ours:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
