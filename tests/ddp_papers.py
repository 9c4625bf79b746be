"""Runs ``masn/main.py`` or ``avst/main_avst.py`` (first argument: masn | avst; the rest: its flags) as a
script, with every dropout draw off: the one thing that differs, by design, between ranks of a DDP run and
one process (each rank draws its own masks). The DDP end-to-end tests launch it through torchrun."""
from __future__ import annotations

import functools
import runpy
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {"masn": ROOT / "masn" / "main.py", "avst": ROOT / "avst" / "main_avst.py"}


def without_dropout() -> None:
    """``nn.Dropout`` and the attention weights' dropout (both call ``torch.nn.functional.dropout``) pass
    their input through; ``nn.MultiheadAttention`` is built with dropout 0 (its fused path draws inside)."""
    torch.nn.functional.dropout = lambda input, p=0.5, training=True, inplace=False: input
    build = torch.nn.MultiheadAttention.__init__

    @functools.wraps(build)
    def no_attention_dropout(self, *args, **kwargs):
        build(self, *args, **{**kwargs, "dropout": 0.0})

    torch.nn.MultiheadAttention.__init__ = no_attention_dropout


if __name__ == "__main__":
    paper, *flags = sys.argv[1:]
    without_dropout()
    sys.argv = [str(SCRIPTS[paper]), *flags]
    runpy.run_path(str(SCRIPTS[paper]), run_name="__main__")
