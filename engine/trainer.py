"""One training loop for every model: epochs, evaluation, selection, checkpoints, resume, AMP, DDP.

A project plugs in through a :class:`Task` (how to get a loss, predictions and metrics from a
batch); the Trainer owns everything around it. Behaviour worth knowing:

* Training order depends only on (seed, epoch, rank); checkpoints taken inside an epoch record
  the position, every RNG state and the epoch's running loss sums, so ``--resume`` after a kill
  continues bit-identically (CPU), logged history included.
* ``last.pt`` is the resume point; ``best.pt`` holds the model selected on ``select_split``
  (ties: the later epoch, see :mod:`engine.selection`). Both are written atomically. Checkpoints are
  read onto the CPU and moved to the model's device by ``load_state_dict``. Every rank resumes from
  its own view of ``last.pt`` before DDP wraps the model; a rank that cannot see it stops the run.
* A non-finite loss stops the run naming its epoch and step, and nothing is saved after it. The
  check runs on the device without a per-step host sync; it is read at every log point
  (``log_every`` steps), before every checkpoint and at the end of each epoch.
* ``batch_size`` is per process: under DDP one optimizer step sees ``world_size x batch_size``
  samples, with the learning rate unchanged (printed at the start).
* The per-epoch learning-rate schedule is the Trainer's (:mod:`engine.schedule`); tasks and
  :class:`Callback` objects get ``on_epoch_start`` / ``on_epoch_end`` hooks.
* Evaluation shards the data over ranks, gathers every per-sample prediction, and computes the
  metrics once on the full set, so numbers do not depend on the number of processes; :func:`evaluate`
  does it for a bare model, without a Trainer.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from engine import dist
from engine.batching import collate
from engine.checkpoint import CheckpointError, load_checkpoint, model_state, save_checkpoint
from engine.device import AMP_DTYPES, autocast
from engine.errors import UserError
from engine.reader import INPUTS, ThreadedReader, batch_fetch
from engine.run import Run
from engine.sampling import EpochSampler, eval_shard
from engine.schedule import as_epoch_scheduler
from engine.seed import capture_rng, restore_rng, worker_init_fn
from engine.selection import improves


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class Callback:
    """Hooks around each epoch; every method is a no-op unless overridden."""

    def on_epoch_start(self, epoch: int, trainer: Trainer) -> None:
        """Before epoch ``epoch`` (0-based) trains (after the schedule set its learning rate)."""

    def on_epoch_end(self, epoch: int, metrics: dict[str, dict[str, float]], trainer: Trainer) -> None:
        """After epoch ``epoch`` was evaluated (``metrics``: split -> metric -> value), before the
        schedule steps and the checkpoints are written."""


class Task(Callback):
    """What a project tells the Trainer about its model and data: subclass and implement the three
    methods; the hooks of :class:`Callback` are available too."""

    select_metric: str = "loss"
    select_mode: str = "min"  # "max" or "min"
    # DDP: True only for a model whose forward leaves trainable parameters unused (costs a graph walk
    # and an extra all-reduce per step); freeze such parameters instead where possible.
    find_unused_parameters: bool = False

    def training_loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        """The loss to back-propagate and named statistics (floats or 0-d tensors) to average per epoch."""
        raise NotImplementedError

    def predict(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        """Per-sample records (first dimension = batch) for :meth:`metrics`."""
        raise NotImplementedError

    def metrics(self, records: dict[str, torch.Tensor]) -> dict[str, float]:
        """Metrics of the whole split from the gathered per-sample records."""
        raise NotImplementedError


def require_samples(splits: dict[str, Dataset | None]) -> None:
    """UserError naming the first empty split: entry points call it before the run folder is written."""
    for split, data in splits.items():
        if data is not None and len(data) == 0:
            raise UserError(f"the {split} split is empty: nothing to train or evaluate; check the annotation "
                            "files and the split options (e.g. --val_ratio)")


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

    def _follow(self, epoch: int | None) -> None:
        if epoch is not None and epoch != self.epoch and hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
            self.epoch = epoch

    def __getitem__(self, key: tuple[int | None, int]) -> Any:
        self._follow(key[0])
        return self.dataset[key[1]]

    def __getitems__(self, keys: list[tuple[int | None, int]]) -> Any:
        """A batch (one epoch): the dataset's own batched fetch when it has one."""
        self._follow(keys[0][0])
        indices = [index for _, index in keys]
        fetch = getattr(self.dataset, "__getitems__", None)
        return [self.dataset[i] for i in indices] if fetch is None else fetch(indices)


def _progress(iterable: Iterable, quiet: bool, **kwargs: Any) -> Iterable:
    disable = quiet or not sys.stderr.isatty() or dist.rank() != 0
    return tqdm(iterable, disable=disable, dynamic_ncols=True, leave=False, **kwargs)


class Loaders:
    """One input pipeline per (dataset, batch size), built on first use and kept across epochs and
    evaluations. Each index travels with its epoch, so the dataset copy that reads it follows ``set_epoch``
    (``epoch=None``: leave the dataset's epoch alone). A dataset with ``__getitems__`` reads each batch in
    one pass; the default collate (:func:`engine.batching.collate`) passes such a batch through as it is.

    ``input="loader"`` (the default): torch's DataLoader with ``num_workers`` persistent worker processes,
    ``prefetch_factor`` batches ahead each, and pinned memory on CUDA; worker seeds come from (seed, the
    epoch the loader was built in). ``input="reader"``: :class:`engine.reader.ThreadedReader`, ``num_workers``
    threads (at least one) of this process reading into a ring of reused (on CUDA pinned) buffers, which
    hands each batch over on ``device``; on the CPU a batch is valid until the next one is asked for."""

    def __init__(self, *, num_workers: int | None, collate_fn: Callable | None, seed: int,
                 device: torch.device, input: str = "loader") -> None:
        if input not in INPUTS:
            raise ValueError(f"input must be one of {INPUTS}, not {input!r}")
        self.workers = default_workers() if num_workers is None else num_workers
        self.collate_fn, self.seed, self.device, self.input = collate_fn or collate, seed, device, input
        self.prefetch = max(2, -(-4 // self.workers)) if self.workers else None
        self._cache: dict[tuple[int, int], tuple[Dataset, _EpochIndices, Iterable]] = {}

    def __len__(self) -> int:
        return len(self._cache)

    def _build(self, dataset: Dataset, indices: _EpochIndices, batch_size: int, epoch: int | None) -> Iterable:
        wrapped = _EpochDataset(dataset)
        if self.input == "reader":
            return ThreadedReader(batch_fetch(wrapped, self.collate_fn), lambda: indices, batch_size,
                                  threads=max(1, self.workers), device=self.device)
        generator = torch.Generator().manual_seed(self.seed * 7919 + (epoch or 0))
        return DataLoader(wrapped, batch_size=batch_size, sampler=indices, num_workers=self.workers,
                          collate_fn=self.collate_fn, generator=generator, worker_init_fn=worker_init_fn,
                          persistent_workers=self.workers > 0, prefetch_factor=self.prefetch,
                          pin_memory=self.device.type == "cuda")

    def get(self, dataset: Dataset, sampler: Any, batch_size: int, epoch: int | None) -> Iterable:
        """The pipeline of ``dataset``, set to iterate ``sampler``'s indices for ``epoch``."""
        key = (id(dataset), batch_size)
        cached = self._cache.get(key)
        if cached is None or cached[0] is not dataset:
            indices = _EpochIndices()
            cached = self._cache[key] = (dataset, indices, self._build(dataset, indices, batch_size, epoch))
        cached[1].sampler, cached[1].epoch = sampler, epoch
        return cached[2]


@torch.no_grad()
def evaluate(model: nn.Module, task: Task, dataset: Dataset, *, device: torch.device, batch_size: int,
             num_workers: int | None = 0, collate_fn: Callable | None = None, amp: str = "off", seed: int = 1,
             quiet: bool = True, loaders: Loaders | None = None,
             input: str = "loader") -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Metrics and per-sample records of ``model`` over the whole ``dataset`` (gathered over ranks), read
    through ``loaders`` (else built here with ``input``: see :class:`Loaders`)."""
    indices = eval_shard(len(dataset), dist.rank(), dist.world_size())
    loaders = loaders or Loaders(num_workers=num_workers, collate_fn=collate_fn, seed=seed, device=device,
                                 input=input)
    loader = loaders.get(dataset, indices, batch_size, None)
    was_training = model.training
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {}
    for batch in _progress(loader, quiet, desc="eval"):
        with autocast(device, amp):
            out = task.predict(model, to_device(batch, device))
        for key, value in out.items():  # copies: a record must not alias a reused input buffer
            dtype = torch.float32 if value.is_floating_point() else value.dtype
            parts.setdefault(key, []).append(value.detach().to("cpu", dtype, copy=True))
    model.train(was_training)
    local = {k: torch.cat(v) for k, v in parts.items()}
    records = _merge_shards(dist.all_gather_objects((indices, local)), len(dataset))
    return task.metrics(records), records


class Trainer:
    """Train ``model`` with ``optimizer`` on a :class:`Task`; see the module docstring."""

    log_every = 50  # steps between train/ scalars, progress-bar updates and non-finite checks

    def __init__(self, run: Run, model: nn.Module, optimizer: torch.optim.Optimizer, task: Task, *,
                 device: torch.device, epochs: int, batch_size: int, eval_batch_size: int | None = None,
                 num_workers: int | None = 0, collate_fn: Callable | None = None, scheduler: Any = None,
                 amp: str = "off", save_every_steps: int = 0, seed: int = 1,
                 checkpoint_meta: dict | None = None, select_split: str = "val",
                 callbacks: Sequence[Callback] = (), find_unused_parameters: bool | None = None,
                 input: str | None = None, log_every: int | None = None) -> None:
        if amp not in AMP_DTYPES:
            raise ValueError(f"unknown --amp {amp!r}: use off, bf16 or fp16")
        if task.select_mode not in ("max", "min"):
            raise ValueError(f"select_mode must be 'max' or 'min', not {task.select_mode!r}")
        for name, value in (("batch size", batch_size), ("evaluation batch size", eval_batch_size or 1),
                            ("number of epochs", epochs), ("logging interval", 1 if log_every is None else log_every)):
            if value <= 0:
                raise UserError(f"{name} {value}: nothing would be trained or evaluated; give a positive value")
        self.run, self.task, self.optimizer = run, task, optimizer
        self.scheduler = as_epoch_scheduler(scheduler)
        self.hooks: list[Callback] = [task, *callbacks]
        self.device, self.epochs, self.batch_size = device, epochs, batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers, self.collate_fn, self.seed = num_workers, collate_fn, seed
        self.save_every_steps, self.select_split = save_every_steps, select_split
        self.meta = checkpoint_meta or {}
        self.amp = amp
        self.log_every = type(self).log_every if log_every is None else log_every
        self.find_unused_parameters = (task.find_unused_parameters if find_unused_parameters is None
                                       else find_unused_parameters)  # DDP; the task's choice unless overridden
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
        self.model = model.to(device)
        self.net: nn.Module = self.model  # wrapped in DDP by fit(), after resuming
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.best_metric: float | None = None
        self.best_epoch: int | None = None
        self.history: list[dict] = []
        self._sums: dict[str, torch.Tensor] = {}  # this epoch's running sums of loss and stats (on device)
        self._count = 0
        self._first_bad = torch.full((), -1, dtype=torch.long, device=device)  # global step of a non-finite loss
        self._device_step = torch.zeros((), dtype=torch.long, device=device)
        self.loaders = Loaders(num_workers=num_workers, collate_fn=collate_fn, seed=seed, device=device,
                               input=input or getattr(run.args, "input", "loader"))  # default: the run's --input

    # -- checkpoints -----------------------------------------------------------------------------
    def _payload(self) -> dict:
        rngs = dist.all_gather_objects(capture_rng())
        running = dist.all_gather_objects({"count": self._count,
                                           "sums": {k: v.cpu() for k, v in self._sums.items()}})
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "global_step": self.global_step,
            "best_metric": self.best_metric, "best_epoch": self.best_epoch,
            "history": self.history, "rng": rngs, "running": running, "args": self.run.config, "meta": self.meta,
        }

    def save(self, name: str) -> Path:
        """Write ``<run>/checkpoints/<name>`` (rank 0) and wait for it on every rank; a non-finite loss
        since the last check stops the run first, so no checkpoint ever holds diverged weights."""
        self._check_finite()
        payload = self._payload()
        path = self.run.ckpt_dir / name
        if dist.rank() == 0:
            save_checkpoint(path, payload)
        dist.barrier()
        return path

    def resume(self) -> bool:
        """Restore everything from ``last.pt``; a run with no checkpoint on any rank is refused.

        Every rank reads its own ``last.pt`` (so every node needs the run folder, e.g. on a shared
        filesystem); a run whose checkpoint only some ranks can see is refused.
        """
        path = self.run.ckpt_dir / "last.pt"
        seen = dist.all_gather_objects(path.is_file())
        if not any(seen):
            raise UserError(f"{path}: nothing to resume (no checkpoint there); drop --resume to start a new run")
        if not all(seen):
            blind = [r for r, s in enumerate(seen) if not s]
            raise CheckpointError(f"{path}: not visible on rank(s) {blind}; --resume needs the run folder on "
                                  "every node (a shared filesystem, or a copy of it at the same path)")
        payload = load_checkpoint(path, map_location="cpu")  # RNG states must stay on the CPU
        self.check_meta(payload, path)
        self.model.load_state_dict(model_state(payload))  # copies into the parameters' device
        self.optimizer.load_state_dict(payload["optimizer"])  # moves state to its parameter's device
        if payload.get("scheduler") is not None:
            self.scheduler.load_state_dict(payload["scheduler"])
        self.scaler.load_state_dict(payload["scaler"])
        self.epoch, self.step_in_epoch = payload["epoch"], payload["step_in_epoch"]
        self.global_step = payload["global_step"]
        self.best_metric, self.best_epoch = payload["best_metric"], payload["best_epoch"]
        self.history = list(payload.get("history", []))
        rngs, running = payload["rng"], payload.get("running")
        own = dist.rank() if len(rngs) == dist.world_size() else 0
        restore_rng(rngs[own])
        if running and self.step_in_epoch:
            mine = running[own]
            self._count = mine["count"]
            self._sums = {k: v.to(self.device) for k, v in mine["sums"].items()}
        self._device_step.fill_(self.global_step)
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
    def _loader(self, dataset: Dataset, sampler: Any, batch_size: int, epoch: int | None) -> DataLoader:
        return self.loaders.get(dataset, sampler, batch_size, epoch)

    def _wrap(self) -> None:
        """DDP around the (already resumed) model; DDP broadcasts rank 0's weights, which by now
        equal every rank's own."""
        if dist.world_size() > 1 and self.net is self.model:
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=self.find_unused_parameters)

    def fit(self, train_set: Dataset, val_set: Dataset, test_set: Dataset | None = None) -> dict:
        """Train for the remaining epochs; returns the history and the selected epoch/metric."""
        require_samples({"train": train_set, "validation": val_set, "test": test_set})
        if getattr(self.run.args, "resume", False):
            self.resume()
        self._wrap()
        world = dist.world_size()
        self.run.log(f"batch size {self.batch_size} per process x {world} process(es) = {self.batch_size * world} "
                     "samples per optimizer step (learning rate not scaled)")
        sampler = EpochSampler(len(train_set), self.batch_size, shuffle=True, seed=self.seed,
                               rank=dist.rank(), world=world)
        while self.epoch < self.epochs:
            epoch = self.epoch
            self.scheduler.epoch_start(epoch)
            for hook in self.hooks:
                hook.on_epoch_start(epoch, self)
            train_stats = self.train_epoch(train_set, sampler)
            metrics = {"val": self.evaluate(val_set)[0]}
            if test_set is not None:
                metrics["test"] = self.evaluate(test_set)[0]
            for hook in self.hooks:
                hook.on_epoch_end(epoch, metrics, self)
            self.scheduler.epoch_end(epoch, metrics)
            self._finish_epoch(epoch, train_stats, metrics)
        return {"history": self.history, "best_epoch": self.best_epoch, "best_metric": self.best_metric}

    def train_epoch(self, dataset: Dataset, sampler: EpochSampler) -> dict[str, float]:
        epoch = self.epoch
        sampler.set_epoch(epoch, self.step_in_epoch)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        loader = self._loader(dataset, sampler, self.batch_size, epoch)
        self.net.train()
        total = sampler.batches_per_epoch()
        bar = _progress(loader, self.run.quiet, total=total - self.step_in_epoch, desc=f"epoch {epoch + 1}")
        for batch in bar:
            loss, stats = self._step(to_device(batch, self.device))
            if self.global_step % self.log_every == 0:
                self._check_finite()
                values = {k: float(v) for k, v in {"loss": loss, **stats}.items()}
                self.run.scalars(values, self.global_step, prefix="train/")
                if hasattr(bar, "set_postfix"):
                    bar.set_postfix(loss=f"{values['loss']:.4f}")
            if self.save_every_steps and self.global_step % self.save_every_steps == 0 \
                    and self.step_in_epoch < total:
                self.save("last.pt")
        self._check_finite()
        means = {k: dist.mean_over_ranks((v / max(self._count, 1)).item(), self.device) for k, v in self._sums.items()}
        self._sums, self._count = {}, 0
        return means

    def _step(self, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.amp):
            loss, stats = self.task.training_loss(self.net, batch)
        self._device_step += 1
        finite = torch.isfinite(loss.detach()).all()
        self._first_bad = torch.where(finite | (self._first_bad >= 0), self._first_bad, self._device_step)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step_in_epoch += 1
        self.global_step += 1
        self._count += 1
        for key, value in {"loss": loss, **stats}.items():
            value = value.detach() if isinstance(value, torch.Tensor) else torch.tensor(value, dtype=torch.float64)
            self._sums[key] = self._sums.get(key, 0) + value.to(self.device, torch.float64)
        return loss.detach(), stats

    def _check_finite(self) -> None:
        """Stop (on every rank) if a loss since the start was non-finite, naming its epoch and step."""
        bad = int(dist.min_over_ranks(torch.where(self._first_bad < 0, torch.iinfo(torch.long).max,
                                                  self._first_bad)))
        if bad == torch.iinfo(torch.long).max:
            return
        step = self.step_in_epoch - (self.global_step - bad)
        last = self.run.ckpt_dir / "last.pt"
        kept = f"the last good checkpoint {last} is untouched" if last.exists() else "no checkpoint was written"
        raise TrainingDiverged(f"non-finite loss at epoch {self.epoch + 1}, step {step} (global step {bad}); "
                               f"{kept}. Lower --lr, or try --amp off.")

    def evaluate(self, dataset: Dataset, batch_size: int | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
        """:func:`evaluate` with this trainer's model, task and settings."""
        return evaluate(self.model, self.task, dataset, device=self.device,
                        batch_size=batch_size or self.eval_batch_size, num_workers=self.num_workers,
                        collate_fn=self.collate_fn, amp=self.amp, seed=self.seed, quiet=self.run.quiet,
                        loaders=self.loaders)

    def _finish_epoch(self, epoch: int, train_stats: dict, metrics: dict[str, dict]) -> None:
        for split, values in [("train", train_stats), *metrics.items()]:
            self.run.scalars(values, epoch + 1, prefix=f"{split}/")
        self.run.scalars({"lr": self.optimizer.param_groups[0]["lr"]}, epoch + 1, prefix="train/")
        selected = metrics[self.select_split][self.task.select_metric]
        if improves(selected, self.best_metric, self.task.select_mode):
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
