"""Tiny test videos made by ffmpeg's lavfi sources (testsrc, sine) at test time; nothing is stored."""

from __future__ import annotations

import subprocess
from pathlib import Path

from feat_script.decode import ffmpeg_exe


def _ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *args], check=True)


def make_video(
    path: Path,
    *,
    size: str = "64x48",
    rate: int = 25,
    seconds: float = 2,
    audio: str | None = "stereo44k",
    vcodec: str = "libx264",
) -> Path:
    """testsrc video; ``audio`` = None, ``"stereo44k"`` (44.1 kHz stereo) or ``"mono22k"``."""
    args = ["-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}:duration={seconds}"]
    if audio:
        sr = {"stereo44k": 44100, "mono22k": 22050}[audio]
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={sr}:duration={seconds}"]
        args += ["-ac", "2" if audio == "stereo44k" else "1"]
        args += ["-c:a", "libvorbis" if path.suffix == ".webm" else "aac"]
    if vcodec == "libx264":
        args += ["-c:v", "libx264", "-pix_fmt", "yuv444p", "-preset", "ultrafast"]
    else:
        args += ["-c:v", vcodec]
    _ffmpeg(*args, str(path))
    return path


def make_gif(path: Path, *, size: str = "64x48", rate: int = 10, seconds: float = 2) -> Path:
    _ffmpeg("-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}:duration={seconds}", str(path))
    return path


def make_vfr(path: Path, *, seconds: int = 3) -> Path:
    """30 frames in the first second, then one frame every 2/30 s (variable frame rate)."""
    pts = "if(lt(N,30),N/(30*TB),(30+(N-30)*2)/(30*TB))"
    _ffmpeg(
        "-f",
        "lavfi",
        "-i",
        f"testsrc=size=64x48:rate=30:duration={seconds},setpts='{pts}'",
        "-fps_mode",
        "vfr",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv444p",
        "-preset",
        "ultrafast",
        str(path),
    )
    return path


def make_corrupt(path: Path, source: Path) -> Path:
    path.write_bytes(source.read_bytes()[:2000])
    return path


def make_set(folder: Path) -> dict[str, Path]:
    """The standard mixed set: mp4 (odd size, 44.1 kHz stereo), webm, mkv (mono), gif, vfr, broken."""
    folder.mkdir(parents=True, exist_ok=True)
    vids = {
        "odd": make_video(folder / "odd.mp4", size="97x61", seconds=3),
        "web": make_video(folder / "web.webm", vcodec="libvpx", audio=None),
        "mono": make_video(folder / "mono.mkv", audio="mono22k"),
        "anim": make_gif(folder / "anim.gif"),
        "vfr": make_vfr(folder / "vfr.mp4"),
    }
    vids["corrupt"] = make_corrupt(folder / "corrupt.mp4", vids["odd"])
    vids["empty"] = folder / "empty.mp4"
    vids["empty"].write_bytes(b"")
    return vids
