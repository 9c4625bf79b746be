"""Reading weight files without unpickling anything: one reader for every network of feat_script.

Every file a user passes (``--weights``, ``--detector-weights``, ``--pca``, a converter's source) is
read with ``torch.load(weights_only=True)`` (tensors, plain containers and, where allowed, numeric
numpy arrays) or ``np.load(allow_pickle=False)``; a pickle of anything else is refused before any
of its code could run, with one line naming the file.
"""
from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import numpy as np
import torch

from engine.checkpoint import CheckpointError, load_checkpoint


class WeightsError(CheckpointError, ValueError):
    """A weights file that is not a state_dict of the network it is given for."""


def _numpy_safe_globals() -> list:
    """What a pickled numeric ``np.ndarray`` needs (torchvggish's PCA file holds numpy arrays);
    nothing here runs code: object arrays still go through the same restricted unpickler."""
    multiarray = getattr(np, "_core", np.core).multiarray
    dtypes = [type(np.dtype(t)) for t in ("f4", "f8", "f2", "i8", "i4", "i2", "u1", "i1", "?")]
    return [multiarray._reconstruct, np.ndarray, np.dtype, *dtypes]


def read_state_dict(path: str | Path, what: str, hint: str = "", *, numpy_arrays: bool = False) -> dict:
    """The ``{name: tensor}`` of a weights file; ``state_dict`` / ``model`` wrappers and a
    DataParallel ``module.`` prefix are removed. Missing file: FileNotFoundError; anything else
    that is not a state_dict of tensors: WeightsError (both name the file and give ``hint``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} weights not found: {path}. {hint}".strip())
    try:
        if numpy_arrays:
            with torch.serialization.safe_globals(_numpy_safe_globals()):
                payload = load_checkpoint(path)
        else:
            payload = load_checkpoint(path)
    except CheckpointError as err:
        cause = str(err.__cause__ or err).strip().splitlines()
        reason = cause[0][:120] if cause else type(err.__cause__).__name__
        raise WeightsError(f"{path}: not a {what} weights file ({reason}). {hint}".strip()) from err
    for wrapper in ("state_dict", "model"):
        if isinstance(payload.get(wrapper), dict):
            payload = payload[wrapper]
    allowed = (torch.Tensor, np.ndarray) if numpy_arrays else (torch.Tensor,)
    bad = [k for k, v in payload.items() if not isinstance(k, str) or not isinstance(v, allowed)]
    if bad:
        raise WeightsError(f"{path}: not a {what} state_dict ({len(bad)} entries are not tensors, e.g. "
                           f"{str(bad[0])[:60]!r}). {hint}".strip())
    return {k.removeprefix("module."): v for k, v in payload.items()}


def load_into(model: torch.nn.Module, path: str | Path, what: str, hint: str = "",
              may_miss: Collection[str] = ()) -> torch.nn.Module:
    """Load ``path`` into ``model`` strictly (only the keys in ``may_miss`` may be absent); a file of
    another network is a WeightsError that says which keys differ."""
    state = read_state_dict(path, what, hint)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # the same names with other shapes
        detail = " ".join(str(err).split())[-200:]
        raise WeightsError(f"{path} is not a {what} state_dict (... {detail}). {hint}".strip()) from err
    missing = [k for k in missing if k not in may_miss]
    if missing or unexpected:
        raise WeightsError(f"{path} is not a {what} state_dict: {len(missing)} keys missing (e.g. "
                           f"{missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}). {hint}".strip())
    return model
