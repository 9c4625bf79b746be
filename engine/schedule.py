"""Every learning-rate schedule, stepped by the Trainer at epoch boundaries (tasks never step them).

The Trainer calls ``epoch_start(e)`` before epoch ``e``'s first batch and ``epoch_end(e, metrics)``
after its evaluation (``metrics`` maps split -> metric -> value), then checkpoints ``state_dict()``.
A torch scheduler given to the Trainer (AVST's and grounding_gen's StepLR) is wrapped in
:class:`StepEachEpoch`; MASN's ``--change_lr`` schedules (the original's five, with its epoch semantics:
``main.py`` with ``warmup_scheduler.py``) are :class:`EpochSchedule`:

* ``none``: constant ``lr``.
* ``step``: MultiStepLR(``lr_list``, 0.1) stepped after each epoch: epoch e runs at lr * 0.1^#{m <= e}.
* ``cos``: Adam at lr/5, GradualWarmupScheduler(x5 over 5 epochs) around CosineAnnealingLR(max_epoch),
  stepped at each epoch start: lr/5 * (1 + 4e/5) for e <= 5, lr at e = 6 (torch 1.2's value), then
  lr * (1 + cos(pi (e - 5) / max_epoch)) / 2.
* ``acc`` / ``loss``: Adam at lr/5, but the warm-up's constructor already steps it to lr/5 * 1.8;
  it is then stepped after each epoch with ``last_epoch = max(e, 1)`` (so epochs 0-2 share a rate),
  then ReduceLROnPlateau(max/min, factor 0.1, patience 3) from the end of epoch 6 on. The original
  passed the *previous* epoch's validation value and crashed at epoch 0 (unbound variable); here
  the plateau sees the epoch's own validation accuracy (``acc``; for Count the negated MSE, as the
  original's val "acc") or validation loss (``loss``), as picked from the epoch's metrics by ``watch``.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch


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


CHANGE_LR_MODES = ("none", "acc", "loss", "cos", "step")
WARMUP_EPOCHS, MULTIPLIER = 5, 5.0


def initial_lr(mode: str, lr: float) -> float:
    """The learning rate the optimizer is created with."""
    return lr / MULTIPLIER if mode in ("acc", "loss", "cos") else lr


def cos_lr(lr: float, epoch: int, max_epoch: int) -> float:
    if epoch <= WARMUP_EPOCHS:
        return lr / MULTIPLIER * (1 + (MULTIPLIER - 1) * epoch / WARMUP_EPOCHS)
    if epoch == WARMUP_EPOCHS + 1:
        return lr
    return lr * (1 + math.cos(math.pi * (epoch - WARMUP_EPOCHS) / max_epoch)) / 2


def step_lr(lr: float, epoch: int, milestones: list[int]) -> float:
    return lr * 0.1 ** sum(1 for m in milestones if m <= epoch)


class EpochSchedule(EpochScheduler):
    """Sets the optimizer's rate at epoch boundaries; ``state_dict`` makes it resumable.

    ``watch(metrics)`` gives the value the ``acc`` / ``loss`` plateau watches from an epoch's metrics
    (split -> metric -> value); the other modes ignore the metrics.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, mode: str, lr: float, max_epoch: int,
                 lr_list: list[int], watch: Callable[[dict], float] | None = None):
        if mode not in CHANGE_LR_MODES:
            raise ValueError(f"unknown --change_lr {mode!r}: use one of {', '.join(CHANGE_LR_MODES)}")
        if mode in ("acc", "loss") and watch is None:
            raise ValueError(f"--change_lr {mode} needs the validation value to watch")
        self.optimizer, self.mode, self.lr, self.watch = optimizer, mode, lr, watch
        self.max_epoch, self.lr_list = max_epoch, list(lr_list)
        self.plateau = None
        if mode in ("acc", "loss"):
            self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="max" if mode == "acc" else "min", factor=0.1, patience=3)
            self._set(self._warmup(1))

    def _warmup(self, last_epoch: int) -> float:
        return self.lr / MULTIPLIER * (1 + (MULTIPLIER - 1) * last_epoch / WARMUP_EPOCHS)

    def _set(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def epoch_start(self, epoch: int) -> None:
        if self.mode == "cos":
            self._set(cos_lr(self.lr, epoch, self.max_epoch))
        elif self.mode == "step":
            self._set(step_lr(self.lr, epoch, self.lr_list))

    def epoch_end(self, epoch: int, metrics: dict) -> None:
        """After epoch ``epoch``'s evaluation (the plateau watches ``watch(metrics)``, see module doc)."""
        if self.plateau is None:
            return
        last = max(epoch, 1)
        if last <= WARMUP_EPOCHS:
            self._set(self._warmup(last))
        else:
            self.plateau.step(self.watch(metrics))

    def state_dict(self) -> dict:
        return {"plateau": self.plateau.state_dict() if self.plateau is not None else None}

    def load_state_dict(self, state: dict) -> None:
        if self.plateau is not None and state.get("plateau") is not None:
            self.plateau.load_state_dict(state["plateau"])
