"""Side-by-side check of MASN against the original code, for all five heads.

The original is built with seed 999 (as in its main.py), every parameter is perturbed (as a reference harness would,
so that a_2/b_2, weight-norm gains and outputs are not at their trivial values), it runs once in eval
mode (its state_dict then has the 4 transient compress_*.weight keys, 180 in all) and that state_dict
is loaded strictly into ours. Inputs: batch 4 with videos of 20/7/13/1 frames and questions (or
candidates) of mixed lengths. Also converts a ``torch.save(original)`` whole-model pickle with
masn/convert_checkpoint.py and compares again. Exit status 1 if any difference exceeds ``--tol``.

    python scripts/parity_masn.py --original /path/to/MASN-pytorch [--tasks Count FrameQA]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from benchkit.batches import masn_batch
from benchkit.originals import original_masn
from benchkit.weights import perturb
from engine.errors import run_cli
from masn.checkpoint import build_from_checkpoint, load_masn_state
from masn.convert_checkpoint import convert
from masn.model import MASN

VOCAB = 100
HEADS = [("Count", None, 20), ("Action", None, 20), ("Trans", None, 20), ("FrameQA", 50, 20), ("MS-QA", 1000, 30)]
QUESTION_LENGTHS = {"single": [20, 9, 12, 5],
                    "candidates": [[20, 9, 12, 5, 8], [6, 7, 8, 9, 10], [11, 11, 3, 4, 15], [5, 5, 5, 5, 5]]}


def inputs(task: str, frames: int, seed: int) -> list[torch.Tensor]:
    """Batch 4: videos of ``frames``/7/13/1 frames, questions (or candidates) of mixed lengths."""
    lengths = QUESTION_LENGTHS["candidates" if task in ("Action", "Trans") else "single"]
    return masn_batch(task, batch=4, frames=frames, vocab=VOCAB, seed=seed, question_lengths=lengths,
                      video_lengths=[frames, 7, 13, 1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--original", type=Path, required=True, help="checkout of ahjeongseo/MASN-pytorch")
    parser.add_argument("--seed", type=int, default=7, help="seed of the inputs")
    parser.add_argument("--tol", type=float, default=1e-5)
    parser.add_argument("--tasks", nargs="+", choices=[h[0] for h in HEADS], default=[h[0] for h in HEADS],
                        help="heads to compare (default: all five)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    OriginalMASN = original_masn(args.original)
    emb = np.random.RandomState(0).normal(size=(VOCAB, 300))
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for task, answers, frames in [h for h in HEADS if h[0] in args.tasks]:
            torch.manual_seed(999)
            original = OriginalMASN(VOCAB, 1, emb, 2048, 2048, 512, dropout_p=0.3, answer_vocab_size=answers,
                                    q_max_len=20, v_max_len=frames).eval()
            perturb(original, torch.Generator().manual_seed(2))
            batch = inputs(task, frames, args.seed)
            with torch.no_grad():
                expected = original(task, *batch)[0]
            ours = MASN(VOCAB, 1, emb, 2048, 2048, 512, dropout_p=0.3, answer_vocab_size=answers, q_max_len=20,
                        v_max_len=frames).eval()
            state = original.state_dict()
            load_masn_state(ours, state, "original state_dict")
            pickled = Path(tmp) / f"{task}.pth"
            torch.save(original, pickled)
            convert(pickled, Path(tmp) / f"{task}.pt")
            converted, _ = build_from_checkpoint(Path(tmp) / f"{task}.pt")  # as masn/main.py --test and answer.py
            with torch.no_grad():
                got = ours(task, *batch)[0]
                got_converted = converted(task, *batch)[0]
            err, err_conv = (got - expected).abs().max().item(), (got_converted - expected).abs().max().item()
            worst = max(worst, err, err_conv)
            print(f"{task:8s} out {tuple(got.shape)!s:10s} keys {len(state)}  max|ours - original| {err:.2e}  "
                  f"converted pickle {err_conv:.2e}  (output std {expected.std().item():.3f})")
    print(f"worst {worst:.2e} (tolerance {args.tol:g})")
    return int(worst > args.tol)


if __name__ == "__main__":
    sys.exit(run_cli(main))
