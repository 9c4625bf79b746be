"""Side-by-side check of AVST, the baseline and the grounding net against the original code.

Each original net gets our model's weights (default init, then every float tensor perturbed so
that LayerNorm/BatchNorm/biases are not at their trivial values), both run in eval mode on the
same random inputs, and the largest absolute difference of every output is printed. Exit status
1 if any exceeds ``--tol`` (1e-5).

    python scripts/parity_avst.py --original /path/to/MUSIC-AVQA [--batch 3 --frames 7 --seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from avst.model import AVST, AVSTBaseline, load_avst_state
from benchkit.batches import avst_batch
from benchkit.originals import original_avst, original_baseline, original_grounding
from benchkit.weights import perturb
from engine.errors import run_cli
from grounding_gen.model import GroundingNet


def perturbed(model: torch.nn.Module, generator: torch.Generator) -> torch.nn.Module:
    """Every float tensor moved by 10% of its own spread (by 0.1 where it is constant, e.g. LayerNorm)."""
    return perturb(model, generator, relative=0.1, floor=1.0, buffers=True).eval()


def twin(ours: torch.nn.Module, original: torch.nn.Module) -> torch.nn.Module:
    """The original net with our weights, through our loader with the authors' ``module.`` keys."""
    load_avst_state(ours, {"module." + k: v for k, v in ours.state_dict().items()})
    original.load_state_dict(ours.state_dict(), strict=True)
    return original.eval()


def report(name: str, ours, theirs, tol: float) -> bool:
    pairs = [(x, y) for x, y in zip(ours, theirs) if x is not None]
    diffs = [(x - y).abs().max().item() for x, y in pairs]
    ok = max(diffs) <= tol
    shown = ", ".join(f"{d:.1e} (of |{y.abs().max().item():.2g}|)" for d, (_, y) in zip(diffs, pairs))
    print(f"{name:30s} max |ours - original| per output: {shown}  {'ok' if ok else 'FAIL'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--original", type=Path, required=True, help="GeWu-Lab/MUSIC-AVQA checkout")
    parser.add_argument("--batch", type=int, default=3)
    parser.add_argument("--frames", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tol", type=float, default=1e-5)
    args = parser.parse_args(argv)
    root = args.original.resolve()
    torch.manual_seed(args.seed)
    b, t = args.batch, args.frames
    batch = avst_batch(batch=b, frames=t, seed=args.seed)
    audio, posi, nega, question = (batch[k] for k in ("audio", "visual_posi", "visual_nega", "question"))
    g = torch.Generator().manual_seed(args.seed + 1)
    ok = True
    with torch.no_grad():
        ours = perturbed(AVST(), g)
        theirs = twin(ours, original_avst(root).AVQA_Fusion_Net())
        inputs = (audio, posi, nega, question)
        ok &= report(f"AVST B={b} T={t}", ours(*inputs), theirs(*inputs), args.tol)
        ok &= report(
            "AVST B=1 T=2",
            ours(audio[:1, :2], posi[:1, :2], nega[:1, :2], question[:1]),
            theirs(audio[:1, :2], posi[:1, :2], nega[:1, :2], question[:1]),
            args.tol,
        )
        ours = perturbed(AVSTBaseline(), g)
        theirs = twin(ours, original_baseline(root).AVQA_Fusion_Net())
        ok &= report("baseline", ours(*inputs), theirs(*inputs), args.tol)

        plain, vis = original_grounding(root)
        ours = perturbed(GroundingNet(), g)
        theirs, theirs_vis = twin(ours, plain.AVQA_AVatt_Grounding()), twin(ours, vis.AVQA_AVatt_Grounding())
        g_audio = torch.randn(2, 2, 128, generator=g)
        frames = torch.randn(2, 2, 3, 224, 224, generator=g)
        ok &= report("grounding logits", (ours(g_audio, frames),), (theirs(["v"], g_audio, frames),), args.tol)
        mapped, theirs_mapped = ours(g_audio, frames, return_map=True), theirs_vis(["v"], g_audio, frames)
        ok &= report("grounding return_map vs _vis", mapped, theirs_mapped, args.tol)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
