"""Which frames each recipe takes, as 0-based frame indices into the decoded stream.

- ``read_fixed60`` / ``fixed60_positions``: AVST's ``feat_script/extract_visual_frames/extract_frames_adaptive.py``:
  the middle of each second, exactly ``seconds`` frames, the last second repeated for short videos.
  The original reads through moviepy 1.x, whose 1-based positions make the frame for second i the
  0-based ``round((i + 0.5) * fps) - 1`` (Python's round, ties to even), e.g. frame 14 at 30 fps;
  its frame-count estimate and end-of-stream behaviour are reproduced too (see ``read_fixed60``;
  checked frame for frame against the original script running on moviepy 1.0.1).
- ``masn_frame_indices`` / ``masn_clip_indices``: our MASN recipe (the authors never stated
  theirs): ``num_clips`` equal segments, the centre frame of each (appearance), and a clip of
  ``clip_len`` frames every ``stride`` frames centred on it (motion), clamped at the ends. A video
  shorter than ``num_clips`` frames repeats frames, so every MASN file has exactly ``num_clips`` rows
  and row t of all four files looks at the same moment.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from engine.cli import only_when, positive_int
from feat_script.decode import DecodeError, VideoInfo, count_frames, probe, read_frames, read_frames_cfr

MASN_NUM_CLIPS = 20
MASN_CLIP_LEN = 16
MASN_STRIDE = 1


def moviepy_fps(info: VideoInfo) -> float:
    """moviepy 1.x's frame rate: ``tbr`` first, snapped to x*1000/1001 for NTSC-like rates."""
    rate = info.tbr
    for x in (23, 24, 25, 30, 50):
        if rate != x and abs(rate - x * 1000.0 / 1001.0) < 0.01:
            return x * 1000.0 / 1001.0
    return rate


def fixed60_positions(num_frames: int, fps: float, seconds: int = 60, per_second: int = 1) -> np.ndarray:
    """1-based frame positions of ``extract_frames_adaptive.py`` for a video of ``num_frames``."""
    if num_frames <= 0 or fps <= 0:
        raise ValueError(f"fixed60: need frames and a frame rate, got {num_frames} frames at {fps} fps")
    last_frames = int(num_frames % fps) or int(fps)
    last_start = num_frames - last_frames
    positions = []
    for i in range(seconds * per_second):
        pos = round((1 / (2 * per_second) + i / per_second) * fps)
        if pos > num_frames:
            pos = last_start + 1 + (pos - last_start - 1) % last_frames
        positions.append(pos)
    return np.asarray(positions, dtype=np.int64)


def fixed60_indices(num_frames: int, fps: float, seconds: int = 60, per_second: int = 1) -> np.ndarray:
    """0-based form of ``fixed60_positions`` for a video whose frame count is known exactly."""
    return np.maximum(fixed60_positions(num_frames, fps, seconds, per_second) - 1, 0)


def read_fixed60(video: Path, seconds: int = 60) -> np.ndarray:
    """AVST's fixed-60 frames of ``video`` exactly as the original picks them through moviepy 1.x.

    moviepy estimates the frame count as ``int(duration * fps) + 1`` (banner duration, its fps),
    which can exceed the real count by one or more; a position past the real end returns the frame
    of the previous position read (moviepy's reader keeps its last good frame; positions are read in
    ascending order, starting from frame 0). Frames are counted in ffmpeg's constant-rate output
    stream, as moviepy reads them.
    """
    info = probe(video)
    fps = moviepy_fps(info)
    positions = fixed60_positions(int(info.duration * fps) + 1, fps, seconds)
    kept, _ = read_frames_cfr(video, {0, *(int(p) - 1 for p in positions)}, info=info)
    last = kept[0] if 0 in kept else None
    by_position = {}
    for pos in sorted(set(positions.tolist())):
        last = kept.get(pos - 1, last)
        by_position[pos] = last
    return np.stack([by_position[p] for p in positions.tolist()])


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


def add_mode_args(parser: argparse.ArgumentParser, rows: str, default: str | None, mode_help: str | None = None,
                  mode_of: Callable[[argparse.Namespace], str] | None = None) -> None:
    """``--sampling {1fps,fixed60,masn}``, ``--seconds`` and ``--num-clips``: the sampling flags of the
    extractors that offer every mode (``rows``: what one row is, for the help). ``mode_of`` gives the mode
    in use from the parsed flags (default: ``--sampling``); ``--seconds`` / ``--num-clips`` are refused
    in the modes they have no effect in."""
    parser.add_argument("--sampling", choices=["1fps", "fixed60", "masn"], default=default, help=mode_help)
    parser.add_argument("--seconds", type=positive_int, default=60, help=f"{rows} per video with fixed60")
    parser.add_argument("--num-clips", type=positive_int, default=MASN_NUM_CLIPS, help=f"{rows} per video with masn")
    mode = mode_of or (lambda args: args.sampling)
    only_when(parser, ["--seconds"], lambda args: mode(args) == "fixed60", "unless the sampling is fixed60")
    only_when(parser, ["--num-clips"], lambda args: mode(args) == "masn", "unless the sampling is masn")


def mode_record(mode: str, seconds: int, num_clips: int) -> dict:
    """The manifest's record of ``add_mode_args``'s flags (only the one of the mode in use counts)."""
    return {"mode": mode, "seconds": seconds if mode == "fixed60" else None,
            "num_clips": num_clips if mode == "masn" else None}


def sample_frames(
    video: Path, mode: str, *, seconds: int = 60, num_clips: int = MASN_NUM_CLIPS
) -> np.ndarray:
    """uint8 ``[T, H, W, 3]`` frames of ``video`` at native size for a sampling mode.

    ``1fps``: ffmpeg ``-r 1`` (the originals' ``extract_frames.py``); ``fixed60``: AVST's
    ``seconds`` middle-of-second frames; ``masn``: ``num_clips`` segment centres.
    """
    if mode == "fixed60":
        return read_fixed60(video, seconds)
    indices = frame_indices(video, mode, seconds=seconds, num_clips=num_clips)
    if indices is None:
        return read_frames(video, rate=1)
    return read_frames(video, indices=indices)
