"""Import the original MASN from a checkout, for the parity check and the step benchmark.

Two shims that change no number: on torch >= 2.14 the original BAN's ``logits.view(...)`` fails on
the non-contiguous einsum result, so ``BCNet.forward`` returns a contiguous copy; and the original
``MultipleChoiceLoss`` allocates on CUDA, so its double loop is re-typed here device-agnostic.
Nothing from the checkout is copied into this repository.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch


def original_masn(root: Path) -> type:
    """``model.masn.MASN`` of a ahjeongseo/MASN-pytorch checkout."""
    root = Path(root).resolve()
    if not (root / "model" / "masn.py").is_file():
        raise SystemExit(f"--original {root}: no model/masn.py there (need an ahjeongseo/MASN-pytorch checkout)")
    sys.path.insert(0, str(root))
    from model.masn import MASN
    from model.modules.ban import ban

    forward = ban.BCNet.forward
    ban.BCNet.forward = lambda self, v, q: forward(self, v, q).contiguous()
    return MASN


def original_mc_loss(score: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``embed_loss.MultipleChoiceLoss.forward`` with its accumulators on the score's device."""
    loss = torch.tensor(0.0, device=score.device)
    zero = torch.tensor(0.0, device=score.device)
    cnt = 0
    for b in range(score.size(0)):
        c0 = target[b]
        for c in range(score.size(1)):
            if c == c0:
                continue
            loss += torch.max(zero, 1.0 + score[b, c] - score[b, c0])
            cnt += 1
    return loss / cnt
