"""DDP on the real AVST and MASN models with ``find_unused_parameters=False``: two gloo processes on
halves of each batch end where one process on the whole batches ends (the dead modules are frozen,
so every trainable parameter gets its gradient and DDP needs no unused-parameter search)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_avst_model import small_inputs
from test_masn_model import sentences, tiny, video

from avst.model import AVST
from avst.tasks import AVQATask
from masn.tasks import MASNTask

STEPS, BATCH, LR = 2, 4, 0.05


def build(name: str):
    """(model, task, batches): eval mode so that dropout draws play no part; gradients still flow.
    MASN runs in float64: its x100-scaled adjacency softmax turns the float32 rounding of a split
    batch (other GEMM blockings) into gradient differences of 1e-4, which says nothing about DDP."""
    if name == "avst":
        torch.manual_seed(0)
        batches = []
        for step in range(STEPS):
            audio, posi, nega, question = small_inputs(BATCH, 3, seed=step)
            batches.append({"audio": audio, "visual_posi": posi, "visual_nega": nega, "question": question,
                            "label": torch.arange(BATCH) % 5})
        return AVST().eval(), AVQATask(), batches
    model = tiny(perturb=False, seed=0)
    batches = []
    for step in range(STEPS):
        vid = video(BATCH, 4, lens=[4, 2, 4, 3], seed=step)
        # every half holds a longest question: MASN's fusion keys depend on the batch's padding length
        tok, qlen = sentences([6, 3, 6, 2], seed=step)
        batches.append([*vid, tok, qlen, torch.tensor([1.0, 4.0, 2.0, 7.0], dtype=torch.float64)])
    return model, MASNTask("Count"), batches


def shard(batch, rank: int, world: int):
    size = BATCH // world
    part = slice(rank * size, (rank + 1) * size)
    if isinstance(batch, dict):
        return {k: v[part] for k, v in batch.items()}
    return [t[part] for t in batch]


def train(net: torch.nn.Module, params, task, batches) -> None:
    optimizer = torch.optim.SGD(params, lr=LR)
    for batch in batches:
        optimizer.zero_grad(set_to_none=True)
        loss, _ = task.training_loss(net, batch)
        loss.backward()
        optimizer.step()


def worker(rank: int, world: int, name: str, tmp: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=world)
    try:
        model, task, batches = build(name)
        net = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=False)
        train(net, model.parameters(), task, [shard(b, rank, world) for b in batches])
        if rank == 0:
            torch.save(model.state_dict(), Path(tmp) / "ddp.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["avst", "masn"])
def test_two_process_ddp_equals_one_process_on_the_union(name, tmp_path):
    model, task, batches = build(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train(model, model.parameters(), task, batches)
    mp.spawn(worker, args=(2, name, str(tmp_path)), nprocs=2, join=True)
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    assert ddp.keys() == before.keys()
    moved = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert len(moved) > 20  # the comparison covers real updates
    worst = max((ddp[k] - v).abs().max().item() for k, v in model.state_dict().items())
    assert worst <= 1e-6
