"""Global 2D features: torchvision ResNet-18 ``[T, 512]`` or ResNet-152 ``[T, 2048]`` per video.

As AVST's ``feat_script/extract_visual_feat/extract_rgb_feat.py`` (pretrainedmodels' resnets are torchvision's):
resize the shorter side to 256 and centre-crop 224 (PIL bilinear), ``ToTensor``, ImageNet mean/std,
the network with ``fc`` = Identity (the average-pooled penultimate vector). ``--masn`` writes
MASN's appearance-global file ``res152_avgpool.hdf5``: ResNet-152 by default, MASN sampling
(``--num-clips`` segment-centre frames, see feat_script/README.md), HDF5 dataset ``<vid>`` ->
``(T, 2048)`` float32.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torchvision

from feat_script.base import IMAGENET_MEAN, IMAGENET_STD, Extractor, load_weights, main, resolve_weights
from feat_script.preprocess import resize_short_centre_crop
from feat_script.sampling import MASN_NUM_CLIPS, sample_frames
from feat_script.streams import one_fps

WEIGHTS = {
    "resnet18": ("resnet18-5c106cde.pth", "resnet18-f37072fd.pth"),
    "resnet152": ("resnet152-b121ed2d.pth", "resnet152-394f9c45.pth"),
}
DIMS = {"resnet18": 512, "resnet152": 2048}


def _prepare(frames: np.ndarray) -> np.ndarray:
    """uint8 frames -> Resize(256), CenterCrop(224), still uint8 (ImageNet mean/std on the device)."""
    return resize_short_centre_crop(frames, 256, 224)


class ResNetGlobal(Extractor):
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
        parser.add_argument(
            "--sampling",
            choices=["1fps", "fixed60", "masn"],
            default=None,
            help="1fps (default), fixed60 or masn (default with --masn)",
        )
        parser.add_argument("--seconds", type=int, default=60, help="frames per video with fixed60")
        parser.add_argument(
            "--num-clips", type=int, default=MASN_NUM_CLIPS, help="frames per video with masn"
        )
        parser.add_argument(
            "--masn",
            action="store_true",
            help="MASN's res152_avgpool.hdf5: --arch resnet152 --sampling masn --store hdf5",
        )

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        args.arch = args.arch or ("resnet152" if args.masn else "resnet18")
        args.sampling = args.sampling or ("masn" if args.masn else "1fps")
        if args.masn:
            args.store = "hdf5"
        self.name = f"{args.arch}_avgpool"

    def sampling(self) -> dict:
        a = self.args
        return {
            "mode": a.sampling,
            "seconds": a.seconds if a.sampling == "fixed60" else None,
            "num_clips": a.num_clips if a.sampling == "masn" else None,
            "resize_short": 256,
            "crop": 224,
            "interpolation": "PIL bilinear",
            "mean": IMAGENET_MEAN,
            "std": IMAGENET_STD,
        }

    def row_shapes(self) -> dict:
        return {"": (DIMS[self.args.arch],)}

    def model_info(self) -> dict:
        return {"arch": f"torchvision {self.args.arch}", "output": "avgpool (fc = Identity)"}

    def load(self, video: Path) -> dict[str, np.ndarray]:
        if self.args.sampling == "1fps":
            return {"frames": one_fps(video, _prepare)}
        return {"frames": _prepare(sample_frames(
            video, self.args.sampling, seconds=self.args.seconds, num_clips=self.args.num_clips
        ))}

    def build_model(self) -> torch.nn.Module:
        arch = self.args.arch
        names = WEIGHTS[arch]
        self.weights_path = resolve_weights(
            self.args, names, f"https://download.pytorch.org/models/{names[0]}", f"ImageNet {arch}"
        )
        model = load_weights(getattr(torchvision.models, arch)(weights=None), self.weights_path, arch)
        model.fc = torch.nn.Identity()
        return model.eval()


if __name__ == "__main__":
    raise SystemExit(main(ResNetGlobal))
