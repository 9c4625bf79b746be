"""Reading MASN weights: constructor arguments implied by a state_dict, and a checked strict load.

A checkpoint built for another vocabulary, answer set or frame count fails here with the file
name and the two sizes, instead of a bare size-mismatch trace from ``load_state_dict``.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from engine.checkpoint import CheckpointError


def model_args_from_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """MASN constructor arguments that the shapes in an (original or ours) state_dict determine."""
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
        "v_max_len": state_dict["pos_enc.pe"].shape[0],
    }


def load_masn_state(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
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
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{source}: does not fit this MASN model: {err}") from None
