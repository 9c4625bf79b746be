"""Loading the authors' checkpoints (and ours) into AVST, the baseline and the grounding net.

The released files were saved from ``nn.DataParallel`` (keys prefixed ``module.``) and the
March-2022 code named the matching MLP ``fusion_fc1..4``; both spellings are normalised before a
strict load. Our engine's checkpoints (a dict with a ``model`` entry) load the same way and carry
``AvstMeta`` (model kind, vocabulary, feature recipe): ``build_from_checkpoint`` is the one way
``avst/main_avst.py --mode test`` and ``avst/answer.py`` turn a file into a model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from avst.data.vocab import Vocab, VocabError
from avst.variants import VARIANTS, variant
from engine.checkpoint import CheckpointError, load_checkpoint, model_state
from engine.modules import build_with_state


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
            state = load_checkpoint(path)
        except CheckpointError as err:
            raise StateDictError(str(err)) from None
        name = str(path)
    if isinstance(state, Mapping) and isinstance(state.get("model"), Mapping):
        state = state["model"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise StateDictError(f"{name}: not a state_dict (expected a mapping of names to tensors)")
    return normalize_state_keys(state), name


def _preview(keys: list[str], limit: int = 8) -> str:
    more = f" ... (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_avst_state(model: nn.Module, source: StateSource, name: str | None = None, assign: bool = False) -> None:
    """Load strictly into AVST, AVSTBaseline or GroundingNet, or raise one error naming the file
    (``name`` names a state_dict given in memory).

    A vocabulary or answer-list size that disagrees with the model is reported as such, before
    the generic key and shape comparison.
    """
    state, read_name = read_state(source)
    name = name or read_name
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
    model.load_state_dict(state, strict=True, assign=assign)


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


RECIPE = "AVST"  # the feature recipe (feat_script): VGGish AVST examples + ResNet-18 14x14, rows 0, 6, ..., 54


@dataclass(frozen=True)
class AvstMeta:
    """What one of our AVST / baseline checkpoints holds besides the weights."""

    vocab: Vocab
    model: str = "avst"  # a name in avst.variants.VARIANTS
    recipe: str = RECIPE

    def to_dict(self) -> dict:
        """The checkpoint's ``meta`` entry (plain types only, readable with ``weights_only=True``)."""
        return {"model": self.model, "recipe": self.recipe, "vocab": self.vocab.to_dict(),
                "vocab_sha256": self.vocab.sha256()}


def _check_same_vocab(carried: Vocab, built: Vocab, path: str | Path) -> None:
    """Refuse a --vocab-json whose vocabulary is not the one the checkpoint carries."""
    if (carried.words, carried.answers) != (built.words, built.answers):
        raise VocabError(f"--vocab-json {built.source}: builds {len(built.words)} words / {len(built.answers)} "
                         f"answers, not the vocabulary {path} carries ({len(carried.words)} / "
                         f"{len(carried.answers)}); drop --vocab-json: the checkpoint's own is used")


def new_model(meta: AvstMeta) -> nn.Module:
    """An untrained network of ``meta``'s variant sized for its vocabulary."""
    return variant(meta.model).build(len(meta.vocab.words), len(meta.vocab.answers))


def build_from_checkpoint(path: str | Path, device: str | torch.device = "cpu", *,
                          vocab_json: str | Path | None = None, answer_file: str | Path | None = None,
                          model: str | None = None, default_vocab_json: str | Path | None = None
                          ) -> tuple[nn.Module, AvstMeta]:
    """(model on ``device`` in eval mode, its record) from a checkpoint file.

    Our checkpoints carry their vocabulary (``meta.vocab``); a ``vocab_json`` the user gave beside one must
    build the same vocabulary (an explicit flag is never ignored). The authors' weights-only ``avst.pt`` /
    ``avst_update.pt`` do not carry one: theirs is the original rule applied to the train JSON
    (``vocab_json``, else ``default_vocab_json``; answers ordered by ``answer_file`` when given). ``model``
    (a name in ``avst.variants.VARIANTS``; None: any) is what the caller expects; a checkpoint recording
    another kind is refused.
    """
    payload = load_checkpoint(path)
    stored = payload.get("meta") if isinstance(payload.get("meta"), Mapping) else {}
    kind = stored.get("model") or model or "avst"
    if kind not in VARIANTS:
        raise CheckpointError(f"{path}: a {kind} checkpoint, not one of {', '.join(VARIANTS)}")
    if model and model != kind:
        raise CheckpointError(f"{path}: a {kind} checkpoint, not {model} (--model {kind} reads it)")
    if stored.get("vocab"):
        vocab = Vocab.from_dict(stored["vocab"])
        if vocab_json is not None:
            _check_same_vocab(vocab, Vocab.build(vocab_json, answer_file), path)
    else:
        source = vocab_json if vocab_json is not None else default_vocab_json
        if source is None or not Path(source).is_file():
            missing = f" ({source} not found)" if source is not None else ""
            raise VocabError(f"{path}: holds weights only, no vocabulary; pass --vocab_json with the train JSON "
                             f"it was trained with (the authors' avst.pt: data/json/avqa-train.json){missing}")
        vocab = Vocab.build(source, answer_file)
    state, _ = read_state(model_state(payload))
    words, answers = state.get("question_encoder.word2vec.weight"), state.get("fc_ans.weight")
    if words is not None and answers is not None:  # otherwise the strict load names what is missing
        vocab.check_sizes(words.shape[0], answers.shape[0], str(path))
    meta = AvstMeta(vocab, kind)
    net = build_with_state(lambda: new_model(meta), state,
                           lambda model, tensors, assign: load_avst_state(model, tensors, str(path), assign))
    return net.to(device).eval(), meta
