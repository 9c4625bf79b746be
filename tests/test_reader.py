"""The ``reader`` input pipeline (engine/reader.py): batches in order from parallel threads, read errors
raised in the consumer, and a ring buffer never written while a step (CPU) or a copy (CUDA, simulated by
a fence the test signals) still reads it."""
from __future__ import annotations

import argparse
import threading
import time
from argparse import Namespace

import pytest
import torch
from torch.utils.data import Dataset

from engine.batching import ReadBatch, batch_empty, collate
from engine.cli import add_engine_args
from engine.reader import ThreadedReader, batch_fetch
from engine.trainer import Loaders, Task, Trainer, evaluate

CPU = torch.device("cpu")


class Filled(Dataset):
    """Item i is a 16-element tensor of i (batched: one reused buffer per batch); ``delay(i)`` seconds a read."""

    def __init__(self, size: int, delay=lambda i: 0.0, batched: bool = True) -> None:
        self.size, self.delay = size, delay
        if not batched:
            self.__getitems__ = None

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": torch.full((16,), i, dtype=torch.int64)}

    def __getitems__(self, indices: list[int]) -> ReadBatch:
        time.sleep(sum(self.delay(i) for i in indices))
        out = batch_empty((len(indices), 16), torch.int64)
        for row, i in zip(out, indices):
            row.fill_(i)
        return ReadBatch({"x": out}, len(indices))


def reader(dataset: Dataset, order: list[int], batch_size: int = 1, **kwargs) -> ThreadedReader:
    return ThreadedReader(batch_fetch(dataset, collate), lambda: order, batch_size, device=CPU, **kwargs)


@pytest.mark.parametrize("batched", [True, False])
def test_batches_come_in_the_samplers_order_whatever_thread_reads_them(batched):
    order = [7, 3, 9, 0, 1, 8, 2, 6, 5, 4, 3]
    ds = Filled(10, delay=lambda i: 0.002 * ((i * 7) % 5), batched=batched)
    loader = reader(ds, order, batch_size=2, threads=3)
    assert len(loader) == 6
    for _ in range(2):  # the ring is reused over passes
        got = [batch["x"][:, 0].tolist() for batch in loader]
        assert got == [order[i:i + 2] for i in range(0, len(order), 2)]


def test_threads_read_in_parallel():
    loader = reader(Filled(4, delay=lambda i: 0.3), [0, 1, 2, 3], threads=4)
    start = time.perf_counter()
    assert [int(b["x"][0, 0]) for b in loader] == [0, 1, 2, 3]
    assert time.perf_counter() - start < 0.9  # serial reads would take 1.2 s


def test_a_read_error_is_raised_in_the_consumer_and_the_threads_stop():
    class Broken(Filled):
        def __getitems__(self, indices):
            if 3 in indices:
                raise OSError("disk gone")
            return super().__getitems__(indices)

    before = threading.active_count()
    loader = reader(Broken(6), [0, 1, 2, 3, 4, 5], threads=2)
    seen = []
    with pytest.raises(OSError, match="disk gone"):
        for batch in loader:
            seen.append(int(batch["x"][0, 0]))
    assert seen == [0, 1, 2]
    assert threading.active_count() == before


class FlagFence:
    """Stands in for a CUDA event: recorded when the batch's copy is issued, done when the test says so."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.done.set()

    def record(self) -> None:
        self.done.clear()

    def wait(self) -> None:
        assert self.done.wait(timeout=20), "the test never signalled the fence"


def test_a_slot_is_not_rewritten_while_the_step_that_reads_it_runs():
    """CPU: the batch is the ring's buffer itself; a slow step holds it while the one thread could read
    ahead into the only other slot and then wants this one: it must wait until the step asked for more."""
    loader = reader(Filled(8), list(range(8)), threads=1, ring=2)
    for k, batch in enumerate(loader):
        time.sleep(0.05)  # the step, reading its batch
        assert batch["x"].eq(k).all(), f"batch {k} was overwritten during its step"


def test_a_slot_is_not_rewritten_until_its_fence_says_the_copy_is_done():
    """CUDA, simulated: the host asks for the next batch while the copy of this one still reads its pinned
    buffer; the slot goes back to the threads, which must wait for its fence before writing it again."""
    fences: list[FlagFence] = []

    def fence() -> FlagFence:
        fences.append(FlagFence())
        return fences[-1]

    loader = reader(Filled(8), list(range(8)), threads=2, ring=2, fence=fence)
    batches = iter(loader)
    copying = next(batches)
    for k in range(1, 8):
        following = next(batches)  # the host moved on; the simulated copy of batch k - 1 still reads
        time.sleep(0.05)
        assert copying["x"].eq(k - 1).all(), f"batch {k - 1} was overwritten while its copy read it"
        owner = next(s for s in loader.slots if any(b.data_ptr() == copying["x"].data_ptr()
                                                      for b in s.buffers.values()))
        owner.fence.done.set()  # the copy is done
        copying = following
    for f in fences:
        f.done.set()
    assert list(batches) == []


class Echo(Task):
    def predict(self, model, batch):
        return {"x": batch["x"][:, 0]}  # a view of the input: evaluate must copy it out

    def metrics(self, records):
        return {}


def test_evaluate_records_do_not_alias_the_readers_buffers():
    _, records = evaluate(torch.nn.Identity(), Echo(), Filled(9), device=CPU, batch_size=2, num_workers=1,
                          input="reader")
    assert records["x"].tolist() == list(range(9))


def test_input_flag_reaches_the_trainers_pipeline(tmp_path):
    from engine.run import Run

    parser = add_engine_args(argparse.ArgumentParser())
    assert parser.parse_args([]).input == "loader"
    assert parser.parse_args(["--input", "reader"]).input == "reader"
    with pytest.raises(SystemExit):
        parser.parse_args(["--input", "threads"])
    model = torch.nn.Linear(1, 1)
    for choice in ("loader", "reader"):
        run = Run(Namespace(run_dir=str(tmp_path / choice), quiet=True, seed=1, resume=False, input=choice), "t")
        trainer = Trainer(run, model, torch.optim.SGD(model.parameters(), lr=0.1), Task(), device=CPU, epochs=1,
                          batch_size=2)
        assert trainer.loaders.input == choice
    with pytest.raises(ValueError, match="input must be one of"):
        Loaders(num_workers=0, collate_fn=None, seed=1, device=CPU, input="threads")
