"""Global 2D features: torchvision ResNet-18 ``[T, 512]`` or ResNet-152 ``[T, 2048]`` per video.

As AVST's ``feat_script/extract_visual_feat/extract_rgb_feat.py`` (pretrainedmodels' resnets are torchvision's):
resize the shorter side to 256 and centre-crop 224 (PIL bilinear), ``ToTensor``, ImageNet mean/std,
the network with ``fc`` = Identity (the average-pooled penultimate vector). ``--masn`` writes
MASN's appearance-global file ``res152_avgpool.hdf5``: ResNet-152 by default, MASN sampling
(``--num-clips`` segment-centre frames, see docs/features.md), HDF5 dataset ``<vid>`` ->
``(T, 2048)`` float32.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch
import torchvision

from engine.cli import only_when
from feat_script.base import Extractor, ExtractorConfig, main
from feat_script.preprocess import resize_short_centre_crop
from feat_script.recipes import IMAGENET_MEAN, IMAGENET_STD
from feat_script.sampling import MASN_NUM_CLIPS, add_mode_args, mode_record, sample_frames
from feat_script.streams import one_fps
from feat_script.weights import build_loaded

DIMS = {"resnet18": 512, "resnet152": 2048}


@dataclasses.dataclass
class ResNetConfig(ExtractorConfig):
    arch: str | None = None  # None: resnet18, or resnet152 with masn
    sampling: str | None = None  # 1fps, fixed60, masn; None: 1fps, or masn with masn
    seconds: int = 60
    num_clips: int = MASN_NUM_CLIPS
    masn: bool = False


def _prepare(frames: np.ndarray) -> np.ndarray:
    """uint8 frames -> Resize(256), CenterCrop(224), still uint8 (ImageNet mean/std on the device)."""
    return resize_short_centre_crop(frames, 256, 224)


def sampling_mode(sampling: str | None, masn: bool) -> str:
    """``--sampling``, else masn with ``--masn``, else 1fps."""
    return sampling or ("masn" if masn else "1fps")


class ResNetGlobal(Extractor):
    Config = ResNetConfig
    name = "resnet"
    description = __doc__
    fast_inference = True
    default_batch_size = 32
    pixel_stats = (IMAGENET_MEAN, IMAGENET_STD)

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--arch",
            choices=sorted(DIMS),
            default=None,
            help="resnet18 (default) or resnet152 (default with --masn)",
        )
        add_mode_args(parser, "frames", None, "1fps (default), fixed60 or masn (default with --masn)",
                      mode_of=lambda args: sampling_mode(args.sampling, args.masn))
        parser.add_argument(
            "--masn",
            action="store_true",
            help="MASN's res152_avgpool.hdf5: --arch resnet152 --sampling masn --store hdf5",
        )
        only_when(parser, ["--store"], lambda args: not args.masn or args.store == "hdf5",
                  "with --masn (which writes hdf5)")

    @classmethod
    def config_from_args(cls, args: argparse.Namespace) -> ResNetConfig:
        if args.masn:
            args.store = "hdf5"
        return super().config_from_args(args)

    def __init__(self, config: ResNetConfig | None = None) -> None:
        super().__init__(config)
        c = self.config
        self.config = dataclasses.replace(c, arch=c.arch or ("resnet152" if c.masn else "resnet18"),
                                          sampling=sampling_mode(c.sampling, c.masn))
        self.name = f"{self.config.arch}_avgpool"

    def sampling(self) -> dict:
        a = self.config
        return {
            **mode_record(a.sampling, a.seconds, a.num_clips),
            "resize_short": 256,
            "crop": 224,
            "interpolation": "PIL bilinear",
            "mean": IMAGENET_MEAN,
            "std": IMAGENET_STD,
        }

    def row_shapes(self) -> dict:
        return {"": (DIMS[self.config.arch],)}

    def model_info(self) -> dict:
        return {"arch": f"torchvision {self.config.arch}", "output": "avgpool (fc = Identity)"}

    def prepare(self, frames: np.ndarray) -> np.ndarray:
        """Sampled uint8 frames -> what ``load`` hands the network (resized and cropped, still uint8)."""
        return _prepare(frames)

    def load(self, video: Path) -> dict[str, np.ndarray]:
        if self.config.sampling == "1fps":
            return {"frames": one_fps(video, _prepare)}
        return {"frames": self.prepare(sample_frames(
            video, self.config.sampling, seconds=self.config.seconds, num_clips=self.config.num_clips
        ))}

    def build_model(self) -> torch.nn.Module:
        arch = self.config.arch
        self.weights_path = self.resolve_weights(arch)
        model = build_loaded(lambda: getattr(torchvision.models, arch)(weights=None), self.weights_path, arch)
        model.fc = torch.nn.Identity()
        return model.eval()


if __name__ == "__main__":
    raise SystemExit(main(ResNetGlobal))
