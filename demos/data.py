"""The synthetic demo data sets (TGIF-QA and MUSIC-AVQA formats) that ``make demo`` trains on.

The data are generated, not real: small sets in exactly the real formats, with a planted
signal that a model can only pick up from the video (and audio) features.
"""
from __future__ import annotations

from pathlib import Path

from avst.data.synthetic import make_demo as make_avst_demo
from masn.data.synthetic import make_demo as make_masn_demo


def make(out: Path, seed: int = 0, only: str | None = None) -> None:
    """Write ``out/tgif-qa`` and ``out/music-avqa`` (or only the one of ``only``: masn or avst)."""
    if only in (None, "masn"):
        print(make_masn_demo(Path(out) / "tgif-qa", seed=seed))
    if only in (None, "avst"):
        print(make_avst_demo(Path(out) / "music-avqa", seed=seed))
