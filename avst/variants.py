"""Every AVST-family QA model by name, as timm's ``register_model``: ``--model NAME`` of
``avst/main_avst.py``, the ``model`` a checkpoint's ``meta`` records, and what ``avst.answer`` builds.

A ``Variant`` says how to build the network (``build(vocab_size, num_answers)``) and what the code
around it must know: its default epochs, whether training takes negative visual pairs (the
matching loss), whether it starts from the stage-1 grounding heads, and whether it has a spatial
attention map to draw. Adding a variant is one new file holding the network and its ``VARIANT``
plus one line in ``VARIANTS`` (entries are imported on first use, so listing them costs nothing).
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from engine.errors import UserError


@dataclass(frozen=True)
class Variant:
    name: str
    build: Callable[[int, int], nn.Module]  # (vocabulary size incl. <pad>, number of answers) -> network
    epochs: int  # --epochs default
    negatives: bool  # training pairs each question with another video's frames (matching loss)
    grounding_init: bool  # stage 2: starts from grounding_gen's 14 head tensors unless --no_grounding_init
    spatial_attention: bool  # returns a spatial map per sampled second (heat maps)
    description: str = ""


VARIANTS: dict[str, str] = {  # --model name -> "module:VARIANT"
    "avst": "avst.model.avst:VARIANT",
    "baseline": "avst.model.baseline:VARIANT",
}


def variant(name: str) -> Variant:
    """The variant registered as ``name``."""
    if name not in VARIANTS:
        raise UserError(f"unknown AVST model {name!r}; choose one of {', '.join(VARIANTS)}")
    module, attr = VARIANTS[name].split(":")
    return getattr(importlib.import_module(module), attr)
