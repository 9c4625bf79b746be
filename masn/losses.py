"""Training losses per task, as in the original ``main.py`` / ``embed_loss.py``.

Count: MSE on the raw regression output; Action/Trans: multiple-choice hinge loss (margin 1,
averaged over the B * 4 (sample, wrong candidate) pairs), vectorised instead of the original's
Python double loop on CUDA accumulators; FrameQA / MS-QA: cross-entropy over answer logits.
"""
from __future__ import annotations

import torch
from torch import nn

from masn.model import TASKS


class MultipleChoiceLoss(nn.Module):
    """sum_{b, c != y_b} max(0, margin + s[b, c] - s[b, y_b]), divided by the number of pairs."""

    def __init__(self, num_option: int = 5, margin: float = 1.0, size_average: bool = True) -> None:
        super().__init__()
        self.num_option = num_option
        self.margin = margin
        self.size_average = size_average

    def forward(self, score: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if score.dim() != 2 or score.size(1) != self.num_option:
            raise ValueError(f"scores must be (B, {self.num_option}), got {tuple(score.shape)}")
        correct = score.gather(1, target.long().unsqueeze(1))
        hinge = torch.maximum(torch.zeros_like(score), self.margin + score - correct)
        wrong = torch.ones_like(score, dtype=torch.bool).scatter_(1, target.long().unsqueeze(1), False)
        loss = (hinge * wrong).sum()
        pairs = score.size(0) * (self.num_option - 1)
        return loss / pairs if self.size_average and pairs else loss


def build_criterion(task: str) -> nn.Module:
    """The original's criterion for ``task``."""
    if task == "Count":
        return nn.MSELoss()
    if task in ("Action", "Trans"):
        return MultipleChoiceLoss(num_option=5, margin=1, size_average=True)
    if task in ("FrameQA", "MS-QA"):
        return nn.CrossEntropyLoss()
    raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
