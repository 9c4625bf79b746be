"""Learning-rate schedules stepped by the Trainer at epoch boundaries (tasks never step them).

The Trainer calls ``epoch_start(e)`` before epoch ``e``'s first batch and ``epoch_end(e, metrics)``
after its evaluation (``metrics`` maps split -> metric -> value), then checkpoints ``state_dict()``.
A torch scheduler given to the Trainer is wrapped in :class:`StepEachEpoch`.
"""
from __future__ import annotations

from typing import Any


class EpochScheduler:
    """Base: no-op hooks and an empty state."""

    def epoch_start(self, epoch: int) -> None:
        """Before epoch ``epoch`` (0-based) trains."""

    def epoch_end(self, epoch: int, metrics: dict[str, dict[str, float]]) -> None:
        """After epoch ``epoch`` was evaluated."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""


class StepEachEpoch(EpochScheduler):
    """A torch LR scheduler (StepLR, MultiStepLR ...) stepped once after each epoch, as the originals did."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler

    def epoch_end(self, epoch: int, metrics: dict[str, dict[str, float]]) -> None:
        self.scheduler.step()

    def state_dict(self) -> dict:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state)


def as_epoch_scheduler(scheduler: Any) -> EpochScheduler:
    """``scheduler`` itself when it is an :class:`EpochScheduler`, else wrapped in :class:`StepEachEpoch`."""
    if scheduler is None:
        return EpochScheduler()
    return scheduler if isinstance(scheduler, EpochScheduler) else StepEachEpoch(scheduler)
