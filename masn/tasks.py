"""Engine tasks for MASN: the original's loss, predictions and metrics per task (``main.py`` train/eval loops,
``embed_loss.py``).

Count: MSE on the raw output for training; reported ``mse`` on clamp(round(out), 1, 10) against the
answers (0 already mapped to 1), selected with mode ``min``; ``acc`` is exact match, as printed by
the original. Action/Trans: multiple-choice hinge loss; FrameQA/MS-QA: cross-entropy; both report
accuracy in %. FrameQA adds accuracy per answer type (object, number, color, location).
"""
from __future__ import annotations

import torch
from torch import nn

from engine.trainer import Task
from masn.data.tgif import FRAMEQA_TYPES
from masn.losses import build_criterion

# The original saved a checkpoint whenever the *test* metric passed these (main.py test()).
TEST_THRESHOLDS = {"Count": 4.0, "Action": 80.0, "Trans": 80.0, "FrameQA": 55.0, "MS-QA": 30.0}


def per_sample_loss(task: str, out: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """Each sample's share of the original's batch loss (their mean is the batch loss)."""
    if task == "Count":
        return (out.float() - answers.float()) ** 2
    if task in ("Action", "Trans"):
        right = out.gather(1, answers.long()[:, None])
        hinge = torch.clamp(1 + out - right, min=0)
        return (hinge.sum(1) - 1) / (out.shape[1] - 1)
    return nn.functional.cross_entropy(out.float(), answers.long(), reduction="none")


class MASNTask(Task):
    """The engine's Task for one MASN task (the LR schedule is the Trainer's: engine.schedule)."""

    def __init__(self, task: str):
        self.task = task
        self.criterion = build_criterion(task)
        self.select_metric, self.select_mode = ("mse", "min") if task == "Count" else ("acc", "max")

    def training_loss(self, model: nn.Module, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss, stats); stats are 0-dim tensors on the device: no host sync per step."""
        out, predictions, answers = model(self.task, *batch)
        loss = self.criterion(out, answers)
        acc = (predictions.long() == answers.long()).float().mean() * 100
        return loss, {"acc": acc}

    def predict(self, model: nn.Module, batch) -> dict[str, torch.Tensor]:
        out, predictions, answers = model(self.task, *batch)
        records = {"prediction": predictions.long(), "answer": answers.long(),
                   "loss": per_sample_loss(self.task, out, answers)}
        if self.task == "FrameQA":
            records["answer_type"] = batch[9].long()
        return records

    def metrics(self, records: dict[str, torch.Tensor]) -> dict[str, float]:
        pred, answer = records["prediction"], records["answer"]
        correct = (pred == answer).float()
        out = {"acc": correct.mean().item() * 100, "loss": records["loss"].float().mean().item()}
        if self.task == "Count":
            out["mse"] = nn.functional.mse_loss(pred.float(), answer.float()).item()
        if self.task == "FrameQA":
            for i, name in enumerate(FRAMEQA_TYPES):
                mask = records["answer_type"] == i
                if mask.any():
                    out[f"acc_{name}"] = correct[mask].mean().item() * 100
                    out[f"n_{name}"] = int(mask.sum())
        return out

    def val_value(self, metrics: dict[str, float], mode: str) -> float:
        """What the original's ``acc``/``loss`` plateau schedules watch (Count's val "acc" is -MSE)."""
        if mode == "loss":
            return metrics["loss"]
        return -metrics["mse"] if self.task == "Count" else metrics["acc"]


def passes_threshold(task: str, value: float) -> bool:
    limit = TEST_THRESHOLDS[task]
    return value <= limit if task == "Count" else value >= limit
