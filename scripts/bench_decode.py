"""AVST's fixed-60 frames: one decode keeping the frames taken, against streaming every frame.

Where a video's frames sit on their constant-rate slots, ``decode.read_frames_cfr`` has ffmpeg's
``select`` keep the frames taken, so only they are converted to RGB and piped; the reference streams
every frame of ffmpeg's constant-rate output and keeps the wanted ones in Python, as moviepy's reader
(which the original used) does: the route every other video takes. Both read the same videos in one
run; the frames are checked equal. Prints seconds per video of each route and the ratio.

    python scripts/bench_decode.py                         # 3 generated videos of 60 s, 640x480, 25 fps
    python scripts/bench_decode.py --videos 1 --seconds 8 --size 160x120
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from engine.cli import CommandParser, positive_int
from feat_script import decode
from feat_script.recipes import AVST_SECONDS
from feat_script.sampling import fixed60_positions, moviepy_fps
from feat_script.synthetic_video import make_pattern_video


def wanted(video: Path) -> set[int]:
    """The 0-based frames ``sampling.read_fixed60`` asks for."""
    info = decode.probe(video)
    fps = moviepy_fps(info)
    return {0, *(int(p) - 1 for p in fixed60_positions(int(info.duration * fps) + 1, fps, AVST_SECONDS))}


def timed(route, video: Path, keep: set[int]) -> tuple[float, dict[int, np.ndarray]]:
    start = time.perf_counter()
    frames = route(video, keep)
    return time.perf_counter() - start, frames


def main() -> int:
    p = CommandParser(description=__doc__)
    p.add_argument("--videos", type=positive_int, default=3, help="how many videos")
    p.add_argument("--seconds", type=positive_int, default=60, help="length of each video")
    p.add_argument("--size", default="640x480", help="WIDTHxHEIGHT")
    args = p.parse_args()
    routes = {"one decode": lambda v, keep: decode.read_frames_cfr(v, keep)[0],
              "every frame": lambda v, keep: decode._stream_cfr(v, keep, decode.probe(v))[0]}
    seconds: dict[str, list[float]] = {name: [] for name in routes}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.videos):
            video = make_pattern_video(Path(tmp) / f"v{i}.mp4", size=args.size, seconds=args.seconds, audio=None,
                                       pattern="testsrc2", pix_fmt="yuv420p")
            keep = wanted(video)
            got = {name: timed(route, video, keep) for name, route in routes.items()}
            for name, (s, _) in got.items():
                seconds[name].append(s)
            (_, ours), (_, ref) = got.values()
            if sorted(ours) != sorted(ref) or any(not np.array_equal(ours[k], ref[k]) for k in ref):
                raise SystemExit(f"{video.name}: the two routes gave different frames")
    one, every = (statistics.median(seconds[name]) for name in routes)
    print(f"{args.videos} videos of {args.seconds} s at {args.size}, {len(keep)} frames kept of each: "
          f"one decode {one:.3f} s, every frame {every:.3f} s per video (medians); {every / one:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
