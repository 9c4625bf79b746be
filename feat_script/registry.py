"""Every extractor by name, for ``python -m feat_script NAME ...`` and for code that picks one by name.

Adding an extractor is one new ``feat_script/extract_<name>.py`` (a subclass of
``feat_script.base.Extractor``) plus one line here. Entries are imported on first use, so listing
them costs nothing.
"""
from __future__ import annotations

import importlib

from engine.errors import UserError
from feat_script.base import Extractor

EXTRACTORS: dict[str, str] = {  # CLI name -> "module:class"
    "frames": "feat_script.extract_frames:Frames",
    "audio": "feat_script.extract_audio:Audio",
    "vggish": "feat_script.extract_vggish:VggishExtractor",
    "resnet": "feat_script.extract_resnet:ResNetGlobal",
    "14x14": "feat_script.extract_14x14:Res18x14",
    "r2plus1d": "feat_script.extract_r2plus1d:R2Plus1D",
    "i3d": "feat_script.extract_i3d:I3dExtractor",
    "objects": "feat_script.extract_objects:ObjectsExtractor",
    "clip": "feat_script.extract_clip:Clip",
    "vit-tome": "feat_script.extract_vit_tome:VitTome",
}


def extractor_class(name: str) -> type[Extractor]:
    """The extractor registered as ``name``."""
    if name not in EXTRACTORS:
        raise UserError(f"unknown extractor {name!r}; choose one of {', '.join(EXTRACTORS)}")
    module, cls = EXTRACTORS[name].split(":")
    return getattr(importlib.import_module(module), cls)
