"""Short synthetic videos made by ffmpeg's lavfi sources at run time (nothing is stored), the one
generator of the tests, demos and benches.

- :func:`make_video`: coloured squares moving over a dark background, each with its own tone, so
  counts, positions and sounds are visible and audible (the raw-video demo, the answer path);
- :func:`make_pattern_video` and :func:`make_gif`: ffmpeg's ``testsrc`` pattern (``testsrc2`` on
  request) with a sine tone, in any container and sample layout the pipeline reads; :func:`make_vfr`
  (variable frame rate), :func:`make_corrupt` (a truncated file) and :func:`make_set` (the mixed set
  the extractor tests run on).
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
    return _ffmpeg(path, *inputs, "-filter_complex", ";".join(chain), *outputs, "-t", str(seconds))


def _ffmpeg(path: Path, *args: str) -> Path:
    """Run ffmpeg with ``args`` writing ``path``; its error output in the exception when it fails."""
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args, str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg could not make {path}: {proc.stderr.strip()[-500:]}")
    return path


def _x264(pix_fmt: str = "yuv444p") -> list[str]:
    return ["-c:v", "libx264", "-pix_fmt", pix_fmt, "-preset", "ultrafast"]


def make_pattern_video(path: str | Path, *, size: str = "64x48", rate: int = 25, seconds: float = 2,
                       audio: str | None = "stereo44k", vcodec: str = "libx264", pattern: str = "testsrc",
                       pix_fmt: str = "yuv444p") -> Path:
    """A ``pattern`` (lavfi ``testsrc`` or ``testsrc2``) video; ``audio``: None, ``"stereo44k"`` (44.1 kHz
    stereo) or ``"mono22k"``, a 440 Hz sine (Vorbis in .webm, AAC otherwise). ``pix_fmt`` is x264's."""
    path = Path(path)
    args = ["-f", "lavfi", "-i", f"{pattern}=size={size}:rate={rate}:duration={seconds}"]
    if audio:
        sr = {"stereo44k": 44100, "mono22k": 22050}[audio]
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={sr}:duration={seconds}"]
        args += ["-ac", "2" if audio == "stereo44k" else "1"]
        args += ["-c:a", "libvorbis" if path.suffix == ".webm" else "aac"]
    args += _x264(pix_fmt) if vcodec == "libx264" else ["-c:v", vcodec]
    return _ffmpeg(path, *args)


def make_gif(path: str | Path, *, size: str = "64x48", rate: int = 10, seconds: float = 2) -> Path:
    """A ``testsrc`` GIF (no audio)."""
    return _ffmpeg(Path(path), "-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}:duration={seconds}")


def make_vfr(path: str | Path, *, seconds: int = 3) -> Path:
    """30 frames in the first second, then one frame every 2/30 s (variable frame rate)."""
    pts = "if(lt(N,30),N/(30*TB),(30+(N-30)*2)/(30*TB))"
    return _ffmpeg(Path(path), "-f", "lavfi", "-i", f"testsrc=size=64x48:rate=30:duration={seconds},setpts='{pts}'",
                   "-fps_mode", "vfr", *_x264())


def make_corrupt(path: str | Path, source: Path) -> Path:
    """The first 2000 bytes of ``source``: a file that starts like a video and breaks off."""
    path = Path(path)
    path.write_bytes(Path(source).read_bytes()[:2000])
    return path


def make_set(folder: Path) -> dict[str, Path]:
    """The standard mixed set: mp4 (odd size, 44.1 kHz stereo), webm, mkv (mono), gif, vfr, broken, empty."""
    folder.mkdir(parents=True, exist_ok=True)
    vids = {
        "odd": make_pattern_video(folder / "odd.mp4", size="97x61", seconds=3),
        "web": make_pattern_video(folder / "web.webm", vcodec="libvpx", audio=None),
        "mono": make_pattern_video(folder / "mono.mkv", audio="mono22k"),
        "anim": make_gif(folder / "anim.gif"),
        "vfr": make_vfr(folder / "vfr.mp4"),
    }
    vids["corrupt"] = make_corrupt(folder / "corrupt.mp4", vids["odd"])
    vids["empty"] = folder / "empty.mp4"
    vids["empty"].write_bytes(b"")
    return vids
