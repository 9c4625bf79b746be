"""What the CUDA paths rely on, checked on the CPU: fp32 question LSTMs under autocast, masked
softmaxes that let a half-precision overflow reach the NaN guard, dead modules frozen (so DDP runs
without unused-parameter detection), and the GPU check script's dry run."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_avst_model import small_inputs
from test_masn_model import sentences, tiny, video

from avst.model import AVST, AVSTBaseline
from masn.losses import build_criterion
from masn.model.ban import BiAttention
from masn.model.gcn import VideoAdjLearner
from masn.model.masked_softmax import masked_softmax

ROOT = Path(__file__).resolve().parents[1]


def float_video(B, T, lens, scale=1.0):
    return [t.float() * scale if t.is_floating_point() else t for t in video(B, T, lens=lens)]


def record_lstm(lstm: torch.nn.LSTM) -> tuple[list[dict], torch.utils.hooks.RemovableHandle]:
    """What the LSTM sees from the inside: input/output dtypes and whether autocast is on."""
    seen: list[dict] = []

    def data(x):
        return x.data if isinstance(x, torch.nn.utils.rnn.PackedSequence) else x

    def hook(module, args, output):
        seen.append({"input": data(args[0]).dtype, "output": data(output[0]).dtype,
                     "hidden": output[1][0].dtype, "autocast": torch.is_autocast_enabled("cpu")})

    return seen, lstm.register_forward_hook(hook)


# ---------------------------------------------------------------- fp32 question LSTMs under autocast
def test_masn_question_lstm_runs_in_fp32_under_bf16_autocast():
    model = tiny(dtype=torch.float32, perturb=False).train()
    seen, handle = record_lstm(model.sentence_encoder.rnn)
    tok, qlen = sentences([5, 3])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _, _ = model("Count", *float_video(2, 4, [4, 2]), tok, qlen, torch.ones(2))
        loss = build_criterion("Count")(out, torch.tensor([2.0, 5.0]))
    handle.remove()
    assert seen == [{"input": torch.float32, "output": torch.float32, "hidden": torch.float32, "autocast": False}]
    assert out.dtype == torch.bfloat16  # the rest of the model still runs in bf16
    loss.backward()
    assert model.sentence_encoder.rnn.weight_hh_l0.grad.abs().sum() > 0


def test_avst_question_lstm_runs_in_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    model = AVST().train()
    seen, handle = record_lstm(model.question_encoder.lstm)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(*small_inputs(2, 3))
    handle.remove()
    assert seen == [{"input": torch.float32, "output": torch.float32, "hidden": torch.float32, "autocast": False}]


def test_fp32_lstm_keeps_float64_models_in_float64():
    model = tiny()  # float64: parity tests run the model in double precision
    seen, handle = record_lstm(model.sentence_encoder.rnn)
    tok, qlen = sentences([5, 3])
    with torch.no_grad():
        model("Count", *video(2, 4, lens=[4, 2]), tok, qlen, torch.ones(2))
    handle.remove()
    assert seen[0]["input"] == seen[0]["output"] == torch.float64


# ---------------------------------------------------------------- masked softmax
def original_masked_softmax(scores, mask, dim, scale=1.0):
    """The original's arithmetic (model/ban.py, model/gcn.py, MCAN's net_utils)."""
    att = F.softmax((scores - 1e10 * (1 - mask)) * scale, dim=dim) * mask
    return att.masked_fill(att.isnan(), 0.0)


@pytest.mark.parametrize("scale", [None, 100.0])
def test_masked_softmax_fp32_equals_the_original_exactly(scale):
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(4, 6, 7, generator=g) * 3
    mask = (torch.rand(4, 6, 7, generator=g) > 0.4).float()
    mask[0, 2] = 0  # a row without any unmasked entry
    mask[1] = 1
    got = masked_softmax(scores, mask, dim=-1, scale=scale)
    assert torch.equal(got, original_masked_softmax(scores, mask, -1, scale or 1.0))
    assert torch.equal(got[0, 2], torch.zeros(7))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_masked_softmax_in_half_precision(dtype):
    g = torch.Generator().manual_seed(1)
    scores = (torch.randn(3, 5, generator=g) * 3).to(dtype)
    mask = torch.tensor([[1, 1, 0, 1, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=dtype)
    got = masked_softmax(scores, mask, dim=-1, scale=100.0)
    assert got.dtype == dtype and torch.isfinite(got).all()
    assert torch.equal(got[1], torch.zeros(5, dtype=dtype)) and torch.equal(got[0, [2, 4]], torch.zeros(2, dtype=dtype))
    reference = original_masked_softmax(scores.double(), mask.double(), -1, 100.0)
    torch.testing.assert_close(got.double(), reference, atol=1e-2, rtol=0)
    scores[2, 3] = float("inf")  # an overflow in an unmasked entry must not become a zero row
    assert torch.isnan(masked_softmax(scores, mask, dim=-1)[2]).all()


def test_fp16_overflow_in_the_object_graph_reaches_the_output():
    """fp16 h h^T overflows to inf: the adjacency must carry NaN (the original made those rows 0),
    while the padded nodes' rows stay exactly 0."""
    torch.manual_seed(0)
    adj = VideoAdjLearner(8, 8).half()
    v = torch.rand(2, 4, 8).half()
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]]).half()
    small = adj(v * 0.1, mask)
    assert torch.isfinite(small).all() and torch.equal(small[1, 2:], torch.zeros(2, 4).half())
    overflow = adj(v * 1e3, mask)
    assert overflow[0, :3, :3].isnan().all() and overflow[1, :2, :2].isnan().all()
    att = BiAttention(8, 8, 8, glimpse=2).half().eval()
    q = torch.rand(2, 1, 3, 8).half()
    q_mask = torch.tensor([[[1, 1, 0]], [[1, 0, 0]]]).half()
    assert torch.isfinite(att(v, q, mask, q_mask)).all()
    assert not torch.isfinite(att(v * 1e4, q * 1e4, mask, q_mask)).all()


def test_bf16_overflow_gives_a_non_finite_loss_for_the_nan_guard():
    model = tiny(dtype=torch.float32, perturb=False).train()
    tok, qlen = sentences([5, 3])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _, _ = model("Count", *float_video(2, 4, [4, 2], scale=1e19), tok, qlen, torch.ones(2))
        loss = build_criterion("Count")(out, torch.tensor([2.0, 5.0]))
    assert not torch.isfinite(loss)


# ---------------------------------------------------------------- dead modules
def grad_none_after_backward(model: torch.nn.Module, loss_fn) -> set[str]:
    """Trainable-before-freezing parameters that a backward pass leaves without a gradient."""
    for p in model.parameters():
        p.requires_grad_(True)
    model.zero_grad(set_to_none=True)
    loss_fn(model).backward()
    return {n for n, p in model.named_parameters() if p.grad is None}


def frozen(model: torch.nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if not p.requires_grad}


@pytest.mark.parametrize("cls", [AVST, AVSTBaseline])
def test_avst_freezes_exactly_the_modules_its_forward_never_uses(cls):
    torch.manual_seed(0)
    model = cls().train()
    keys = list(model.state_dict())
    dead = frozen(model)
    total = sum(p.numel() for p in model.parameters())
    share = sum(p.numel() for n, p in model.named_parameters() if n in dead) / total
    inputs = small_inputs(2, 3)
    assert grad_none_after_backward(model, lambda m: sum(o.sum() for o in m(*inputs)[:3] if o is not None)) == dead
    assert share == pytest.approx(0.645 if cls is AVST else 0.695, abs=0.001)
    ignored = set(model._ddp_params_and_buffers_to_ignore)
    assert {n for n in ignored if n in dict(model.named_parameters())} == dead
    assert "visual_net.bn1.running_mean" in ignored  # dead BatchNorm buffers are not broadcast
    assert list(cls().state_dict()) == keys


@pytest.mark.parametrize("task", ["Count", "Action", "FrameQA"])
def test_masn_freezes_exactly_the_parameters_without_gradient(task):
    answers = 7 if task == "FrameQA" else None
    model = tiny(answers, dtype=torch.float32, perturb=False).train()
    dead = frozen(model)
    vid = float_video(2, 4, [4, 2])
    if task == "Action":
        tok, qlen = sentences([[3, 4, 5, 6, 7], [2, 3, 4, 5, 6]])
        tail = [torch.zeros(2, dtype=torch.long), torch.arange(2)]
    else:
        tok, qlen = sentences([5, 3])
        tail = [torch.zeros(2)] if task == "Count" else [torch.zeros(2, dtype=torch.long)] * 2
    # glove is frozen by the original itself (and gets a gradient once unfrozen); the rest gets none
    no_grad = grad_none_after_backward(model, lambda m: m(task, *vid, tok, qlen, *tail)[0].sum())
    assert no_grad | {"glove.weight"} == dead
    assert dead == {"glove.weight", "sentence_encoder.compress_hn_layers.weight",
                    "sentence_encoder.compress_hn_layers_bi.weight"} | {
        f"compress_{n}.weight_raw" for n in ("appr_local", "motion_local", "appr_global", "motion_global")}


# ---------------------------------------------------------------- the GPU check, dry run
@pytest.mark.slow
@pytest.mark.timeout(900)  # a hang guard: about 3 minutes alone, 7 on a busy 2-core machine
def test_gpu_check_dry_run_writes_every_section(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=840)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    sections = {"environment", "parity", "amp_steps", "resume", "train_throughput", "input_bench", "extraction"}
    assert sections <= set(summary["sections"])
    for name in sections:
        assert summary["sections"][name]["status"] == "ok", (name, summary["sections"][name])
    assert (tmp_path / "gpu_check.md").read_text().count("\n## ") >= len(sections)
    assert re.search(r"input pipeline: make --input (loader|reader) the default", done.stdout), done.stdout


# ---------------------------------------------------------------- host syncs in the tasks' steps
class NoHostSync:
    """Fails on the calls that wait for a device (item, float, tolist, numpy, cpu) or build a tensor
    on the host (torch.tensor), while the block runs; ``allow_cpu`` lets one named .cpu() through."""

    def __init__(self, monkeypatch, allow_cpu: bool = False):
        def refuse(name):
            def call(*args, **kwargs):
                raise AssertionError(f"host sync: {name} inside the training step")
            return call

        for name in ("item", "tolist", "numpy", "__float__", "__bool__") + (() if allow_cpu else ("cpu",)):
            monkeypatch.setattr(torch.Tensor, name, refuse(f"Tensor.{name}"))
        monkeypatch.setattr(torch, "tensor", refuse("torch.tensor"))


def test_avst_step_has_no_host_sync(monkeypatch):
    from avst.tasks import AVQATask

    torch.manual_seed(0)
    model = AVST().train()
    audio, posi, nega, question = small_inputs(2, 3)
    batch = {"audio": audio, "visual_posi": posi, "visual_nega": nega, "question": question,
             "label": torch.tensor([1, 2])}
    with monkeypatch.context() as patch:
        NoHostSync(patch)
        loss, stats = AVQATask().training_loss(model, batch)
    assert set(stats) == {"loss_qa", "loss_match"}
    assert all(v.dim() == 0 and not v.requires_grad for v in stats.values())
    assert torch.isclose(loss, stats["loss_qa"] + 0.5 * stats["loss_match"])


def test_masn_step_has_no_host_sync_but_the_question_lengths(monkeypatch):
    from masn.tasks import MASNTask

    model = tiny(dtype=torch.float32, perturb=False).train()
    tok, qlen = sentences([5, 3])
    batch = [*float_video(2, 4, [4, 2]), tok, qlen, torch.tensor([2.0, 5.0])]
    with monkeypatch.context() as patch:
        NoHostSync(patch, allow_cpu=True)
        loss, stats = MASNTask("Count").training_loss(model, batch)
    assert stats["acc"].dim() == 0 and 0 <= float(stats["acc"]) <= 100


# ---------------------------------------------------------------- the trainer's loaders
class EpochItems(torch.utils.data.Dataset):
    """Items tell the epoch the fetching process's copy is at, the index, and who fetched them."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.tensor([self.epoch, i, os.getpid()])


def test_loader_is_built_once_and_persistent_workers_follow_the_epoch(tmp_path):
    from argparse import Namespace

    from engine.run import Run
    from engine.sampling import EpochSampler
    from engine.trainer import Task, Trainer

    task = Task()
    model = torch.nn.Linear(1, 1)
    run = Run(Namespace(run_dir=str(tmp_path), quiet=True, seed=1, resume=False), "loader")
    trainer = Trainer(run, model, torch.optim.SGD(model.parameters(), lr=0.1), task, device=torch.device("cpu"),
                      epochs=3, batch_size=4, num_workers=2)
    dataset, loaders, workers = EpochItems(), set(), []
    for epoch in range(3):  # only the loader can tell the workers' copies the epoch
        sampler = EpochSampler(len(dataset), 4, shuffle=True, seed=1)
        sampler.set_epoch(epoch)
        loader = trainer._loader(dataset, sampler, 4, epoch)
        rows = torch.cat(list(loader))
        assert rows[:, 0].tolist() == [epoch] * 8
        assert rows[:, 1].tolist() == sampler.epoch_order()
        loaders.add(id(loader))
        workers.append(set(rows[:, 2].tolist()))
    assert len(loaders) == 1 and workers[0] == workers[2] and os.getpid() not in workers[0]
    eval_rows = torch.cat(list(trainer._loader(dataset, [5, 1], 4, None)))
    assert eval_rows[:, 1].tolist() == [5, 1] and len(trainer.loaders) == 1


def test_per_video_reader_opens_each_file_once_per_process(tmp_path, monkeypatch):
    import numpy as np

    from avst.data.features import NpyFeatures

    rng = np.random.default_rng(0)
    arrays = {v: rng.random((60, 128), dtype=np.float32) for v in ("a", "b")}
    for v, arr in arrays.items():
        np.save(tmp_path / f"{v}.npy", arr)
    reader = NpyFeatures(tmp_path, "audio")
    opened = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda path, *a, **k: opened.append(Path(path).name) or real_open(path, *a, **k))
    for _ in range(3):
        got = reader.read_pairs([("a", 0), ("b", 7), ("a", 59), ("a", 80)])
        expected = np.stack([arrays["a"][0], arrays["b"][7], arrays["a"][59], arrays["a"][59]])
        assert np.array_equal(got, expected)
    assert sorted(opened) == ["a.npy", "b.npy"]
