"""Short synthetic videos made by ffmpeg's lavfi sources: coloured squares moving over a dark
background, each with its own tone, so counts, positions and sounds are visible and audible.

For tests and the raw-video demo: any format the pipeline reads (mp4 with or without audio, GIF).
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from feat_script.decode import ffmpeg_exe


@dataclass(frozen=True)
class Shape:
    colour: str  # an ffmpeg colour name
    tone_hz: int  # a sine tone mixed into the audio track
    y: int  # vertical position (pixels); the square moves left to right
    speed: int  # pixels per second


def make_video(path: str | Path, shapes: list[Shape], *, seconds: float = 3.0, size: tuple[int, int] = (160, 120),
               fps: int = 10, audio: bool = True, box: int = 24) -> Path:
    """Write ``path`` (mp4 with AAC audio when ``audio``; ``.gif`` has none) and return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    inputs = ["-f", "lavfi", "-i", f"color=c=0x202020:s={width}x{height}:r={fps}:d={seconds}"]
    for s in shapes:
        inputs += ["-f", "lavfi", "-i", f"color=c={s.colour}:s={box}x{box}:r={fps}:d={seconds}"]
    chain, last = [], "0:v"
    for i, s in enumerate(shapes, start=1):
        chain.append(f"[{last}][{i}:v]overlay=x='mod(t*{s.speed},{width - box})':y={s.y}[v{i}]")
        last = f"v{i}"
    gif = path.suffix.lower() == ".gif"
    if gif:
        chain.append(f"[{last}]split[a0][b0];[a0]palettegen[p];[b0][p]paletteuse[vout]")
    else:
        chain.append(f"[{last}]format=yuv420p[vout]")
    outputs = ["-map", "[vout]"]
    if audio and not gif and shapes:
        n = len(shapes)
        for s in shapes:
            inputs += ["-f", "lavfi", "-i", f"sine=frequency={s.tone_hz}:sample_rate=44100:duration={seconds}"]
        tones = "".join(f"[{n + 1 + i}:a]" for i in range(n))
        chain.append(f"{tones}amix=inputs={n}[aout]")
        outputs += ["-map", "[aout]", "-c:a", "aac", "-ac", "2"]
    if not gif:
        outputs += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *inputs,
           "-filter_complex", ";".join(chain), *outputs, "-t", str(seconds), str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg could not make {path}: {proc.stderr.strip()[-500:]}")
    return path
