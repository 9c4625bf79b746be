"""R(2+1)D-18 (Kinetics-400) clip features ``[T, 512]`` per video.

AVST's ``feat_script/extract_visual_feat/extract_3D_feat.py`` feeds every 1-fps frame as its own one-frame clip
(``--clip-len 1``, the default): frames resized to 112x112 (PIL bilinear, no crop), ``ToTensor``,
Kinetics mean/std, torchvision ``r2plus1d_18`` without ``fc``. ``--clip-len 16`` gives real
temporal context: for each sampled frame, the clip of 16 frames (every ``--clip-stride``) centred on
it, clamped at the ends; with 1fps sampling the centres are the frames at t = 0, 1, 2 ... s.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch
import torchvision

from engine.cli import only_when, positive_int
from feat_script.base import Extractor, ExtractorConfig, main
from feat_script.decode import count_frames, probe
from feat_script.preprocess import resize_frames
from feat_script.recipes import KINETICS_MEAN, KINETICS_STD
from feat_script.sampling import (
    MASN_NUM_CLIPS,
    add_mode_args,
    clips_around,
    fixed60_indices,
    masn_frame_indices,
    mode_record,
    one_fps_indices,
    sample_frames,
)
from feat_script.streams import RowStream, clips, one_fps
from feat_script.weights import build_loaded


def _prepare(clips: np.ndarray) -> np.ndarray:
    """uint8 clips [T, L, H, W, 3] -> uint8 [T, L, 112, 112, 3] (to [T, 3, L, 112, 112] with Kinetics
    mean/std on the device)."""
    t, length = clips.shape[:2]
    return resize_frames(clips.reshape(t * length, *clips.shape[2:]), 112, 112).reshape(t, length, 112, 112, 3)


def _one_frame_clips(frames: np.ndarray) -> np.ndarray:
    return _prepare(frames[:, None])


@dataclasses.dataclass
class R2Plus1DConfig(ExtractorConfig):
    sampling: str = "1fps"  # or fixed60, masn
    seconds: int = 60
    num_clips: int = MASN_NUM_CLIPS
    clip_len: int = 1  # 1 = AVST's recipe; 16 = real clips
    clip_stride: int = 1


class R2Plus1D(Extractor):
    Config = R2Plus1DConfig
    name = "r2plus1d"
    description = __doc__
    fast_inference = True
    default_batch_size = 16
    pixel_stats = (KINETICS_MEAN, KINETICS_STD)

    frames_per_forward = 64  # the default batch holds at most this many frames: 16-frame clips go 4 at a time

    def default_batch(self, config: R2Plus1DConfig) -> int:
        """16 one-frame clips, or as many clips as fit in ``frames_per_forward`` frames: the activations of a
        batch of sixteen 16-frame clips alone take about 2 GB on a CPU."""
        return max(1, min(self.default_batch_size, self.frames_per_forward // max(1, config.clip_len)))

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        add_mode_args(parser, "clips", "1fps")
        parser.add_argument("--clip-len", type=positive_int, default=1, help="1 = AVST's recipe; 16 = real clips")
        parser.add_argument("--clip-stride", type=positive_int, default=1, help="frame step inside a clip")
        only_when(parser, ["--clip-stride"], lambda args: args.clip_len > 1, "with --clip-len 1 (one frame per clip)")

    def sampling(self) -> dict:
        a = self.config
        return {
            **mode_record(a.sampling, a.seconds, a.num_clips),
            "clip_len": a.clip_len,
            "clip_stride": a.clip_stride,
            "resize": [112, 112],
            "interpolation": "PIL bilinear",
            "mean": KINETICS_MEAN,
            "std": KINETICS_STD,
        }

    def row_shapes(self) -> dict:
        return {"": (512,)}

    def model_info(self) -> dict:
        return {"arch": "torchvision r2plus1d_18", "output": "avgpool (fc removed)"}

    def _clip_indices(self, video: Path) -> np.ndarray:
        a = self.config
        info, n = probe(video), count_frames(video)
        if a.sampling == "1fps":
            centres = one_fps_indices(n, info.fps)
        elif a.sampling == "fixed60":
            centres = fixed60_indices(n, info.fps, a.seconds)
        else:
            centres = masn_frame_indices(n, a.num_clips)
        return clips_around(centres, n, a.clip_len, a.clip_stride)

    def load(self, video: Path) -> dict[str, np.ndarray | RowStream]:
        a = self.config
        if a.clip_len > 1:  # decoded clip by clip, streamed for long videos
            return {"frames": clips(video, self._clip_indices(video), _prepare)}
        if a.sampling == "1fps":
            return {"frames": one_fps(video, _one_frame_clips)}
        return {"frames": _one_frame_clips(sample_frames(video, a.sampling, seconds=a.seconds, num_clips=a.num_clips))}

    def build_model(self) -> torch.nn.Module:
        self.weights_path = self.resolve_weights("r2plus1d_18")
        model = build_loaded(lambda: torchvision.models.video.r2plus1d_18(weights=None), self.weights_path,
                             "r2plus1d_18")
        model.fc = torch.nn.Identity()
        return model.eval()


if __name__ == "__main__":
    raise SystemExit(main(R2Plus1D))
