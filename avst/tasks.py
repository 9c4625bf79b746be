"""Engine tasks for AVST and the baseline (loss, predictions, metrics); the Trainer steps the LR schedule."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avst.model.grounding import organize_match
from engine.trainer import Task

MATCH_WEIGHT = 0.5  # loss = QA + 0.5 x audio-visual matching (main_avst.py)


def model_inputs(batch: dict) -> tuple[torch.Tensor | None, ...]:
    """(audio, visual_posi, visual_nega, question) as float32 on the batch's device.

    Features may arrive as float16 (a float16 store stays half-size until here). Without negatives
    (evaluation, the baseline) ``visual_nega`` is None: the model skips that branch, which never
    reaches ``out_qa``.
    """
    nega = batch.get("visual_nega")
    return (batch["audio"].float(), batch["visual_posi"].float(), None if nega is None else nega.float(),
            batch["question"])


class AVQATask(Task):
    """AVST (QA + matching loss) or the baseline (QA loss only), selected on val accuracy (%)."""

    select_metric = "accuracy"
    select_mode = "max"

    def __init__(self, match_weight: float = MATCH_WEIGHT) -> None:
        self.match_weight = match_weight

    def training_loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss, stats); stats are detached 0-dim tensors on the device: no host sync per step."""
        out_qa, match_posi, match_nega = model(*model_inputs(batch))
        loss_qa = F.cross_entropy(out_qa, batch["label"])
        if match_posi is None:
            return loss_qa, {"loss_qa": loss_qa.detach()}
        logits, labels = organize_match(match_posi, match_nega)
        loss_match = F.cross_entropy(logits, labels)
        return loss_qa + self.match_weight * loss_match, {"loss_qa": loss_qa.detach(),
                                                          "loss_match": loss_match.detach()}

    def predict(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        out_qa = model(*model_inputs(batch))[0]
        return {"prediction": out_qa.argmax(dim=-1), "label": batch["label"], "index": batch["index"]}

    def metrics(self, records: dict[str, torch.Tensor]) -> dict[str, float]:
        correct = (records["prediction"] == records["label"]).float()
        return {"accuracy": 100.0 * correct.mean().item() if len(correct) else float("nan")}
