"""The engine task of stage 1 (original ``grounding_gen/main_grd_gen.py``: ``train`` / ``eval``): the loss on
the (positive, negative) pair and the pair accuracy that selects the checkpoint."""
from __future__ import annotations

import torch

from engine.trainer import Task


class GroundingTask(Task):
    """Cross-entropy over the (positive, negative) logits; selected on val pair accuracy (%)."""

    select_metric = "accuracy"
    select_mode = "max"

    def training_loss(self, model, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        logits = model(batch["audio"], batch["visual"])
        loss = torch.nn.functional.cross_entropy(logits, batch["label"].reshape(-1))
        return loss, {}

    def predict(self, model, batch: dict) -> dict[str, torch.Tensor]:
        logits = model(batch["audio"], batch["visual"])
        b = batch["label"].shape[0]
        return {"correct": (logits.argmax(-1) == batch["label"].reshape(-1)).reshape(b, 2).float()}

    def metrics(self, records: dict[str, torch.Tensor]) -> dict[str, float]:
        return {"accuracy": 100.0 * records["correct"].mean().item()}
