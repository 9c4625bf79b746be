"""Converting the authors' whole-model pickles without their code (masn/convert_checkpoint.py).

The pickles are made here from throwaway classes placed in a temporary ``model`` package with
the original's module paths; the classes are removed again before converting, as on a machine
without the original source.
"""
from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from engine.checkpoint import CheckpointError, save_checkpoint
from engine.errors import run_cli
from masn.checkpoint import build_from_checkpoint
from masn.convert_checkpoint import convert, main, read_original
from masn.model import MASN
from tests.test_feat_reliability import MALFORMED

pytestmark = pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")

FAKE_SOURCE = {
    "model/modules/linear_weightdrop.py": '''
        import torch
        from torch.nn import Parameter

        class weight_drop:
            def __init__(self, module, weights, dropout):
                for name in weights:
                    w = getattr(module, name)
                    del module._parameters[name]
                    module.register_parameter(name + "_raw", Parameter(w))
                self.original_module_forward = module.forward  # a bound method in the pickle
                self.weights, self.module, self.dropout = weights, module, dropout

            def __call__(self, *args, **kwargs):
                for name in self.weights:
                    raw = getattr(self.module, name + "_raw")
                    w = torch.nn.functional.dropout(raw, p=self.dropout, training=self.module.training)
                    setattr(self.module, name, Parameter(w))
                return self.original_module_forward(*args, **kwargs)

        class WeightDropLinear(torch.nn.Linear):
            def __init__(self, *args, weight_dropout=0.0, **kwargs):
                super().__init__(*args, **kwargs)
                self.forward = weight_drop(self, ["weight"], weight_dropout)
        ''',
    "model/modules/tree.py": '''
        from torch import nn

        class Node(nn.Module):
            """Holds whatever parameters / buffers / children it is given."""
        ''',
    "model/masn.py": '''
        import torch
        from torch import nn
        from model.modules.linear_weightdrop import WeightDropLinear
        from model.modules.tree import Node

        class MASN(nn.Module):
            def __init__(self, state=None):
                super().__init__()
                self.q_max_len = 8
                if state is None:  # a small tree with every kind of member the real one has
                    self.compress_appr_local = WeightDropLinear(4, 3, weight_dropout=0.3, bias=False)
                    self.edge = nn.utils.weight_norm(nn.Linear(3, 2))
                    self.rnn = nn.LSTM(2, 2, batch_first=True, bidirectional=True)
                    self.drop = nn.Dropout(0.1)
                    self.register_buffer("pe", torch.arange(6.0).view(3, 2))
                    self.register_buffer("scratch", torch.ones(2), persistent=False)
                    return
                for key, value in state.items():
                    *path, name = key.split(".")
                    module = self
                    for part in path:
                        if part not in module._modules:
                            cls = WeightDropLinear if module is self and part.startswith("compress_") else Node
                            module.add_module(part, cls(2048, 512, bias=False) if cls is not Node else Node())
                        module = module._modules[part]
                    if name == "weight_raw":
                        module.weight_raw.data = value.clone()
                    elif name == "pe":
                        module.register_buffer(name, value.clone())
                    else:
                        module.register_parameter(name, nn.Parameter(value.clone(), value.is_floating_point()))

            def forward(self, x):
                self.task = "Count"
                return self.compress_appr_local(x)
        ''',
}


@pytest.fixture
def fake_original(tmp_path, monkeypatch):
    """Import the throwaway ``model`` package; afterwards forget it (no original code at conversion)."""
    src = tmp_path / "src"
    for rel, text in FAKE_SOURCE.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(src))  # as the authors' pickles were written: `model` importable
    import model.masn  # noqa: F401  (the fake one)

    yield sys.modules["model.masn"]
    for name in [n for n in sys.modules if n == "model" or n.startswith("model.")]:
        del sys.modules[name]


def small_fake(fake) -> tuple[torch.nn.Module, dict]:
    torch.manual_seed(0)
    net = fake.MASN().eval()
    with torch.no_grad():
        net(torch.randn(2, 4))  # like the authors' files: saved after an eval pass
    state = net.state_dict()
    assert "compress_appr_local.weight" in state and "scratch" not in state
    expected = {k: v.clone() for k, v in state.items() if k != "compress_appr_local.weight"}
    return net, expected


@pytest.mark.parametrize("layout", ["zip", "legacy", "dataparallel"])
def test_small_tree_gives_the_original_state_dict(fake_original, tmp_path, layout):
    net, expected = small_fake(fake_original)
    path = tmp_path / "orig.pth"
    obj = torch.nn.DataParallel(net) if layout == "dataparallel" else net
    torch.save(obj, path, _use_new_zipfile_serialization=layout == "zip")
    sys.modules.pop("model.masn")
    sys.modules.pop("model.modules.linear_weightdrop")

    state, attrs = read_original(path)
    assert list(state) == list(expected)
    assert list(state)[:3] == ["pe", "compress_appr_local.weight_raw", "edge.bias"]
    assert {"edge.weight_g", "edge.weight_v", "rnn.weight_hh_l0_reverse"} <= state.keys()
    for key, value in expected.items():
        assert torch.equal(state[key], value), key
        assert type(state[key]) is torch.Tensor
    assert attrs["task"] == "Count" and attrs["q_max_len"] == 8


def test_full_model_converts_and_loads_strictly(fake_original, tmp_path):
    torch.manual_seed(1)
    ours = MASN(30, 1, np.random.RandomState(0).normal(size=(30, 300)), 2048, 2048, 512,
                answer_vocab_size=7, v_max_len=6)
    reference = ours.state_dict()
    net = fake_original.MASN(reference)
    net.task = "FrameQA"
    with torch.no_grad():  # the transient compress_*.weight parameters appear as in the real files
        for name in ("compress_appr_local", "compress_motion_local", "compress_appr_global", "compress_motion_global"):
            getattr(net, name).eval()
            getattr(net, name)(torch.zeros(1, 2048))
    assert len(net.state_dict()) == 180, [k for k in net.state_dict() if k not in reference]
    src, out = tmp_path / "FrameQA_59.73.pth", tmp_path / "out" / "masn_frameqa.pt"
    torch.save(net, src)
    del net
    for name in [n for n in sys.modules if n.startswith("model.")]:
        del sys.modules[name]

    assert main([str(src), str(out)]) == 0
    payload = torch.load(out, weights_only=True)
    assert payload["format"] == "avqa-repro/1" and payload["args"] == {}
    meta = payload["meta"]
    assert (meta["model"], meta["task"], meta["vocab_size"], meta["answer_vocab_size"], meta["v_max_length"]) == (
        "masn", "FrameQA", 30, 7, 6)
    assert "v_max_len" not in meta  # one name for the frame count, the one masn/main.py writes
    assert meta["q_max_length"] == 8  # the pickled model's q_max_len, under the key masn/main.py writes
    assert meta["source"] == str(src) and len(meta["source_sha256"]) == 64
    assert list(payload["model"]) == list(reference)
    for key, value in reference.items():
        assert torch.equal(payload["model"][key], value), key
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary files left
    model, record = build_from_checkpoint(out)  # what masn/main.py --test and answer.py build from the file
    assert record.to_dict() == meta and (record.q_max_length, record.v_max_length) == (8, 6)
    assert model.q_max_len == 8 and not model.training
    for key, value in reference.items():
        assert torch.equal(model.state_dict()[key], value), key


class _Evil:
    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_code_in_a_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = _Evil()
    evil.marker = marker
    path = tmp_path / "evil.pth"
    torch.save({"model": evil}, path)
    with pytest.raises(ValueError, match=r"evil\.pth: refusing to load global '(posix|os|nt)\.system'"):
        read_original(path)
    assert not marker.exists()
    assert run_cli(main, [str(path), str(tmp_path / "out.pt")]) == 2
    assert not (tmp_path / "out.pt").exists()


def test_other_objects_are_clear_errors(tmp_path):
    path = tmp_path / "linear.pth"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(ValueError, match=r"linear\.pth: expected a pickled model\.masn\.MASN, found "
                                         r"torch\.nn\.modules\.linear\.Linear"):
        read_original(path)
    path = tmp_path / "truncated.pth"
    path.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ValueError, match=r"truncated\.pth: a damaged or truncated zip archive, not a pickled MASN"):
        convert(path, tmp_path / "x.pt")
    with pytest.raises(ValueError, match=r"missing\.pth: no such file"):
        convert(Path(tmp_path / "missing.pth"), tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_pickles_are_one_clear_error(name, tmp_path):
    path = tmp_path / f"{name}.pth"
    path.write_bytes(MALFORMED[name])
    with pytest.raises(ValueError, match=rf"{name}\.pth: "):
        read_original(path)
    assert run_cli(main, [str(path), str(tmp_path / "out.pt")]) == 2
    assert not (tmp_path / "out.pt").exists()


# "What does the man do?" then the five candidates, by the original rule: lower case, "?" kept as
# the token "\?" (the cleaner's backslash quirk), one <EOS> per sentence, first appearance order.
ACTION_WORDS = ["what", "does", "the", "man", "do", r"\?", "<EOS>", "jump", "wave", "nod", "clap", "kick"]


def _action_csv(folder: Path, question: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    row = {"gif_name": "tumblr_x", "question": question, "a1": "jump", "a2": "wave", "a3": "nod", "a4": "clap",
           "a5": "kick", "answer": 0, "vid_id": "ACTION1", "key": 7}
    pd.DataFrame([row]).to_csv(folder / "Train_action_question.csv", sep="\t", index=False)
    return folder


def test_csv_dir_adds_the_original_vocabulary_so_answer_can_use_the_file(fake_original, tmp_path):
    from masn.answer import load_masn

    torch.manual_seed(1)
    n = len(ACTION_WORDS) + 2  # pad and UNK rows
    net = fake_original.MASN(MASN(n, 1, np.random.RandomState(0).normal(size=(n, 300)), 2048, 2048, 512,
                                  v_max_len=6).state_dict())
    net.task = "Action"
    src = tmp_path / "Action_84.43.pth"
    torch.save(net, src)
    del net
    for name in [n for n in sys.modules if n.startswith("model.")]:
        del sys.modules[name]

    other = _action_csv(tmp_path / "other", "What does the tall man do?")  # one word more: another data set
    assert run_cli(main, [str(src), str(tmp_path / "bad.pt"), "--csv_dir", str(other)]) == 2
    assert not (tmp_path / "bad.pt").exists()

    out = tmp_path / "masn_action.pt"
    assert main([str(src), str(out), "--csv_dir", str(_action_csv(tmp_path / "q", "What does the man do?"))]) == 0
    assert torch.load(out, weights_only=True)["meta"]["vocab_words"] == ACTION_WORDS
    loaded = load_masn(out, None, torch.device("cpu"))
    assert loaded.task == "Action" and loaded.vocab.words == ACTION_WORDS
    converted = torch.load(out, weights_only=True)["model"]  # answer.py's model is the converter's
    assert loaded.model.state_dict().keys() == converted.keys()
    assert all(torch.equal(loaded.model.state_dict()[k], v) for k, v in converted.items())
    ids, length = loaded.vocab.encode("What does the man do? nod", 20)
    assert ids[:length].tolist() == [2, 3, 4, 5, 6, 7, 11]


def test_answer_index_must_fit_the_classifier(tmp_path):
    from masn.convert_checkpoint import vocabulary_meta

    index = tmp_path / "answers.json"
    index.write_text('{"answers": ["red", "blue", "cat"]}')
    with pytest.raises(ValueError, match="3 answers, the checkpoint's classifier has 7"):
        vocabulary_meta("FrameQA", {"vocab_size": 30, "answer_vocab_size": 7}, None, index)
    assert vocabulary_meta("FrameQA", {"vocab_size": 30, "answer_vocab_size": 3}, None, index)["answers"] == [
        "red", "blue", "cat"]


def test_checkpoints_with_either_frame_count_key_load(tmp_path):
    """``v_max_len`` (older converted files) and ``v_max_length`` (masn/main.py) name the same field."""
    state = MASN(30, 1, np.zeros((30, 300)), 2048, 2048, 512, v_max_len=6).state_dict()
    for key in ("v_max_len", "v_max_length"):
        path = tmp_path / f"{key}.pt"
        save_checkpoint(path, {"model": state, "meta": {"model": "masn", "task": "Count", key: 6}})
        assert build_from_checkpoint(path)[1].v_max_length == 6
        save_checkpoint(path, {"model": state, "meta": {"model": "masn", "task": "Count", key: 5}})
        with pytest.raises(CheckpointError, match=r"meta says v_max_length=5 but the weights have 6"):
            build_from_checkpoint(path)
