"""Import the original MUSIC-AVQA nets from a checkout, for the parity check and the step benchmark.

The original nets call ``resnet18(pretrained=True)``, which reads a hard-coded ImageNet file; here
``pretrained`` is forced off (the original's ``visual_net.resnet18(pretrained=True)`` would download ImageNet
weights). Nothing from the checkout is copied into this repository.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType


def _import_net(root: Path, folder: str, module: str) -> ModuleType:
    if not (root / folder / f"{module}.py").is_file():
        raise SystemExit(f"--original {root}: no {folder}/{module}.py there (need a GeWu-Lab/MUSIC-AVQA checkout)")
    if str(root / "net_grd_avst") not in sys.path:
        sys.path.insert(0, str(root / "net_grd_avst"))  # visual_net.py; net_grd_baseline has none
        visual_net = importlib.import_module("visual_net")
        build = visual_net._resnet

        def no_download(arch, block, layers, pretrained, progress, modal, **kwargs):
            return build(arch, block, layers, False, progress, modal, **kwargs)

        visual_net._resnet = no_download
    sys.path.insert(0, str(root / folder))
    try:
        return importlib.import_module(module)
    finally:
        sys.path.pop(0)


def original_avst(root: Path) -> ModuleType:
    """``net_grd_avst/net_avst.py`` (``AVQA_Fusion_Net``, ``batch_organize``)."""
    return _import_net(root, "net_grd_avst", "net_avst")


def original_baseline(root: Path) -> ModuleType:
    """``net_grd_baseline/nets_qa_grd_baseline.py``."""
    return _import_net(root, "net_grd_baseline", "nets_qa_grd_baseline")


def original_grounding(root: Path) -> tuple[ModuleType, ModuleType]:
    """``grounding_gen/nets_grd_gen.py`` and its ``_vis`` twin."""
    return _import_net(root, "grounding_gen", "nets_grd_gen"), _import_net(root, "grounding_gen", "nets_grd_gen_vis")
