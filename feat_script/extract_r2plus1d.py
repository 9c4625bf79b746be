"""R(2+1)D-18 (Kinetics-400) clip features ``[T, 512]`` per video.

AVST's ``feat_script/extract_visual_feat/extract_3D_feat.py`` feeds every 1-fps frame as its own one-frame clip
(``--clip-len 1``, the default): frames resized to 112x112 (PIL bilinear, no crop), ``ToTensor``,
Kinetics mean/std, torchvision ``r2plus1d_18`` without ``fc``. ``--clip-len 16`` gives real
temporal context: for each sampled frame, the clip of 16 frames (every ``--clip-stride``) centred on
it, clamped at the ends; with 1fps sampling the centres are the frames at t = 0, 1, 2 ... s.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torchvision

from feat_script.base import KINETICS_MEAN, KINETICS_STD, Extractor, load_weights, main, resolve_weights
from feat_script.decode import count_frames, probe
from feat_script.preprocess import normalise, resize_frames
from feat_script.sampling import (
    MASN_NUM_CLIPS,
    clips_around,
    fixed60_indices,
    masn_frame_indices,
    one_fps_indices,
    sample_frames,
)
from feat_script.streams import RowStream, clips, one_fps

WEIGHTS = ("r2plus1d_18-91a641e6.pth",)
SOURCE = "https://download.pytorch.org/models/r2plus1d_18-91a641e6.pth (torchvision Kinetics-400 R(2+1)D-18)"


def _prepare(clips: np.ndarray) -> np.ndarray:
    """uint8 clips [T, L, H, W, 3] -> [T, 3, L, 112, 112], Kinetics mean/std."""
    t, length = clips.shape[:2]
    x = normalise(
        resize_frames(clips.reshape(t * length, *clips.shape[2:]), 112, 112), KINETICS_MEAN, KINETICS_STD
    )
    return np.ascontiguousarray(x.reshape(t, length, 3, 112, 112).transpose(0, 2, 1, 3, 4))


def _one_frame_clips(frames: np.ndarray) -> np.ndarray:
    return _prepare(frames[:, None])


class R2Plus1D(Extractor):
    name = "r2plus1d"
    description = __doc__
    fast_inference = True
    default_batch_size = 16

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--sampling", choices=["1fps", "fixed60", "masn"], default="1fps")
        parser.add_argument("--seconds", type=int, default=60, help="clips per video with fixed60")
        parser.add_argument("--num-clips", type=int, default=MASN_NUM_CLIPS, help="clips per video with masn")
        parser.add_argument("--clip-len", type=int, default=1, help="1 = AVST's recipe; 16 = real clips")
        parser.add_argument("--clip-stride", type=int, default=1, help="frame step inside a clip")

    def sampling(self) -> dict:
        a = self.args
        return {
            "mode": a.sampling,
            "seconds": a.seconds if a.sampling == "fixed60" else None,
            "num_clips": a.num_clips if a.sampling == "masn" else None,
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
        a = self.args
        info, n = probe(video), count_frames(video)
        if a.sampling == "1fps":
            centres = one_fps_indices(n, info.fps)
        elif a.sampling == "fixed60":
            centres = fixed60_indices(n, info.fps, a.seconds)
        else:
            centres = masn_frame_indices(n, a.num_clips)
        return clips_around(centres, n, a.clip_len, a.clip_stride)

    def load(self, video: Path) -> dict[str, np.ndarray | RowStream]:
        a = self.args
        if a.clip_len > 1:  # decoded clip by clip, streamed for long videos
            return {"frames": clips(video, self._clip_indices(video), _prepare)}
        if a.sampling == "1fps":
            return {"frames": one_fps(video, _one_frame_clips)}
        return {"frames": _one_frame_clips(sample_frames(video, a.sampling, seconds=a.seconds, num_clips=a.num_clips))}

    def build_model(self) -> torch.nn.Module:
        self.weights_path = resolve_weights(self.args, WEIGHTS, SOURCE, "Kinetics R(2+1)D-18")
        model = load_weights(
            torchvision.models.video.r2plus1d_18(weights=None), self.weights_path, "r2plus1d_18"
        )
        model.fc = torch.nn.Identity()
        return model.eval()


if __name__ == "__main__":
    raise SystemExit(main(R2Plus1D))
