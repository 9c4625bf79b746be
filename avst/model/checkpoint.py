"""Loading the authors' checkpoints (and ours) into AVST, the baseline and the grounding net.

The released files were saved from ``nn.DataParallel`` (keys prefixed ``module.``) and the
March-2022 code named the matching MLP ``fusion_fc1..4``; both spellings are normalised before a
strict load. Our engine's checkpoints (a dict with a ``model`` entry) load the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from engine.checkpoint import CheckpointError


class StateDictError(CheckpointError, ValueError):
    """A checkpoint that cannot be read, or does not fit the AVST / baseline / grounding model."""


StateSource = str | Path | Mapping[str, torch.Tensor]

_OLD_MATCH_NAME = re.compile(r"^fusion_fc([1-4])\.")
# The 14 tensors stage 2 takes from stage 1 (main_avst.py), and their "_pure" copies.
GROUNDING_KEYS = tuple(
    f"{module}.{part}"
    for module in ("fc_a1", "fc_a2", "fc_gl", "fc1", "fc2", "fc3", "fc4")
    for part in ("weight", "bias")
)
PURE_COPIES = {
    "fc_a1_pure.weight": "fc_a1.weight",
    "fc_a1_pure.bias": "fc_a1.bias",
    "fc_a2_pure.weight": "fc_a2.weight",
    "fc_a2_pure.bias": "fc_a2.bias",
}
# (state_dict key, what its first dimension counts) checked first, for a message a user can act on.
_SIZED_KEYS = (
    ("question_encoder.word2vec.weight", "question words (vocabulary incl. <pad>)"),
    ("fc_ans.weight", "answers"),
)


def normalize_state_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip ``module.`` and rename ``fusion_fcN.`` to ``fcN.``; order is kept."""
    out = {}
    for key, value in state.items():
        key = _OLD_MATCH_NAME.sub(r"fc\1.", key.removeprefix("module."))
        out[key] = value
    return out


def read_state(source: StateSource) -> tuple[dict[str, torch.Tensor], str]:
    """Return (normalised state_dict, a name for messages) from a path, a state_dict or an engine payload."""
    if isinstance(source, Mapping):
        state, name = source, "<state_dict>"
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise StateDictError(f"{path}: cannot read as a PyTorch checkpoint ({err})") from None
        name = str(path)
    if isinstance(state, Mapping) and isinstance(state.get("model"), Mapping):
        state = state["model"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise StateDictError(f"{name}: not a state_dict (expected a mapping of names to tensors)")
    return normalize_state_keys(state), name


def _preview(keys: list[str], limit: int = 8) -> str:
    more = f" ... (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_avst_state(model: nn.Module, source: StateSource) -> None:
    """Load strictly into AVST, AVSTBaseline or GroundingNet, or raise one error naming the file.

    A vocabulary or answer-list size that disagrees with the model is reported as such, before
    the generic key and shape comparison.
    """
    state, name = read_state(source)
    expected = model.state_dict()
    for key, what in _SIZED_KEYS:
        if key in state and key in expected and state[key].shape[0] != expected[key].shape[0]:
            raise StateDictError(
                f"{name}: {key} has {state[key].shape[0]} {what} but the model has {expected[key].shape[0]}; "
                "build the model with the vocabulary the checkpoint was trained with"
            )
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {list(state[k].shape)} vs model {list(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = [
            f"{label}: {_preview(keys)}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes))
            if keys
        ]
        raise StateDictError(f"{name} does not fit {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


@torch.no_grad()
def init_from_grounding(model: nn.Module, source: StateSource) -> list[str]:
    """Stage-2 initialisation (original ``net_grd_avst/main_avst.py``, its ``pretrained_file`` block): copy the 14
    stage-1 head tensors into ``model``.

    ``fc_a1``/``fc_a2`` also go to ``fc_a1_pure``/``fc_a2_pure`` when the model has them, as the
    original does. Unlike the original (which silently skips keys it does not find), every tensor
    must be present with the right shape. Returns the names written.
    """
    state, name = read_state(source)
    own = model.state_dict()
    targets = {k: k for k in GROUNDING_KEYS}
    targets.update({pure: src for pure, src in PURE_COPIES.items() if pure in own})
    absent = [k for k in GROUNDING_KEYS if k not in state]
    if absent:
        raise StateDictError(f"{name} is not a grounding checkpoint: missing {_preview(absent)}")
    for dst, src in targets.items():
        if state[src].shape != own[dst].shape:
            raise StateDictError(
                f"{name}: {src} has shape {list(state[src].shape)}, {dst} needs {list(own[dst].shape)}"
            )
    for dst, src in targets.items():
        own[dst].copy_(state[src])
    return list(targets)
