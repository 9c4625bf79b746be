"""Checkpoint files: written atomically, read without unpickling arbitrary objects."""
from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from engine.errors import UserError

FORMAT = "avqa-repro/1"


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that is missing, unreadable, or does not fit the model it is loaded into."""


def atomic_write(path: str | Path, write: Any) -> Path:
    """Call ``write(tmp_path)`` then rename over ``path``: a crash leaves the old file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
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
