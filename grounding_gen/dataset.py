"""Stage-1 dataset (``grounding_gen/dataloader_grd_gen.py``): (frame, audio) pairs and negatives.

Item ``idx`` is frame ``idx % 10`` (the sorted frame folder's first 10 frames, the first 10 seconds) of
video ``idx // 10`` with VGGish row ``idx % 10``; its negative is a frame 0-9 of another video, drawn
from a generator seeded with (seed, epoch, idx) instead of the unseeded global ``random``. Frames are
resized to 224x224 (no aspect kept) and normalised with the Kinetics mean/std, as the original (its
torchvision ``Resize``/``ToTensor``/``Normalize``, done by the 14x14 extractor's own preprocessing).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from avst.data.dataset import check_features, finite
from engine.errors import UserError
from feat_script.extract_14x14 import prepare_frames

FRAMES_PER_VIDEO = 10
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class FrameError(UserError, ValueError):
    """A frame folder that is missing, too short, or holds an image that cannot be decoded."""


def frame_files(frames_dir: str | Path, video_id: str) -> list[Path]:
    """The first 10 frames (sorted names) of one video's 1-fps frame folder; errors name the folder."""
    folder = Path(frames_dir) / video_id
    if not folder.is_dir():
        raise FrameError(f"{folder}: frame folder not found; make 1-fps frames with feat_script.extract_frames")
    names = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(names) < FRAMES_PER_VIDEO:
        raise FrameError(f"{folder}: {len(names)} frames, stage 1 needs the first {FRAMES_PER_VIDEO}; extract the "
                         "frames again")
    return names[:FRAMES_PER_VIDEO]


def load_frame(path: Path) -> torch.Tensor:
    try:
        with Image.open(path) as img:
            return torch.from_numpy(prepare_frames(np.asarray(img.convert("RGB"))[None], jpeg_quality=0)[0])
    except (UnidentifiedImageError, OSError, SyntaxError) as err:  # PIL's errors for corrupt or truncated files
        raise FrameError(f"{path}: the image cannot be decoded ({err}); extract the frames again") from None


class GroundingDataset(Dataset):
    """Items: audio [2,128] (the positive row twice), visual [2,3,224,224] (positive, negative),
    label [2] = (1, 0), index []."""

    def __init__(self, videos: list[str], audio, frames_dir: str | Path, seed: int = 1) -> None:
        if len(videos) < 2:
            raise FrameError(f"{frames_dir}: stage-1 negatives need at least two videos, the split has "
                             f"{len(videos)}; add questions about other videos")
        self.videos = videos
        self.audio = audio
        self.frames = {v: frame_files(frames_dir, v) for v in videos}
        check_features(videos, {"audio": audio})
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return FRAMES_PER_VIDEO * len(self.videos)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def negative(self, idx: int) -> tuple[str, int]:
        rng = np.random.default_rng([self.seed, self.epoch, idx])
        own = idx // FRAMES_PER_VIDEO
        while True:
            pick = int(rng.integers(len(self)))
            if pick // FRAMES_PER_VIDEO != own:
                return self.videos[pick // FRAMES_PER_VIDEO], pick % FRAMES_PER_VIDEO

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        video, flag = self.videos[idx // FRAMES_PER_VIDEO], idx % FRAMES_PER_VIDEO
        neg_video, neg_flag = self.negative(idx)
        row = finite(self.audio, "audio", video, self.audio.read(video, np.array([flag]))).float()
        visual = torch.stack((load_frame(self.frames[video][flag]), load_frame(self.frames[neg_video][neg_flag])))
        return {"audio": row.expand(2, -1).contiguous(), "visual": visual,
                "label": torch.tensor([1, 0]), "index": torch.tensor(idx)}

