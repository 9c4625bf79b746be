"""One training loop for every model: epochs, evaluation, selection, checkpoints, resume, AMP, DDP.

A project plugs in through a :class:`Task` (how to get a loss, predictions and metrics from a
batch); the Trainer owns everything around it. Behaviour worth knowing:

* Training order depends only on (seed, epoch, rank); checkpoints taken inside an epoch record
  the position and every RNG state, so ``--resume`` after a kill continues bit-identically (CPU).
* ``last.pt`` is the resume point; ``best.pt`` holds the model selected on ``select_split``.
  Both are written atomically; a non-finite loss stops the run before anything is overwritten.
* Evaluation shards the data over ranks, gathers every per-sample prediction, and computes the
  metrics once on the full set, so numbers do not depend on the number of processes.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from engine import dist
from engine.checkpoint import CheckpointError, load_checkpoint, model_state, save_checkpoint
from engine.run import Run
from engine.sampling import EpochSampler, eval_shard
from engine.seed import capture_rng, restore_rng, worker_init_fn


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class Task(Protocol):
    """What a project tells the Trainer about its model and data."""

    select_metric: str
    select_mode: str  # "max" or "min"

    def training_loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]: ...

    def predict(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]: ...

    def metrics(self, records: dict[str, torch.Tensor]) -> dict[str, float]: ...


def to_device(batch: Any, device: torch.device) -> Any:
    """Move tensors in nested tuples/lists/dicts to ``device``; leave everything else alone."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [to_device(v, device) for v in batch]
        return type(batch)(moved) if not hasattr(batch, "_fields") else type(batch)(*moved)
    return batch


def default_workers() -> int:
    """DataLoader workers per process: the CPUs this process may use, shared by the ranks of this node,
    less one for the training process itself (at most 16)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(0, min(16, cpus // ranks - 1))


class _EpochIndices(Sampler):
    """(epoch, index) pairs of the current ``sampler``; both are set before each pass."""

    def __init__(self) -> None:
        self.sampler: Iterable[int] = []
        self.epoch: int | None = None

    def __iter__(self) -> Iterator[tuple[int | None, int]]:
        return ((self.epoch, i) for i in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)  # type: ignore[arg-type]


class _EpochDataset(Dataset):
    """Calls the wrapped dataset's ``set_epoch`` in whichever process fetches, then reads the item."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset, self.epoch = dataset, None

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int | None, int]) -> Any:
        epoch, index = key
        if epoch is not None and epoch != self.epoch and hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
            self.epoch = epoch
        return self.dataset[index]


def _progress(iterable: Iterable, quiet: bool, **kwargs: Any) -> Iterable:
    disable = quiet or not sys.stderr.isatty() or dist.rank() != 0
    return tqdm(iterable, disable=disable, dynamic_ncols=True, leave=False, **kwargs)


class Trainer:
    """Train ``model`` with ``optimizer`` on a :class:`Task`; see the module docstring."""

    def __init__(self, run: Run, model: nn.Module, optimizer: torch.optim.Optimizer, task: Task, *,
                 device: torch.device, epochs: int, batch_size: int, eval_batch_size: int | None = None,
                 num_workers: int | None = 0, collate_fn: Callable | None = None, scheduler: Any = None,
                 amp: str = "off", save_every_steps: int = 0, seed: int = 1,
                 checkpoint_meta: dict | None = None, select_split: str = "val",
                 find_unused_parameters: bool = True) -> None:
        if amp not in ("off", "bf16", "fp16"):
            raise ValueError(f"unknown --amp {amp!r}: use off, bf16 or fp16")
        if task.select_mode not in ("max", "min"):
            raise ValueError(f"select_mode must be 'max' or 'min', not {task.select_mode!r}")
        self.run, self.task, self.optimizer, self.scheduler = run, task, optimizer, scheduler
        self.device, self.epochs, self.batch_size = device, epochs, batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers, self.collate_fn, self.seed = num_workers, collate_fn, seed
        self.save_every_steps, self.select_split = save_every_steps, select_split
        self.meta = checkpoint_meta or {}
        self.amp_dtype = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
        self.model = model.to(device)
        self.net: nn.Module = self.model
        if dist.world_size() > 1:
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=find_unused_parameters)
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.best_metric: float | None = None
        self.best_epoch: int | None = None
        self.history: list[dict] = []
        self._loaders: dict[tuple[int, int], tuple[Dataset, _EpochIndices, DataLoader]] = {}

    # -- checkpoints -----------------------------------------------------------------------------
    def _payload(self) -> dict:
        rngs = dist.all_gather_objects(capture_rng())
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "global_step": self.global_step,
            "best_metric": self.best_metric, "best_epoch": self.best_epoch,
            "history": self.history, "rng": rngs, "args": self.run.config, "meta": self.meta,
        }

    def save(self, name: str) -> Path:
        """Write ``<run>/checkpoints/<name>`` (rank 0) and wait for it on every rank."""
        payload = self._payload()
        path = self.run.ckpt_dir / name
        if dist.rank() == 0:
            save_checkpoint(path, payload)
        dist.barrier()
        return path

    def resume(self) -> bool:
        """Restore everything from ``last.pt``; False when the run has no checkpoint yet."""
        path = self.run.ckpt_dir / "last.pt"
        if not path.exists():
            self.run.log(f"--resume: no checkpoint in {self.run.ckpt_dir}, starting from scratch")
            return False
        payload = load_checkpoint(path, map_location=self.device)
        self.check_meta(payload, path)
        self.model.load_state_dict(model_state(payload))
        self.optimizer.load_state_dict(payload["optimizer"])
        if self.scheduler is not None and payload.get("scheduler") is not None:
            self.scheduler.load_state_dict(payload["scheduler"])
        self.scaler.load_state_dict(payload["scaler"])
        self.epoch, self.step_in_epoch = payload["epoch"], payload["step_in_epoch"]
        self.global_step = payload["global_step"]
        self.best_metric, self.best_epoch = payload["best_metric"], payload["best_epoch"]
        self.history = list(payload.get("history", []))
        rngs = payload["rng"]
        restore_rng(rngs[dist.rank()] if len(rngs) == dist.world_size() else rngs[0])
        self.run.log(f"resumed from {path}: epoch {self.epoch + 1}, step {self.step_in_epoch} of the epoch")
        return True

    def check_meta(self, payload: dict, path: Path) -> None:
        """Refuse a checkpoint built for another vocabulary / answer set than this run's."""
        theirs = payload.get("meta", {})
        for key, ours in self.meta.items():
            if key.endswith("sha256") and key in theirs and theirs[key] != ours:
                raise CheckpointError(f"{path}: {key} differs from this run's ({theirs[key][:12]} vs "
                                      f"{ours[:12]}): the checkpoint was trained with other data files")

    # -- loops -----------------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _loader(self, dataset: Dataset, sampler: Any, batch_size: int, epoch: int | None) -> DataLoader:
        """One DataLoader per (dataset, batch size), built on first use and kept: its workers persist
        across epochs and evaluations. Each index travels with its epoch, so a worker's copy of the
        dataset follows ``set_epoch`` (``epoch=None``: leave the dataset's epoch alone). Worker seeds
        come from (seed, the epoch the loader was built in); our datasets draw from per-item generators."""
        key = (id(dataset), batch_size)
        cached = self._loaders.get(key)
        if cached is None or cached[0] is not dataset:
            indices = _EpochIndices()
            workers = default_workers() if self.num_workers is None else self.num_workers
            extra = {"persistent_workers": True, "prefetch_factor": max(2, -(-4 // workers))} if workers else {}
            loader = DataLoader(_EpochDataset(dataset), batch_size=batch_size, sampler=indices, num_workers=workers,
                                collate_fn=self.collate_fn, worker_init_fn=worker_init_fn,
                                generator=torch.Generator().manual_seed(self.seed * 7919 + (epoch or 0)),
                                pin_memory=self.device.type == "cuda", **extra)
            cached = self._loaders[key] = (dataset, indices, loader)
        cached[1].sampler, cached[1].epoch = sampler, epoch
        return cached[2]

    def fit(self, train_set: Dataset, val_set: Dataset, test_set: Dataset | None = None) -> dict:
        """Train for the remaining epochs; returns the history and the selected epoch/metric."""
        if getattr(self.run.args, "resume", False):
            self.resume()
        elif (self.run.ckpt_dir / "last.pt").exists():
            raise FileExistsError(f"{self.run.ckpt_dir} already holds checkpoints: pass --resume to continue "
                                  "that run, or choose another --run_dir / --name")
        sampler = EpochSampler(len(train_set), self.batch_size, shuffle=True, seed=self.seed,
                               rank=dist.rank(), world=dist.world_size())
        while self.epoch < self.epochs:
            epoch = self.epoch
            if hasattr(self.task, "on_epoch_start"):
                self.task.on_epoch_start(epoch, self)
            train_stats = self.train_epoch(train_set, sampler)
            metrics = {"val": self.evaluate(val_set)[0]}
            if test_set is not None:
                metrics["test"] = self.evaluate(test_set)[0]
            if hasattr(self.task, "on_epoch_end"):
                self.task.on_epoch_end(epoch, metrics, self)
            self._finish_epoch(epoch, train_stats, metrics)
        return {"history": self.history, "best_epoch": self.best_epoch, "best_metric": self.best_metric}

    def train_epoch(self, dataset: Dataset, sampler: EpochSampler) -> dict[str, float]:
        epoch = self.epoch
        sampler.set_epoch(epoch, self.step_in_epoch)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        loader = self._loader(dataset, sampler, self.batch_size, epoch)
        self.net.train()
        sums: dict[str, float] = {}
        count = 0
        total = sampler.batches_per_epoch()
        bar = _progress(loader, self.run.quiet, total=total - self.step_in_epoch, desc=f"epoch {epoch + 1}")
        for batch in bar:
            loss, stats = self._step(to_device(batch, self.device))
            count += 1
            for key, value in {"loss": loss, **stats}.items():
                sums[key] = sums.get(key, 0.0) + float(value)
            if self.global_step % 50 == 0:
                self.run.scalars({"loss": loss, **stats}, self.global_step, prefix="train/")
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{loss:.4f}")
            if self.save_every_steps and self.global_step % self.save_every_steps == 0 \
                    and self.step_in_epoch < total:
                self.save("last.pt")
        return {k: dist.mean_over_ranks(v / max(count, 1), self.device) for k, v in sums.items()}

    def _step(self, batch: Any) -> tuple[float, dict[str, float]]:
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            loss, stats = self.task.training_loss(self.net, batch)
        if not dist.all_ranks_true(bool(torch.isfinite(loss.detach()).all()), self.device):
            last = self.run.ckpt_dir / "last.pt"
            kept = f"the last good checkpoint {last} is untouched" if last.exists() else "no checkpoint was written"
            raise TrainingDiverged(f"non-finite loss ({loss.item()}) at epoch {self.epoch + 1}, step "
                                   f"{self.step_in_epoch + 1} (global step {self.global_step + 1}); {kept}. "
                                   "Lower --lr, or try --amp off.")
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step_in_epoch += 1
        self.global_step += 1
        return loss.item(), stats

    @torch.no_grad()
    def evaluate(self, dataset: Dataset, batch_size: int | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
        """Metrics and per-sample records over the whole ``dataset`` (gathered over ranks)."""
        indices = eval_shard(len(dataset), dist.rank(), dist.world_size())
        loader = self._loader(dataset, indices, batch_size or self.eval_batch_size, None)
        was_training = self.model.training
        self.model.eval()
        parts: dict[str, list[torch.Tensor]] = {}
        for batch in _progress(loader, self.run.quiet, desc="eval"):
            with self._autocast():
                out = self.task.predict(self.model, to_device(batch, self.device))
            for key, value in out.items():
                parts.setdefault(key, []).append(value.detach().float().cpu() if value.is_floating_point()
                                                 else value.detach().cpu())
        self.model.train(was_training)
        local = {k: torch.cat(v) for k, v in parts.items()}
        records = _merge_shards(dist.all_gather_objects((indices, local)), len(dataset))
        return self.task.metrics(records), records

    def _finish_epoch(self, epoch: int, train_stats: dict, metrics: dict[str, dict]) -> None:
        for split, values in [("train", train_stats), *metrics.items()]:
            self.run.scalars(values, epoch + 1, prefix=f"{split}/")
        self.run.scalars({"lr": self.optimizer.param_groups[0]["lr"]}, epoch + 1, prefix="train/")
        selected = metrics[self.select_split][self.task.select_metric]
        better = self.best_metric is None or (
            selected >= self.best_metric if self.task.select_mode == "max" else selected <= self.best_metric)
        if math.isfinite(selected) and better:
            self.best_metric, self.best_epoch = selected, epoch + 1
        self.history.append({"epoch": epoch + 1, "train": train_stats, **metrics})
        parts = [f"train {_fmt(train_stats)}"] + [f"{s} {_fmt(m)}" for s, m in metrics.items()]
        self.run.log(f"epoch {epoch + 1}/{self.epochs} | " + " | ".join(parts)
                     + (" | best" if self.best_epoch == epoch + 1 else ""))
        self.epoch, self.step_in_epoch = epoch + 1, 0
        if self.best_epoch == epoch + 1:
            self.save("best.pt")
        self.save("last.pt")


def _fmt(values: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.4f}" for k, v in values.items() if isinstance(v, (int, float)))


def _merge_shards(shards: list[tuple[list[int], dict[str, torch.Tensor]]], size: int) -> dict[str, torch.Tensor]:
    """Put every rank's records back in dataset order."""
    keys = shards[0][1].keys()
    merged = {}
    for key in keys:
        first = shards[0][1][key]
        out = first.new_zeros((size, *first.shape[1:]))
        for indices, records in shards:
            if indices:
                out[torch.tensor(indices)] = records[key]
        merged[key] = out
    return merged
