"""Every network's weights in one table, and reading weight files without unpickling anything.

``WEIGHTS`` names each file an extractor (or ``answer.py``) may load: the file names looked up in
torchvision's cache, where to get it and what it is; ``resolve`` turns a user's path (or none, or
``--random-init``) into the file to load or one clear error naming the file and its source.

Every file a user passes (``--weights``, ``--detector-weights``, ``--pca``, a converter's source) is
read with ``torch.load(weights_only=True)`` (tensors, plain containers and, where allowed, numeric
numpy arrays) or ``np.load(allow_pickle=False)``; a pickle of anything else is refused before any
of its code could run, with one line naming the file.
"""
from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.checkpoint import CheckpointError, load_checkpoint
from engine.errors import UserError
from engine.modules import build_with_state

TORCHVISION = "https://download.pytorch.org/models/"


@dataclass(frozen=True)
class Weights:
    """One network's weights: ``files`` are the names looked up in torchvision's cache (the first is
    the one to get), ``source`` where to get it (and how to convert it, where needed)."""

    what: str
    files: tuple[str, ...]
    source: str


WEIGHTS: dict[str, Weights] = {
    "resnet18": Weights("ImageNet ResNet-18", ("resnet18-5c106cde.pth", "resnet18-f37072fd.pth"),
                        f"{TORCHVISION}resnet18-5c106cde.pth (torchvision ImageNet ResNet-18)"),
    "resnet152": Weights("ImageNet ResNet-152", ("resnet152-b121ed2d.pth", "resnet152-394f9c45.pth"),
                         f"{TORCHVISION}resnet152-b121ed2d.pth (torchvision ImageNet ResNet-152)"),
    "r2plus1d_18": Weights("Kinetics R(2+1)D-18", ("r2plus1d_18-91a641e6.pth",),
                           f"{TORCHVISION}r2plus1d_18-91a641e6.pth (torchvision Kinetics-400 R(2+1)D-18)"),
    "vggish": Weights("VGGish", ("vggish.pt",),
                      "Get vggish_model.ckpt from tensorflow/models (research/audioset/vggish, "
                      "https://storage.googleapis.com/audioset/vggish_model.ckpt) or torchvggish's "
                      "vggish-10086976.pth and convert it: python -m feat_script.vggish.convert SRC --out "
                      "checkpoints/vggish.pt"),
    "i3d_r50": Weights("I3D ResNet-50", ("i3d_r50_kinetics.pth",),
                       "Get i3d_baseline_32x2_IN_pretrain_400k.pkl from facebookresearch/video-nonlocal-net and "
                       "convert it with Tushar-N/pytorch-resnet3d (python -m utils.convert_weights ... "
                       "i3d_r50_kinetics.pth), then pass the .pth path"),
    "i3d_r50_nl": Weights("non-local I3D ResNet-50", ("i3d_r50_nl_kinetics.pth",),
                          "Get the non-local I3D ResNet-50 Kinetics weights from facebookresearch/video-nonlocal-net "
                          "and convert them with Tushar-N/pytorch-resnet3d (python -m utils.convert_weights ... "
                          "i3d_r50_nl_kinetics.pth), then pass the .pth path"),
    "fasterrcnn": Weights("COCO Faster R-CNN", ("fasterrcnn_resnet50_fpn_coco-258fb6c6.pth",),
                          "Get torchvision's COCO Faster R-CNN weights fasterrcnn_resnet50_fpn_coco-258fb6c6.pth "
                          f"({TORCHVISION}fasterrcnn_resnet50_fpn_coco-258fb6c6.pth) and pass its path"),
    "clip_vit_l14_336": Weights("OpenAI CLIP ViT-L/14@336px", ("ViT-L-14-336px.pt",),
                                "https://openaipublic.azureedge.net/clip/models/3035c92b350959924f9f00213499208652fc7e"
                                "a050643e8b385c2dac08641f02/ViT-L-14-336px.pt (OpenAI's TorchScript file, read "
                                "without running it; an open_clip state_dict of ViT-L-14-336 works too)"),
    "vit_large_patch16_384": Weights("timm ViT-L/16 384px (augreg_in21k_ft_in1k)",
                                     ("vit_large_patch16_384.augreg_in21k_ft_in1k.safetensors",),
                                     "model.safetensors of https://huggingface.co/timm/vit_large_patch16_384."
                                     "augreg_in21k_ft_in1k (saved under this name, or pass its path)"),
}


class WeightsNotFound(UserError, ValueError):
    """No weights file for a network that needs one (or both a file and ``--random-init``)."""


def resolve(name: str, path: str | Path | None = None, random_init: bool = False,
            flag: str = "--weights") -> Path | None:
    """The file to load for ``WEIGHTS[name]``: ``path``, else torchvision's cache, else a one-line
    WeightsNotFound naming the file and its source (``flag`` is how the user gives it). ``random_init``
    gives None: random weights, for tests and the demo only. Nothing is downloaded."""
    entry = WEIGHTS[name]
    if random_init:
        if path is not None:
            raise WeightsNotFound(f"{flag} {path} and --random-init: give one, not both")
        return None
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise WeightsNotFound(f"{flag} {path}: no such file ({entry.what}: {entry.files[0]} from "
                                  f"{entry.source})")
        return path
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    for file in entry.files:
        if (cache / file).is_file():
            return cache / file
    raise WeightsNotFound(
        f"{entry.what} weights needed: pass {flag} PATH to {entry.files[0]} (from {entry.source}) or place it "
        f"in {cache}/. Nothing is downloaded. --random-init runs with random weights (tests and demo only)."
    )


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
    except CheckpointError as err:  # what the file is comes first; the hint after it may be cut
        raise WeightsError(f"{err} ({what} weights expected). {hint}".strip()) from err
    for wrapper in ("state_dict", "model"):
        if isinstance(payload.get(wrapper), dict):
            payload = payload[wrapper]
    allowed = (torch.Tensor, np.ndarray) if numpy_arrays else (torch.Tensor,)
    bad = [k for k, v in payload.items() if not isinstance(k, str) or not isinstance(v, allowed)]
    if bad:
        raise WeightsError(f"{path}: not a {what} state_dict ({len(bad)} entries are not tensors, e.g. "
                           f"{str(bad[0])[:60]!r}). {hint}".strip())
    return {k.removeprefix("module."): v for k, v in payload.items()}


def build_loaded(factory: Callable[[], torch.nn.Module], path: str | Path | None, what: str, hint: str = "",
                 may_miss: Collection[str] = ()) -> torch.nn.Module:
    """``factory()`` holding the weights of ``path`` strictly (only ``may_miss`` keys may be absent), built
    without the initialisation the weights replace (``engine.modules.build_with_state``); None: as
    built, i.e. randomly initialised."""
    if path is None:
        return factory()
    state = read_state_dict(path, what, hint)
    return build_with_state(factory, state,
                            lambda model, tensors, assign: load_state(model, tensors, path, what, hint, may_miss,
                                                                      assign))


def load_state(model: torch.nn.Module, state: dict, path: str | Path, what: str, hint: str = "",
               may_miss: Collection[str] = (), assign: bool = False) -> torch.nn.Module:
    """Load ``state`` (read from ``path``) into ``model`` strictly (only the keys in ``may_miss`` may be
    absent); a file of another network is a WeightsError that says which keys differ. ``assign``:
    ``load_state_dict``'s (see ``build_loaded``)."""
    try:
        missing, unexpected = model.load_state_dict(state, strict=False, assign=assign)
    except RuntimeError as err:  # the same names with other shapes
        detail = " ".join(str(err).split())[-200:]
        raise WeightsError(f"{path} is not a {what} state_dict (... {detail}). {hint}".strip()) from err
    missing = [k for k in missing if k not in may_miss]
    if missing or unexpected:
        raise WeightsError(f"{path} is not a {what} state_dict: {len(missing)} keys missing (e.g. "
                           f"{missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}). {hint}".strip())
    return model
