"""AVST's visual input: stride-1 ResNet-18 maps ``[T, 512, 14, 14]`` float32 per video.

As AVST's ``feat_script/extract_visual_feat_14x14/extract_14x14_feat.py``: each frame resized to 224x224 (no aspect
preservation, PIL bilinear), ``ToTensor``, Kinetics mean/std, ImageNet ResNet-18 with layer4 at
stride 1 (``feat_script.models.resnet_stride1``, shared with ``avst.model``), eval mode. Frames:
AVST's fixed-60 sampling by default (T = 60), or ``--sampling 1fps``. The original read its frames
back from JPEGs (PIL, quality 75); ``--jpeg-quality 75`` (default) does the same round trip in
memory, so its features are reproduced exactly (``0`` skips it). Output: ``<out>/<vid>.npy``
(the original layout) or ``--store packed`` (``<out>/res18_14x14.npy`` + index, read by avst.data).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
from pathlib import Path

import numpy as np
import torch

from engine.cli import Bounded, only_when, positive_int
from feat_script.base import Extractor, ExtractorConfig, main
from feat_script.models.resnet_stride1 import resnet18_stride1
from feat_script.preprocess import jpeg_roundtrip, resize_frames, to_tensor_normalize
from feat_script.recipes import AVST_SECONDS, JPEG_QUALITY, KINETICS_MEAN, KINETICS_STD
from feat_script.sampling import sample_frames
from feat_script.streams import one_fps


def _prepare(frames: np.ndarray, jpeg_quality: int) -> np.ndarray:
    """uint8 frames -> optional JPEG round trip, 224x224, still uint8 (Kinetics mean/std on the device)."""
    if jpeg_quality:
        frames = jpeg_roundtrip(frames, jpeg_quality)
    return resize_frames(frames, 224, 224)


def prepare_frames(frames: np.ndarray, jpeg_quality: int) -> np.ndarray:
    """uint8 frames -> the network's float input (what ``forward`` computes on the device, here on the
    host: for loaders that hand the network ready inputs, e.g. stage 1's frames)."""
    return to_tensor_normalize(_prepare(frames, jpeg_quality), KINETICS_MEAN, KINETICS_STD)


@dataclasses.dataclass
class Res18x14Config(ExtractorConfig):
    sampling: str = "fixed60"  # or 1fps
    seconds: int = AVST_SECONDS
    jpeg_quality: int = JPEG_QUALITY  # 0: no JPEG round trip
    rows: tuple[int, ...] | None = None  # fixed60: keep only these rows (AVST's loader rows); None: all


class Res18x14(Extractor):
    Config = Res18x14Config
    name = "res18_14x14"
    description = __doc__
    fast_inference = True
    default_batch_size = 20
    pixel_stats = (KINETICS_MEAN, KINETICS_STD)

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--sampling", choices=["fixed60", "1fps"], default="fixed60")
        parser.add_argument("--seconds", type=positive_int, default=60, help="frames per video with fixed60")
        only_when(parser, ["--seconds"], lambda args: args.sampling == "fixed60", "unless --sampling fixed60")
        parser.add_argument(
            "--jpeg-quality",
            type=Bounded(int, 0, 100),
            default=JPEG_QUALITY,
            help="pass frames through a PIL JPEG of this quality first, as the original's "
            "frames on disk (75 = imageio's default); 0 = use the decoded frames as they are",
        )

    def sampling(self) -> dict:
        recipe = {
            "mode": self.config.sampling,
            "seconds": self.config.seconds,
            "resize": [224, 224],
            "interpolation": "PIL bilinear",
            "jpeg_roundtrip_quality": self.config.jpeg_quality or None,
            "mean": KINETICS_MEAN,
            "std": KINETICS_STD,
        }
        return recipe if self.config.rows is None else {**recipe, "rows": list(self.config.rows)}

    def row_shapes(self) -> dict:
        return {"": (512, 14, 14)}

    def model_info(self) -> dict:
        return {"arch": "resnet18, layer4 stride 1", "output": "layer4 (after ReLU)"}

    def sample(self, video: Path) -> np.ndarray:
        """The uint8 fixed-60 frames ``[T, H, W, 3]`` the features are made of (``rows`` only)."""
        frames = sample_frames(video, self.config.sampling, seconds=self.config.seconds)
        return frames if self.config.rows is None else frames[list(self.config.rows)]

    def prepare(self, frames: np.ndarray) -> np.ndarray:
        """uint8 frames -> what ``load`` hands the network: JPEG round trip and 224x224, still uint8
        (``pixel_stats`` are applied on the device)."""
        return _prepare(frames, self.config.jpeg_quality)

    def load(self, video: Path) -> dict[str, np.ndarray]:
        if self.config.sampling == "1fps":
            return {"frames": one_fps(video, functools.partial(_prepare, jpeg_quality=self.config.jpeg_quality))}
        return {"frames": self.prepare(self.sample(video))}

    def build_model(self) -> torch.nn.Module:
        self.weights_path = self.resolve_weights("resnet18")
        return resnet18_stride1(self.weights_path).eval()


if __name__ == "__main__":
    raise SystemExit(main(Res18x14))
