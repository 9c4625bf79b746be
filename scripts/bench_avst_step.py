"""Benchmark one AVST training step, ours vs the original ``net_grd_avst/net_avst.py``, on the same inputs.

A step is what ``main_avst.py`` does per batch: forward, loss = CE(answer) + 0.5 x CE(match over
the interleaved positive/negative frames), backward, Adam. Both models start from the same weights
and the same torch seed, so their dropout masks coincide; the script first checks that the eval
outputs, the training losses and the weights after one step agree, then times the steps
alternately and prints the median per-step time of each and the ratio.

    python scripts/bench_avst_step.py --original /path/to/MUSIC-AVQA [--batch 8 --frames 10 --steps 10]

``--original`` is a checkout of GeWu-Lab/MUSIC-AVQA (imported by ``benchkit/originals.py``, with
``pretrained=False`` forced; the visual net plays no part in the step).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from avst.model import AVST
from avst.tasks import AVQATask
from benchkit.batches import avst_batch
from benchkit.originals import original_avst
from benchkit.timing import interleaved, ratio_lines
from engine.errors import run_cli


def ours_step(model, optimizer, batch) -> float:
    optimizer.zero_grad()
    loss = AVQATask().training_loss(model, batch)[0]
    loss.backward()
    optimizer.step()
    return loss.item()


def make_original_step(batch_organize):
    def step(model, optimizer, batch) -> float:
        """The original main_avst.py's per-batch step (its loss, its ``batch_organize``)."""
        audio, posi, nega, question, label = (batch[k] for k in ("audio", "visual_posi", "visual_nega", "question",
                                                                 "label"))
        criterion = torch.nn.CrossEntropyLoss()
        optimizer.zero_grad()
        out_qa, match_posi, match_nega = model(audio, posi, nega, question)
        match, match_label = batch_organize(match_posi, match_nega)
        loss = criterion(out_qa, label) + 0.5 * criterion(match.float(), match_label.long())
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def max_diff(a: torch.nn.Module, b: torch.nn.Module, grad: bool = False) -> float:
    """Max |a - b| over the parameters (or over their gradients, where both have one)."""
    other = dict(b.named_parameters())
    pairs = [(p.grad, other[k].grad) if grad else (p, other[k]) for k, p in a.named_parameters()]
    return max((x - y).abs().max().item() for x, y in pairs if x is not None and y is not None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--original", type=Path, required=True, help="GeWu-Lab/MUSIC-AVQA checkout")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per model (after 1 warm-up)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave torch's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    net_avst = original_avst(args.original.resolve())
    original_step = make_original_step(net_avst.batch_organize)

    torch.manual_seed(args.seed)
    ours = AVST().to(device)
    orig = net_avst.AVQA_Fusion_Net().to(device)
    orig.load_state_dict(ours.state_dict(), strict=True)
    batch = {k: v.to(device) for k, v in avst_batch(batch=args.batch, frames=args.frames, seed=args.seed).items()}
    inputs = [batch[k] for k in ("audio", "visual_posi", "visual_nega", "question")]

    ours.eval(), orig.eval()
    with torch.no_grad():
        out_diff = max((x - y).abs().max().item() for x, y in zip(ours(*inputs), orig(*inputs)))
    ours.train(), orig.train()
    opt_ours = torch.optim.Adam(ours.parameters(), lr=1e-4)
    opt_orig = torch.optim.Adam(orig.parameters(), lr=1e-4)
    torch.manual_seed(args.seed)
    loss_ours = ours_step(ours, opt_ours, batch)
    torch.manual_seed(args.seed)
    loss_orig = original_step(orig, opt_orig, batch)
    print(f"eval outputs max |ours - original|: {out_diff:.2e}")
    loss_diff = abs(loss_ours - loss_orig)
    print(f"train step 1 loss: ours {loss_ours:.6f}, original {loss_orig:.6f} (|diff| {loss_diff:.2e})")
    print(f"gradients max |diff|: {max_diff(ours, orig, grad=True):.2e}")
    print(f"weights after one Adam step max |diff|: {max_diff(ours, orig):.2e}")

    medians = interleaved({"original": lambda: original_step(orig, opt_orig, batch),
                           "ours": lambda: ours_step(ours, opt_ours, batch)}, args.steps, device, warmup=0)
    print(f"training step, B={args.batch} T={args.frames} on {device} ({torch.get_num_threads()} threads), "
          f"median of {args.steps} (process CPU time is the steadier figure on a shared machine):")
    print("\n".join(ratio_lines(medians)))


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
