"""benchkit, the fixtures of the parity checks and benches: perturbation moves every weight (a parity
check on trivial weights would miss terms), padding is real, timing alternates, and importing an
original leaves sys.path as it was."""
from __future__ import annotations

import sys

import pytest
import torch

from benchkit.batches import avst_batch, masn_batch
from benchkit.originals import original_masn
from benchkit.timing import interleaved
from benchkit.weights import perturb
from engine.errors import UserError


def test_perturb_moves_constant_and_single_number_tensors_and_buffers_only_when_asked():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.BatchNorm1d(4))
    net[0].bias.data = torch.tensor([0.0, 0.0, 0.0, 5.0])
    scalar = torch.nn.Parameter(torch.tensor(2.0))
    net.register_parameter("g", scalar)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    perturb(net, torch.Generator().manual_seed(0))
    after = net.state_dict()
    for key in ("0.weight", "0.bias", "1.weight", "1.bias", "g"):  # LayerNorm: all ones / all zeros
        assert not torch.equal(after[key], before[key]), key
    assert torch.equal(after["2.running_mean"], before["2.running_mean"])
    perturb(net, torch.Generator().manual_seed(0), buffers=True)
    assert not torch.equal(net.state_dict()["2.running_mean"], before["2.running_mean"])
    assert torch.equal(net.state_dict()["2.num_batches_tracked"], before["2.num_batches_tracked"])


def test_perturb_scales_with_the_tensors_spread():
    big, small = torch.nn.Linear(200, 200), torch.nn.Linear(200, 200)
    with torch.no_grad():
        small.weight.mul_(1e-3)
    for net in (big, small):
        spread = net.weight.std().item()
        moved = net.weight.detach().clone()
        perturb(net, torch.Generator().manual_seed(1), relative=0.1)
        assert (net.weight.detach() - moved).std().item() == pytest.approx(0.1 * spread, rel=0.05)


@pytest.mark.parametrize("task", ["Count", "Action", "FrameQA"])
def test_masn_batch_pads_past_the_lengths(task):
    random = masn_batch(task, batch=3, frames=5, objects=2, feat=4, words=6, vocab=9, seed=1)
    assert random[5][0] == 5 and random[7].view(-1)[0] == 5  # the first video and question are full
    batch = masn_batch(task, batch=3, frames=5, objects=2, feat=4, words=6, vocab=9, seed=1, video_lengths=[5, 2, 1])
    feats, vid_len, tokens, q_len = batch[:5], batch[5], batch[6], batch[7]
    for b, n in enumerate(vid_len.tolist()):
        assert all(not x[b, n:].any() and x[b, :n].abs().sum(-1).gt(0).all() for x in feats)
    assert tokens.shape == ((3, 5, 6) if task == "Action" else (3, 6))
    assert torch.equal(tokens > 0, torch.arange(6) < q_len.unsqueeze(-1))


def test_avst_batch_shapes_and_padding():
    batch = avst_batch(batch=2, frames=3, hw=2, seed=0)
    assert batch["visual_nega"].shape == (2, 3, 512, 2, 2) and batch["audio"].min() >= 0
    assert not batch["question"][0, 8:].any() and batch["question"][1].all()


def test_interleaved_alternates_and_takes_medians():
    calls = []
    medians = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1)
    assert calls == ["a", "b"] * 4
    assert set(medians) == {"wall", "cpu"} and set(medians["wall"]) == {"a", "b"}


def test_original_import_restores_sys_path_and_names_a_wrong_folder(tmp_path):
    checkout = tmp_path / "MASN-pytorch"
    for rel, text in {"model/__init__.py": "", "model/modules/__init__.py": "", "model/modules/ban/__init__.py": "",
                      "model/modules/ban/ban.py": "class BCNet:\n    def forward(self, v, q):\n        return v\n",
                      "model/masn.py": "class MASN:\n    pass\n"}.items():
        (checkout / rel).parent.mkdir(parents=True, exist_ok=True)
        (checkout / rel).write_text(text)
    path = list(sys.path)
    try:
        assert original_masn(checkout).__module__ == "model.masn"
        assert sys.path == path
        ban = sys.modules["model.modules.ban.ban"]
        assert ban.BCNet().forward(torch.ones(2, 3).t(), None).is_contiguous()
    finally:
        for name in [n for n in sys.modules if n == "model" or n.startswith("model.")]:
            del sys.modules[name]
    with pytest.raises(UserError, match="no model/masn.py there"):
        original_masn(tmp_path)
