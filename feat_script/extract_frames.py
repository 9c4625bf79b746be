"""Frames as JPEG folders: 1 fps like the original ``extract_frames.py`` or AVST's fixed 60.

``--mode 1fps``: ffmpeg's ``-r 1`` rate conversion, names ``000001.jpg``... (6 digits, 1-based).
``--mode fixed60``: the middle frame of each second, exactly ``--seconds`` frames, the last second
repeated for short videos (``extract_frames_adaptive.py``), names ``00000001.jpg``... (8 digits).
Frames keep the video's size; JPEGs are written with PIL at ``--jpeg-quality`` (75, imageio's
default that the adaptive script used). Output: ``<out>/<video_id>/``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from engine.cli import Bounded, only_when, positive_int
from feat_script.base import Extractor, ExtractorConfig, main
from feat_script.recipes import JPEG_QUALITY
from feat_script.sampling import sample_frames
from feat_script.stores import FramesStore
from feat_script.streams import one_fps


@dataclasses.dataclass
class FramesConfig(ExtractorConfig):
    mode: str = "1fps"  # or fixed60
    seconds: int = 60
    jpeg_quality: int = JPEG_QUALITY


class Frames(Extractor):
    Config = FramesConfig
    name = "frames"
    description = __doc__
    stores = ("frames",)
    default_store = "frames"
    output_dtype = "uint8 (JPEG)"

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--mode", choices=["1fps", "fixed60"], default="1fps")
        parser.add_argument("--seconds", type=positive_int, default=60, help="frames per video in fixed60 mode")
        only_when(parser, ["--seconds"], lambda args: args.mode == "fixed60", "unless --mode fixed60")
        parser.add_argument("--jpeg-quality", type=Bounded(int, 1, 100), default=JPEG_QUALITY,
                            help="PIL JPEG quality of the written frames (1-100)")

    def sampling(self) -> dict:
        return {
            "mode": self.config.mode,
            "seconds": self.config.seconds if self.config.mode == "fixed60" else None,
            "jpeg_quality": self.config.jpeg_quality,
            "size": "native",
        }

    def load(self, video: Path) -> dict[str, np.ndarray]:
        if self.config.mode == "1fps":
            return {"frames": one_fps(video)}
        return {"frames": sample_frames(video, self.config.mode, seconds=self.config.seconds)}

    def make_store(self, out: Path, kind: str) -> FramesStore:
        digits = 8 if self.config.mode == "fixed60" else 6
        return FramesStore(out, digits=digits, quality=self.config.jpeg_quality)


if __name__ == "__main__":
    raise SystemExit(main(Frames))
