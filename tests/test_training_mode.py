"""Training-mode behaviour against the originals' semantics (MASN's model/ modules; AVST's net_avst.py,
nets_qa_grd_baseline.py and main_avst.py).

* Dropout: which dropout sites fire in a training forward pass, with which p and how often, written
  out from the specs (dead modules such as BCNet's Dropout(0.5) in ``b_net`` or AVST's ``dropout``
  must not fire); none fire in eval mode, where outputs are deterministic.
* MASN's weight-drop compressors are never trained: unchanged by a real training epoch of main.py.
(AVST's match-loss pairing against the original ``batch_organize`` loop is
tests/test_avst_train.py::test_loss_is_qa_plus_half_the_interleaved_matching_loss.)
"""
from __future__ import annotations

import copy
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

P = 0.25  # MASN's --dropout: the original's "p" sites follow it, the 0.1 / 0.2 / 0.5 sites are fixed
MASN_COMPRESSORS = ("compress_appr_local", "compress_motion_local", "compress_appr_global", "compress_motion_global")


def masn_expected_sites() -> Counter:
    """(module, p) -> calls in one Count forward pass (model/masn.py and its modules; GCN: gcn_layers + 1
    = 3 layers)."""
    sites = Counter({("embedding_proj.0", P): 1, ("sentence_encoder.dropout", P): 2,  # outputs and hidden
                     ("appr_gcn.dropout", 0.1): 3, ("motion_gcn.dropout", 0.1): 3,
                     ("attflat.mlp.fc.dropout", 0.1): 1})
    for stream in ("appr", "motion"):
        ban = f"{stream}_vq_interact"
        sites[(f"{ban}.v_att.logits.v_net.main.0", 0.2)] = 1
        sites[(f"{ban}.v_att.logits.q_net.main.0", 0.2)] = 1
        sites[(f"{ban}.v_att.logits.dropout", 0.5)] = 1
        for g in range(4):  # b_net[g]: FCNet dropouts only (its Dropout(0.5) is unused); q_prj[g]
            sites[(f"{ban}.b_net.{g}.v_net.main.0", 0.2)] = 1
            sites[(f"{ban}.b_net.{g}.q_net.main.0", 0.2)] = 1
            sites[(f"{ban}.q_prj.{g}.main.0", 0.2)] = 1
    for name in ("appr_att_score", "motion_att_score", "all_att_score", "ques_guide_att", "ffn.mlp.fc", ""):
        sites[("motion_appr_fusion" + (f".{name}" if name else "") + ".dropout", 0.1)] = 1
    return sites


class DropoutLog:
    """Records nn.Dropout calls by module name and every functional dropout that is active."""

    def __init__(self, model: nn.Module, monkeypatch) -> None:
        self.modules: Counter = Counter()
        self.active: Counter = Counter()
        names = {id(m): n for n, m in model.named_modules()}
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.register_forward_hook(lambda mod, i, o: self.modules.update([(names[id(mod)], mod.p)]))
        original = F.dropout

        def dropout(x, p=0.5, training=True, inplace=False):
            if training and p > 0:
                self.active[p] += 1
            return original(x, p, training, inplace)

        monkeypatch.setattr(F, "dropout", dropout)

    def clear(self) -> None:
        self.modules.clear()
        self.active.clear()


def masn_model():
    from test_masn_model import FEAT, V

    from masn.model import MASN

    torch.manual_seed(0)
    return MASN(V, 1, np.random.RandomState(0).normal(size=(V, 300)), FEAT, FEAT, 32, dropout_p=P, q_max_len=8,
                v_max_len=4)


def masn_inputs():
    from test_masn_model import sentences, video

    vid = [t.float() if t.is_floating_point() else t for t in video(2, 4, lens=[4, 2])]
    return ("Count", *vid, *sentences([5, 3]), torch.ones(2))


def test_masn_dropout_sites_and_rates(monkeypatch):
    model = masn_model().train()
    log = DropoutLog(model, monkeypatch)
    first = model(*masn_inputs())[0]
    assert log.modules == masn_expected_sites()
    # every active functional dropout: the module sites plus DropConnect on the 4 compressors' weights
    expect = Counter()
    for (_, p), n in masn_expected_sites().items():
        expect[p] += n
    expect[P] += len(MASN_COMPRESSORS)
    assert log.active == expect
    assert not torch.equal(first, model(*masn_inputs())[0])  # fresh masks each pass

    model.eval()
    log.clear()
    out = model(*masn_inputs())[0]
    assert not log.active and torch.equal(out, model(*masn_inputs())[0])


def avst_call_order(model: nn.Module) -> list[str]:
    order = []
    for name in ("linear11", "dropout1", "linear12", "dropout2", "norm1", "linear21", "dropout3", "linear22",
                 "dropout4", "norm2", "dropout"):
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: order.append(name))
    return order


@pytest.mark.parametrize("kind", ["avst", "baseline"])
def test_avst_dropout_sites_and_rates(monkeypatch, kind):
    from test_avst_model import small_inputs

    from avst.model import AVST, AVSTBaseline

    torch.manual_seed(0)
    model = (AVST() if kind == "avst" else AVSTBaseline()).train()
    log = DropoutLog(model, monkeypatch)
    order = avst_call_order(model)
    model(*small_inputs(2, 3))
    # visual FFN: dropout1 and dropout2 (even though dropout2 is declared beside linear21), then audio
    assert order == ["linear11", "dropout1", "linear12", "dropout2", "norm1",
                     "linear21", "dropout3", "linear22", "dropout4", "norm2"]
    assert log.modules == Counter({(f"dropout{i}", 0.1): 1 for i in range(1, 5)})  # Dropout(0.5) unused
    assert model.attn_a.dropout == model.attn_v.dropout == 0.1
    assert log.active == Counter({0.1: 4 + 2})  # + the two attention maps' dropout inside MultiheadAttention

    model.eval()
    log.clear()
    out = model(*small_inputs(2, 3))[0]
    assert not log.active and torch.equal(out, model(*small_inputs(2, 3))[0])


@pytest.mark.slow
def test_masn_compressors_unchanged_by_a_training_epoch(tmp_path, monkeypatch):
    """A real epoch of masn/main.py (Adam steps on every parameter): the compressors and the unused
    compress_hn_layers* keep their initial values; the trained layers move."""
    import masn.main as masn_main
    from engine.checkpoint import load_checkpoint
    from masn.data.synthetic import make_demo

    initial = {}
    build = masn_main.build_model

    def capture(args, data):
        model = build(args, data)
        initial.update(copy.deepcopy(model.state_dict()))
        return model

    monkeypatch.setattr(masn_main, "build_model", capture)
    make_demo(tmp_path / "d", seed=1, n_train=10, n_test=3, frames=2)
    d = tmp_path / "d"
    masn_main.main(["--task", "Count", "--df_dir", str(d / "question"), "--feat_dir", str(d), "--vc_dir",
                    str(d / "vocab"), "--v_max_length", "3", "--batch_size", "4", "--max_epoch", "1",
                    "--num_workers", "0", "--quiet", "--device", "cpu", "--hidden_size", "16", "--lr", "1e-2",
                    "--run_dir", str(tmp_path / "run")])
    trained = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["model"]
    assert trained["fc.weight"].shape == initial["fc.weight"].shape
    frozen = [f"{c}.weight_raw" for c in MASN_COMPRESSORS] + [
        "sentence_encoder.compress_hn_layers.weight", "sentence_encoder.compress_hn_layers_bi.weight", "glove.weight"]
    for key in frozen:
        assert torch.equal(trained[key], initial[key]), key
    moved = [k for k in initial if k not in frozen and initial[k].is_floating_point()
             and not torch.equal(trained[k], initial[k])]
    assert {"fc.weight", "embedding_proj.1.weight", "appr_local_proj.weight"} <= set(moved)
