"""Checkpoint files: written atomically, read without unpickling arbitrary objects."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from engine.errors import UserError
from engine.files import atomic_write

FORMAT = "avqa-repro/1"


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that is missing, unreadable, or does not fit the model it is loaded into."""


def save_checkpoint(path: str | Path, payload: dict) -> Path:
    """Save ``payload`` (tensors, dicts, lists, str, numbers, None) atomically."""
    payload = {"format": FORMAT, **payload}
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``; any failure names the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # e.g. torch's note on an unusual pickle protocol: the error line says it
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch's restricted unpickler fails on garbage with many types (IndexError, ...)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({first}). Whole-model pickles such as the MASN "
            "authors' files must be converted first (masn/convert_checkpoint.py)."
        ) from err
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} holds a {type(payload).__name__}, not a checkpoint dict")
    return payload


def model_state(payload: dict) -> dict[str, torch.Tensor]:
    """The model weights of one of our checkpoints, or of a bare state_dict file."""
    state = payload.get("model", payload)
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError("checkpoint holds no model state_dict (no 'model' entry of tensors)")
    return state
