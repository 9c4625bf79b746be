"""Which frames each recipe takes, as 0-based frame indices into the decoded stream.

- ``fixed60_indices``: AVST's ``extract_frames_adaptive.py`` (avst spec §6.3): the middle of each
  second, exactly ``seconds`` frames, the last second repeated for short videos. The original
  counts positions 1-based (moviepy's reader), so the frame taken for second i is 0-based
  ``round((i + 0.5) * fps) - 1`` (Python's round, ties to even); e.g. frame 14 at 30 fps.
  Positions past the end wrap inside the last (partial) second, as the original does.
- ``masn_frame_indices`` / ``masn_clip_indices``: our MASN recipe (the authors never stated
  theirs): ``num_clips`` equal segments, the centre frame of each (appearance), and a clip of
  ``clip_len`` frames every ``stride`` frames centred on it (motion), clamped at the ends. A video
  shorter than ``num_clips`` frames repeats frames, so every MASN file has exactly ``num_clips`` rows
  and row t of all four files looks at the same moment.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from feat_script.decode import DecodeError, count_frames, probe, read_frames

MASN_NUM_CLIPS = 20
MASN_CLIP_LEN = 16
MASN_STRIDE = 1


def fixed60_indices(num_frames: int, fps: float, seconds: int = 60, per_second: int = 1) -> np.ndarray:
    """AVST's fixed-length sampling; ``[seconds * per_second]`` indices."""
    if num_frames <= 0 or fps <= 0:
        raise ValueError(
            f"fixed60_indices: need frames and a frame rate, got {num_frames} frames at {fps} fps"
        )
    last_frames = int(num_frames % fps) or int(fps)
    last_frames = min(max(last_frames, 1), num_frames)
    last_start = num_frames - last_frames
    positions = []
    for i in range(seconds * per_second):
        pos = round((1 / (2 * per_second) + i / per_second) * fps)
        if pos > num_frames:
            pos = last_start + 1 + (pos - last_start - 1) % last_frames
        positions.append(max(pos, 1) - 1)
    return np.asarray(positions, dtype=np.int64)


def one_fps_indices(num_frames: int, fps: float) -> np.ndarray:
    """Index form of 1 fps (the frame at t = 0, 1, 2 ... s); used where clips need frame indices."""
    count = max(1, math.ceil(num_frames / fps - 1e-9))
    return np.minimum(np.round(np.arange(count) * fps).astype(np.int64), num_frames - 1)


def masn_frame_indices(num_frames: int, num_clips: int = MASN_NUM_CLIPS) -> np.ndarray:
    """Centre frame of each of ``num_clips`` equal segments: ``floor((k + 0.5) * N / num_clips)``."""
    if num_frames <= 0:
        raise ValueError("masn_frame_indices: the video has no frames")
    k = np.arange(num_clips, dtype=np.float64)
    return np.minimum(np.floor((k + 0.5) * num_frames / num_clips).astype(np.int64), num_frames - 1)


def clips_around(centres: np.ndarray, num_frames: int, clip_len: int, stride: int = 1) -> np.ndarray:
    """``[len(centres), clip_len]`` indices: ``clip_len`` frames every ``stride``, centred, clamped."""
    offsets = (np.arange(clip_len, dtype=np.int64) - clip_len // 2) * stride
    return np.clip(np.asarray(centres, np.int64)[:, None] + offsets[None, :], 0, num_frames - 1)


def masn_clip_indices(
    num_frames: int, num_clips: int = MASN_NUM_CLIPS, clip_len: int = MASN_CLIP_LEN, stride: int = MASN_STRIDE
) -> np.ndarray:
    """``[num_clips, clip_len]`` frame indices of MASN's motion clips (see module docstring)."""
    return clips_around(masn_frame_indices(num_frames, num_clips), num_frames, clip_len, stride)


def frame_indices(
    video: Path, mode: str, *, seconds: int = 60, num_clips: int = MASN_NUM_CLIPS
) -> np.ndarray | None:
    """The indices a mode takes from ``video`` (``None`` for ``1fps``, which ffmpeg's ``-r 1`` picks)."""
    if mode == "1fps":
        return None
    info = probe(video)
    num_frames = count_frames(video)
    if num_frames == 0:
        raise DecodeError(f"{video}: the video stream has no frames")
    if mode == "fixed60":
        return fixed60_indices(num_frames, info.fps, seconds)
    if mode == "masn":
        return masn_frame_indices(num_frames, num_clips)
    raise ValueError(f"unknown sampling mode {mode!r} (1fps, fixed60, masn)")


def sample_frames(
    video: Path, mode: str, *, seconds: int = 60, num_clips: int = MASN_NUM_CLIPS
) -> np.ndarray:
    """uint8 ``[T, H, W, 3]`` frames of ``video`` at native size for a sampling mode.

    ``1fps``: ffmpeg ``-r 1`` (the originals' ``extract_frames.py``); ``fixed60``: AVST's
    ``seconds`` middle-of-second frames; ``masn``: ``num_clips`` segment centres.
    """
    indices = frame_indices(video, mode, seconds=seconds, num_clips=num_clips)
    if indices is None:
        return read_frames(video, rate=1)
    return read_frames(video, indices=indices)
