"""DDP on the real AVST and MASN models with ``find_unused_parameters=False``: two gloo processes on
halves of each batch end where one process on the whole batches ends (the dead modules are frozen,
so every trainable parameter gets its gradient and DDP needs no unused-parameter search); and the
papers' entry points end to end under torchrun (data, Trainer, DDP, evaluation, checkpoints)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_avst_model import small_inputs
from test_masn_model import sentences, tiny, video

from avst.data.synthetic import make_dataset
from avst.model import AVST
from avst.tasks import AVQATask
from engine import dist as engine_dist
from engine.checkpoint import load_checkpoint, model_state
from masn.data.synthetic import make_demo
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


# ---------------------------------------------------------------- the papers' entry points under torchrun
PAPERS = Path(__file__).with_name("ddp_papers.py")


def paper_flags(name: str, data: Path, per_process_batch: int) -> list[str]:
    """Two optimizer steps of 4 (MASN: 8 training questions) or 16 (AVST: 32) samples each."""
    if name == "masn":
        return ["--task", "Count", "--df_dir", str(data / "question"), "--feat_dir", str(data), "--vc_dir",
                str(data / "vocab"), "--val_ratio", "0.2", "--v_max_length", "3", "--max_epoch", "1",
                "--hidden_size", "16", "--batch_size", str(per_process_batch), "--num_workers", "0"]
    labels = [x for s in ("train", "val") for x in (f"--label_{s}", str(data / "json" / f"avqa-{s}.json"))]
    return ["--mode", "train", "--no_grounding_init", "--audio_dir", str(data / "feats/vggish"),
            "--video_res14x14_dir", str(data / "feats/res18_14x14"), "--vocab_json",
            str(data / "json/avqa-train.json"), *labels, "--epochs", "1", "--batch-size", str(per_process_batch),
            "--num_workers", "0"]


def launch(name: str, data: Path, run_dir: Path, processes: int, global_batch: int) -> dict:
    """The last checkpoint of one run through torchrun (``processes`` gloo ranks, CPU)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
           str(PAPERS), name, *paper_flags(name, data, global_batch // processes), "--device", "cpu", "--quiet",
           "--run_dir", str(run_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[1],
                          env={**os.environ, "OMP_NUM_THREADS": "1", engine_dist.TIMEOUT_ENV: "120"})
    assert done.returncode == 0, done.stderr[-3000:]
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")


@pytest.mark.slow
@pytest.mark.parametrize("name, global_batch", [("masn", 4), ("avst", 16)])
def test_two_gloo_processes_train_the_paper_as_one_process_does(name, global_batch, tmp_path):
    """The same global batch (one process: all of it; two: half each, the sampler's interleaved shards) gives
    the same training loss and validation metrics within 1e-5 (dropout off: tests/ddp_papers.py). The
    weights are not compared: Adam turns float32 rounding of near-zero gradients (another summation order)
    into steps of up to the learning rate."""
    data = tmp_path / "data"
    if name == "masn":
        make_demo(data, seed=1, n_train=10, n_test=3, frames=2)
    else:
        make_dataset(data, seed=1, n_videos=3, n_frame_videos=0, rounds=1)
    one = launch(name, data, tmp_path / "one", 1, global_batch)
    two = launch(name, data, tmp_path / "two", 2, global_batch)
    assert one["global_step"] == two["global_step"] == 2
    (a,), (b,) = one["history"], two["history"]
    assert abs(a["train"]["loss"] - b["train"]["loss"]) <= 1e-5, (a["train"], b["train"])
    assert a["val"].keys() == b["val"].keys()
    for key in a["val"]:
        assert abs(a["val"][key] - b["val"][key]) <= 1e-5, (key, a["val"], b["val"])
    moved = [k for k, v in model_state(one).items() if not torch.equal(v, model_state(two)[k])]
    assert moved, "two processes should not give bit-identical weights: are both runs the same process?"
