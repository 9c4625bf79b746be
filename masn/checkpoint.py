"""MASN checkpoints: the meta record stored beside the weights, and the one way to build a model from them.

``MasnMeta`` is what a checkpoint says besides its tensors (vocabulary, answers, dimensions, task, feature
recipe); ``masn/main.py`` (training and ``--test``), ``masn/convert_checkpoint.py`` and ``masn/answer.py``
all write and read it here. A checkpoint built for another vocabulary, answer set or frame count fails with
the file name and the two sizes, instead of a bare size-mismatch trace from ``load_state_dict``.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.checkpoint import CheckpointError, load_checkpoint, model_state
from engine.modules import build_with_state

# Keys older checkpoints used for a field: the converter wrote ``v_max_len`` until the two writers shared this record.
OLD_KEYS = {"v_max_len": "v_max_length"}
RECIPE = "MASN"  # the feature recipe (feat_script): ResNet-152 + I3D, global and RoIAlign on 10 boxes


@dataclass(frozen=True)
class MasnMeta:
    """The model's hyper-parameters and what it was trained on: all a checkpoint needs to be evaluated."""

    vocab_size: int
    embedding_dim: int
    s_layers: int
    resnet_input_size: int
    i3d_input_size: int
    hidden_size: int
    gcn_layers: int
    answer_vocab_size: int | None  # None: one output (Count) or the five candidates' scores (Action, Trans)
    v_max_length: int
    q_max_length: int = 20
    task: str | None = None
    dataset: str | None = None
    vocab_words: list[str] | None = None
    answers: list[str] | None = None  # FrameQA / MS-QA: the classifier's answer order
    recipe: str = RECIPE
    source: str | None = None  # converted files: the authors' pickle and its sha256
    source_sha256: str | None = None

    def to_dict(self) -> dict:
        """The checkpoint's ``meta`` entry (plain types only, readable with ``weights_only=True``)."""
        from masn.answer_index import answers_sha256
        from masn.data.text import vocab_sha256

        out = {"model": "masn", **asdict(self)}
        if self.vocab_words:
            out["vocab_sha256"] = vocab_sha256(self.vocab_words)
        if self.answers:
            out["answers_sha256"] = answers_sha256(self.answers)
        return out

    @classmethod
    def from_state(cls, state_dict: Mapping[str, torch.Tensor], stored: Mapping, source: str) -> MasnMeta:
        """The record of a checkpoint: dimensions from the weights' shapes, the rest from its ``meta``
        (older key names accepted); a stored dimension the weights contradict is an error."""
        try:
            dims = model_args_from_state_dict(state_dict)
        except ValueError as err:
            raise CheckpointError(f"{source}: {err}") from None
        stored = {OLD_KEYS.get(k, k): v for k, v in stored.items()}
        for key, value in dims.items():
            if stored.get(key) is not None and stored[key] != value:
                raise CheckpointError(f"{source}: meta says {key}={stored[key]} but the weights have {value}")
        names = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in stored.items() if k in names}, **dims})


def model_args_from_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """MASN dimensions that the shapes in an (original or ours) state_dict determine, named as in ``MasnMeta``."""
    required = ("glove.weight", "fc.weight", "pos_enc.pe", "compress_appr_local.weight_raw",
                "compress_motion_local.weight_raw")
    missing = [k for k in required if k not in state_dict]
    if missing:
        raise ValueError(f"not a MASN state_dict: missing {', '.join(missing)}")
    rnn_layers = {int(m.group(1)) for k in state_dict
                  if (m := re.fullmatch(r"sentence_encoder\.rnn\.weight_ih_l(\d+)", k))}
    gcn_layers = {int(m.group(1)) for k in state_dict
                  if (m := re.fullmatch(r"appr_gcn\.layers\.(\d+)\.weight\.weight", k))}
    n_out = state_dict["fc.weight"].shape[0]
    return {
        "vocab_size": state_dict["glove.weight"].shape[0],
        "embedding_dim": state_dict["glove.weight"].shape[1],
        "s_layers": len(rnn_layers),
        "resnet_input_size": state_dict["compress_appr_local.weight_raw"].shape[1],
        "i3d_input_size": state_dict["compress_motion_local.weight_raw"].shape[1],
        "hidden_size": state_dict["fc.weight"].shape[1],
        "gcn_layers": len(gcn_layers) - 1,
        "answer_vocab_size": None if n_out == 1 else n_out,
        "v_max_length": state_dict["pos_enc.pe"].shape[0],
    }


def load_masn_state(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str,
                    assign: bool = False) -> None:
    """Strict load into ``model``; a mismatch (vocabulary, answer head, frame count, keys) is one
    ``CheckpointError`` naming ``source``."""
    checks = (("glove.weight", 0, "vocabulary size (rows of the word embedding)"),
              ("fc.weight", 0, "answer head size"),
              ("pos_enc.pe", 0, "v_max_len (frames per video)"))
    own = model.state_dict()
    for key, dim, what in checks:
        if key in state_dict and key in own and state_dict[key].shape[dim] != own[key].shape[dim]:
            raise CheckpointError(f"{source}: {what} is {state_dict[key].shape[dim]} in the checkpoint but "
                             f"{own[key].shape[dim]} in the model; build the model with the checkpoint's "
                             "vocabulary / answer index / v_max_len")
    try:
        model.load_state_dict(state_dict, strict=True, assign=assign)
    except RuntimeError as err:
        raise CheckpointError(f"{source}: does not fit this MASN model: {err}") from None


def new_masn(meta: MasnMeta, word_matrix: np.ndarray | None = None, dropout_p: float = 0.0,
             ablation: str = "none") -> nn.Module:
    """An untrained MASN of ``meta``'s shape; the embedding is ``word_matrix`` (GloVe) or zeros to load into."""
    from masn.model import MASN

    if word_matrix is None:
        word_matrix = np.zeros((meta.vocab_size, meta.embedding_dim), np.float32)
    return MASN(meta.vocab_size, meta.s_layers, word_matrix, meta.resnet_input_size, meta.i3d_input_size,
                meta.hidden_size, dropout_p=dropout_p, gcn_layers=meta.gcn_layers,
                answer_vocab_size=meta.answer_vocab_size, q_max_len=meta.q_max_length,
                v_max_len=meta.v_max_length, ablation=ablation)


def build_from_state(state_dict: Mapping[str, torch.Tensor], stored: Mapping, source: str
                     ) -> tuple[nn.Module, MasnMeta]:
    """(MASN in eval mode holding ``state_dict``, its record): the checkpoint loader and the converter."""
    meta = MasnMeta.from_state(state_dict, stored, source)
    model = build_with_state(lambda: new_masn(meta), state_dict,
                             lambda net, tensors, assign: load_masn_state(net, tensors, source, assign))
    return model.eval(), meta


def build_from_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, MasnMeta]:
    """(MASN on ``device`` in eval mode, its record) from one of our checkpoints: nothing else is read."""
    payload = load_checkpoint(path)
    model, meta = build_from_state(model_state(payload), payload.get("meta") or {}, str(path))
    return model.to(device), meta
