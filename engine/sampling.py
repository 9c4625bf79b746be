"""Index orders for training and evaluation that depend only on (seed, epoch, rank).

A resumed run must see the rest of the interrupted epoch in the same order, so the order can
be rebuilt from scratch and entered at any batch.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    """Shuffled (or sequential) indices for one epoch, split over ranks, entered at ``start_batch``.

    Under DDP the order is padded by wrapping around so every rank runs the same number of
    steps, as DistributedSampler does.
    """

    def __init__(self, size: int, batch_size: int, *, shuffle: bool, seed: int,
                 rank: int = 0, world: int = 1) -> None:
        self.size, self.batch_size, self.shuffle = size, batch_size, shuffle
        self.seed, self.rank, self.world = seed, rank, world
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def epoch_order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        if self.world > 1:
            total = -(-self.size // self.world) * self.world
            order = (order * (total // max(self.size, 1) + 1))[:total]
        return order[self.rank::self.world]

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_order()[self.start_batch * self.batch_size:])

    def __len__(self) -> int:
        return max(len(self.epoch_order()) - self.start_batch * self.batch_size, 0)

    def batches_per_epoch(self) -> int:
        return -(-len(self.epoch_order()) // self.batch_size)


def eval_shard(size: int, rank: int, world: int) -> list[int]:
    """Evaluation indices of one rank: every sample exactly once over all ranks, no padding."""
    return list(range(rank, size, world))
