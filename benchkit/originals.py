"""The authors' code, imported from a checkout the user names (``--original``); nothing from it is copied
into this repository.

Their modules import their siblings by bare name (``from visual_net import resnet18``), so each import
runs with the checkout's folders at the front of ``sys.path`` (:func:`_importable`, which restores it).
Shims that change no number: MASN's BAN ``logits.view(...)`` fails on torch >= 2.14 on a non-contiguous
einsum result, so ``BCNet.forward`` returns a contiguous copy; MASN's ``MultipleChoiceLoss`` allocates on
CUDA, so :func:`original_mc_loss` re-types its double loop device-agnostic; MUSIC-AVQA's nets call
``resnet18(pretrained=True)``, which would download ImageNet weights, so ``pretrained`` is forced off;
its dataset imports ``munch`` only for an unused name, so a stand-in is provided when it is absent.
"""
from __future__ import annotations

import contextlib
import importlib
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import torch

from engine.errors import UserError

MASN_REPO = "ahjeongseo/MASN-pytorch"
AVQA_REPO = "GeWu-Lab/MUSIC-AVQA"


@contextlib.contextmanager
def _importable(*folders: Path) -> Iterator[None]:
    """``folders`` first on ``sys.path`` while the block runs; ``sys.path`` as it was afterwards."""
    saved = list(sys.path)
    sys.path[:0] = [str(f) for f in folders]
    try:
        yield
    finally:
        sys.path[:] = saved


def _checked(root: Path, rel: str, repo: str) -> Path:
    root = Path(root).resolve()
    if not (root / rel).is_file():
        raise UserError(f"--original {root}: no {rel} there; give a checkout of {repo}")
    return root


def original_masn(root: Path) -> type:
    """``model.masn.MASN`` of a MASN-pytorch checkout (with the contiguous ``BCNet.forward``)."""
    root = _checked(root, "model/masn.py", MASN_REPO)
    with _importable(root):
        from model.masn import MASN
        from model.modules.ban import ban
    forward = ban.BCNet.forward
    if not getattr(forward, "contiguous_shim", False):
        def contiguous(self, v, q):
            return forward(self, v, q).contiguous()

        contiguous.contiguous_shim = True
        ban.BCNet.forward = contiguous
    return MASN


def original_mc_loss(score: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``embed_loss.MultipleChoiceLoss.forward`` with its accumulators on the score's device."""
    loss = torch.tensor(0.0, device=score.device)
    zero = torch.tensor(0.0, device=score.device)
    cnt = 0
    for b in range(score.size(0)):
        c0 = target[b]
        for c in range(score.size(1)):
            if c == c0:
                continue
            loss += torch.max(zero, 1.0 + score[b, c] - score[b, c0])
            cnt += 1
    return loss / cnt


def _avqa_module(root: Path, folder: str, module: str) -> ModuleType:
    """``<folder>/<module>.py`` of a MUSIC-AVQA checkout; every net gets ``net_grd_avst/visual_net.py``."""
    root = _checked(root, f"{folder}/{module}.py", AVQA_REPO)
    sys.modules.setdefault("munch", types.SimpleNamespace(munchify=lambda x: x))
    with _importable(root / "net_grd_avst"):
        visual_net = importlib.import_module("visual_net")
    if not getattr(visual_net, "download_off", False):
        build = visual_net._resnet

        def no_download(arch, block, layers, pretrained, progress, modal, **kwargs):
            return build(arch, block, layers, False, progress, modal, **kwargs)

        visual_net._resnet, visual_net.download_off = no_download, True
    with _importable(root / folder, root / "net_grd_avst"):
        return importlib.import_module(module)


def original_avst(root: Path) -> ModuleType:
    """``net_grd_avst/net_avst.py`` (``AVQA_Fusion_Net``, ``batch_organize``)."""
    return _avqa_module(root, "net_grd_avst", "net_avst")


def original_baseline(root: Path) -> ModuleType:
    """``net_grd_baseline/nets_qa_grd_baseline.py``."""
    return _avqa_module(root, "net_grd_baseline", "nets_qa_grd_baseline")


def original_grounding(root: Path) -> tuple[ModuleType, ModuleType]:
    """``grounding_gen/nets_grd_gen.py`` and its ``_vis`` twin."""
    return _avqa_module(root, "grounding_gen", "nets_grd_gen"), _avqa_module(root, "grounding_gen", "nets_grd_gen_vis")


def original_avqa_dataset(root: Path) -> ModuleType:
    """``net_grd_avst/dataloader_avst.py`` (``AVQA_dataset``)."""
    return _avqa_module(root, "net_grd_avst", "dataloader_avst")
