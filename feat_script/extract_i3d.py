"""MASN's motion global feature: I3D ResNet-50 per clip, 7x7 map average-pooled -> ``[T, 2048]``.

    python -m feat_script.extract_i3d --videos data/tgif-qa/gifs \\
        --out data/tgif-qa/feats/feat_r6_vsync2/tgif_i3d_hw7_perclip_avgpool.hdf5 \\
        --weights checkpoints/i3d_r50_kinetics.pth

Clips follow the shared MASN sampling (``feat_script.sampling``): ``--num-clips`` T equal segments
(20 for TGIF-QA, 30 for MSVD/MSRVTT-QA), a clip of ``--clip-len`` frames every ``--clip-stride``
frames centred on each segment's centre frame. Frames are resized to 224x224 without cropping
(PIL bilinear) and normalised as the upstream I3D code does ((x - 114.75) / 57.375 on 0..255).
The HDF5 store writes dataset ``<video_id>`` (T, 2048) float32.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from engine.cli import positive_int
from feat_script.base import Extractor, ExtractorConfig, main
from feat_script.decode import count_frames, read_frames
from feat_script.i3d import I3Res50, i3d_input
from feat_script.preprocess import resize_frames
from feat_script.sampling import MASN_CLIP_LEN, MASN_NUM_CLIPS, MASN_STRIDE, masn_clip_indices
from feat_script.weights import build_loaded, resolve

I3D_SIZE = 224


@dataclasses.dataclass
class ClipConfig(ExtractorConfig):
    """MASN's clips (shared by the I3D and object extractors): T segments, a clip around each centre."""

    num_clips: int = MASN_NUM_CLIPS
    clip_len: int = MASN_CLIP_LEN
    clip_stride: int = MASN_STRIDE
    non_local: bool = False  # the non-local I3D (i3d_r50_nl_kinetics.pth)


def add_clip_args(parser: argparse.ArgumentParser) -> None:
    """The MASN clip flags shared by the I3D and object extractors."""
    parser.add_argument("--num-clips", type=positive_int, default=MASN_NUM_CLIPS, help="T: clips (rows) per video")
    parser.add_argument("--clip-len", type=positive_int, default=MASN_CLIP_LEN, help="frames per I3D clip")
    parser.add_argument("--clip-stride", type=positive_int, default=MASN_STRIDE, help="frame step inside a clip")
    parser.add_argument("--nonlocal", dest="non_local", action="store_true",
                        help="the non-local I3D (i3d_r50_nl_kinetics.pth) instead of the plain one")


class ClipMaps(nn.Module):
    """uint8 clips [B, 3, L, 224, 224] -> layer4 map averaged over the clip's time [B, 2048, 7, 7].

    A module of its own (rather than a call to ``I3Res50.features``) so that the base's
    ``optimise`` traces exactly this computation when it folds BatchNorm into the convolutions.
    """

    def __init__(self, i3d: I3Res50) -> None:
        super().__init__()
        self.i3d = i3d

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.i3d.features(i3d_input(clips)).mean(dim=2)


def build_i3d(config: ClipConfig) -> tuple[ClipMaps, Path | None]:
    """The I3D of ``non_local`` with ``config.weights`` (or the cache, or ``random_init``), in eval mode."""
    name = "i3d_r50_nl" if config.non_local else "i3d_r50"
    path = resolve(name, config.weights, config.random_init)
    model = build_loaded(lambda: I3Res50(nonlocal_blocks=config.non_local), path, name)
    return ClipMaps(model).eval(), path


def clip_sampling(config: ClipConfig) -> dict[str, Any]:
    return {"recipe": "masn", "num_clips": config.num_clips, "clip_len": config.clip_len,
            "clip_stride": config.clip_stride, "resize": f"{I3D_SIZE}x{I3D_SIZE} (no crop, PIL bilinear)",
            "normalize": "(x - 114.75) / 57.375 on 0..255"}


def clip_indices(config: ClipConfig, num_frames: int) -> np.ndarray:
    """``[num_clips, clip_len]`` frame indices of the clips of a video of ``num_frames`` frames."""
    return masn_clip_indices(num_frames, config.num_clips, config.clip_len, config.clip_stride)


def clips_from_frames(frames: np.ndarray, config: ClipConfig) -> np.ndarray:
    """The decoded frames of ``clip_indices`` (in that order, ``[T * clip_len, H, W, 3]``) -> uint8
    ``[T, 3, clip_len, 224, 224]`` clips."""
    frames = resize_frames(frames, I3D_SIZE, I3D_SIZE)
    clips = frames.reshape(config.num_clips, config.clip_len, I3D_SIZE, I3D_SIZE, 3)
    return np.ascontiguousarray(clips.transpose(0, 4, 1, 2, 3))


def load_clips(video: Path, config: ClipConfig, num_frames: int | None = None) -> np.ndarray:
    """uint8 [T, 3, clip_len, 224, 224] clips of one video (decoded in a worker)."""
    num_frames = count_frames(video) if num_frames is None else num_frames
    indices = clip_indices(config, num_frames)
    return clips_from_frames(read_frames(video, indices=indices.ravel()), config)


class I3dExtractor(Extractor):
    Config = ClipConfig
    name = "i3d"
    description = __doc__
    default_store = "hdf5"
    default_batch_size = 4
    batched_input = "clips"

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        add_clip_args(parser)

    def sampling(self) -> dict[str, Any]:
        return clip_sampling(self.config)

    def row_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"": (2048,)}

    def model_info(self) -> dict[str, Any]:
        arch = "i3d_r50_nl" if self.config.non_local else "i3d_r50"
        return {"arch": f"{arch} (Tushar-N/pytorch-resnet3d layout)", "layer": "layer4, mean over T', 7, 7"}

    def load(self, video: Path) -> dict[str, np.ndarray]:
        return {"clips": load_clips(video, self.config)}

    def build_model(self) -> torch.nn.Module:
        model, self.weights_path = build_i3d(self.config)
        return model

    def forward(self, model: torch.nn.Module, clips: torch.Tensor) -> torch.Tensor:
        return model(self.inputs(clips)).mean(dim=(2, 3))


if __name__ == "__main__":
    raise SystemExit(main(I3dExtractor))
