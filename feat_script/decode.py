"""Video and audio decoding through the ffmpeg binary, straight to raw arrays (no JPEGs).

ffmpeg comes from PATH when present, otherwise from ``imageio-ffmpeg``'s bundled binary. Commands
are built with ``ffmpeg-python`` and run as subprocesses, so decoding happens in whatever process
calls these functions (the pipeline calls them in its DataLoader workers). ``ffprobe`` is not
needed: stream facts are parsed from ``ffmpeg -i``'s banner, as moviepy does.

Frame indices are 0-based positions in decode order with timestamps passed through
(``-fps_mode passthrough``), so variable-frame-rate videos are indexed by their real frames.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ffmpeg
import numpy as np

from engine.errors import UserError


class DecodeError(UserError, RuntimeError):
    """A video (or its audio) could not be decoded; the message says why."""


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """The ffmpeg binary: PATH first, then imageio-ffmpeg's bundled one."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError as err:
        raise RuntimeError(
            "no ffmpeg on PATH and imageio-ffmpeg is not installed (pip install imageio-ffmpeg)"
        ) from err
    return imageio_ffmpeg.get_ffmpeg_exe()


@functools.lru_cache(maxsize=1)
def ffmpeg_version() -> str:
    out = subprocess.run([ffmpeg_exe(), "-version"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else "unknown"


@dataclass(frozen=True)
class VideoInfo:
    """Facts from ffmpeg's banner. ``fps`` is the stream's ``fps`` figure (else ``tbr``), ``tbr`` its
    ``tbr`` figure (else ``fps``): moviepy 1.x, which AVST's frame sampler used, trusts ``tbr`` first."""

    width: int
    height: int
    fps: float
    tbr: float
    duration: float
    has_audio: bool
    audio_rate: int | None
    audio_channels: int | None


_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_VIDEO = re.compile(r"Stream #\S+.*?: Video: .*?, (\d+)x(\d+)")
_FPS = re.compile(r"([\d.]+)(k?) fps")
_TBR = re.compile(r"([\d.]+)(k?) tbr")
_AUDIO = re.compile(r"Stream #\S+.*?: Audio: .*?, (\d+) Hz, ([^,]+)")
_LAYOUT_CHANNELS = {"mono": 1, "stereo": 2, "2.1": 3, "quad": 4, "5.0": 5, "5.1": 6, "6.1": 7, "7.1": 8}


def _tail(text: str, lines: int = 3) -> str:
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(kept[-lines:]) or "no output"


KNOWN_FILES = 64  # probe / count_frames results remembered per file (see _remembered)
_known: OrderedDict[tuple, dict] = OrderedDict()
_known_lock = threading.Lock()  # the web demo probes uploads in one thread and decodes in another


def _remembered(path: Path) -> dict:
    """What ``probe`` and ``count_frames`` learnt about this very file: keyed by path, inode, size and
    modification time, so a later call on an unchanged file starts no ffmpeg process (a pipeline asks
    the same facts of one video from several places) and a changed file is asked afresh."""
    if not path.is_file():
        raise DecodeError(f"{path}: no such file")
    st = path.stat()
    if st.st_size == 0:
        raise DecodeError(f"{path}: empty file (0 bytes)")
    key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    with _known_lock:
        facts = _known.setdefault(key, {})
        _known.move_to_end(key)
        while len(_known) > KNOWN_FILES:
            _known.popitem(last=False)
    return facts


def probe(path: str | Path) -> VideoInfo:
    """Read the stream facts of ``path``; raise DecodeError if it has no decodable video stream."""
    path = Path(path)
    facts = _remembered(path)
    if "info" not in facts:
        banner = subprocess.run(
            [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True, text=True
        ).stderr
        facts["info"] = _parse_banner(path, banner)
    return facts["info"]


def _parse_banner(path: Path, banner: str) -> VideoInfo:
    """The input's stream facts from ffmpeg's stderr (the part before any output section)."""
    banner = banner.split("\nOutput #0")[0]
    video = _VIDEO.search(banner)
    if video is None:
        raise DecodeError(f"{path}: no video stream ({_tail(banner)})")
    line = banner[video.start() :].splitlines()[0]
    rates = {}
    for name, pattern in (("fps", _FPS), ("tbr", _TBR)):
        found = pattern.search(line)
        rates[name] = float(found.group(1)) * (1000 if found.group(2) else 1) if found else 0.0
    fps = rates["fps"] or rates["tbr"]
    if fps <= 0:
        raise DecodeError(f"{path}: no frame rate in the video stream ({line.strip()})")
    dur = _DURATION.search(banner)
    duration = int(dur.group(1)) * 3600 + int(dur.group(2)) * 60 + float(dur.group(3)) if dur else 0.0
    audio = _AUDIO.search(banner)
    channels = None
    if audio:
        layout = audio.group(2).strip()
        channels = _LAYOUT_CHANNELS.get(layout.split("(")[0].strip())
        if channels is None:
            match = re.match(r"(\d+) channels", layout)
            channels = int(match.group(1)) if match else None
    return VideoInfo(
        width=int(video.group(1)),
        height=int(video.group(2)),
        fps=fps,
        tbr=rates["tbr"] or fps,
        duration=duration,
        has_audio=audio is not None,
        audio_rate=int(audio.group(1)) if audio else None,
        audio_channels=channels,
    )


def count_frames(path: str | Path) -> int:
    """Number of video frames, counted by remuxing the stream to null (no decoding); the same run's
    banner answers a later ``probe`` of the file."""
    path = Path(path)
    facts = _remembered(path)
    if "frames" in facts:
        return facts["frames"]
    proc = subprocess.run(
        [
            ffmpeg_exe(),
            "-hide_banner",
            "-nostdin",
            "-i",
            str(path),
            "-map",
            "0:v:0",
            "-c",
            "copy",
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        text=True,
    )
    facts["info"] = _parse_banner(path, proc.stderr)
    counts = re.findall(r"frame=\s*(\d+)", proc.stderr)
    if proc.returncode != 0 or not counts:
        raise DecodeError(f"{path}: cannot count frames ({_tail(proc.stderr)})")
    facts["frames"] = int(counts[-1])
    return facts["frames"]


def _run_raw(stream: ffmpeg.nodes.OutputStream, path: Path) -> bytes:
    cmd = stream.global_args("-hide_banner", "-nostdin", "-loglevel", "error").compile(cmd=ffmpeg_exe())
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        raise DecodeError(f"{path}: ffmpeg failed ({_tail(proc.stderr.decode(errors='replace'))})")
    return proc.stdout


def stream_raw(stream: ffmpeg.nodes.OutputStream, path: Path, unit: int, units: int = 1) -> Iterator[bytes]:
    """Run ffmpeg and yield its output ``units * unit`` bytes at a time (the last block may be shorter,
    always a multiple of ``unit``): memory holds one block whatever the input's length. Closing the
    generator early stops ffmpeg; a failure of ffmpeg is a DecodeError once its output ends."""
    cmd = stream.global_args("-hide_banner", "-nostdin", "-loglevel", "error").compile(cmd=ffmpeg_exe())
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors)
        try:
            while True:
                block = proc.stdout.read(unit * units)
                usable = len(block) - len(block) % unit
                if usable:
                    yield block[:usable]
                if len(block) < unit * units:
                    break
            if proc.wait() != 0:
                errors.seek(0)
                raise DecodeError(f"{path}: ffmpeg failed ({_tail(errors.read().decode(errors='replace'))})")
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()
            proc.wait()


def stream_frames(path: str | Path, *, rate: float, info: VideoInfo | None = None,
                  block: int = 16) -> Iterator[np.ndarray]:
    """``read_frames(path, rate=rate)`` in blocks of up to ``block`` frames ``[b, H, W, 3]``, decoded as
    they are consumed (the same ffmpeg command, so the same frames)."""
    path = Path(path)
    info = info or probe(path)
    stream = ffmpeg.input(str(path))["v:0"].output("pipe:", format="rawvideo", pix_fmt="rgb24", r=rate)
    frame_bytes = info.width * info.height * 3
    count = 0
    for raw in stream_raw(stream, path, frame_bytes, block):
        frames = np.frombuffer(raw, np.uint8).reshape(-1, info.height, info.width, 3)
        count += len(frames)
        yield frames
    if count == 0:
        raise DecodeError(f"{path}: no frame could be decoded")


def stream_audio(path: str | Path, *, rate: int, channels: int, block: int = 1 << 16) -> Iterator[np.ndarray]:
    """``read_audio(path, rate=rate, channels=channels)`` as int16 ``[b, channels]`` blocks of up to
    ``block`` samples, decoded as they are consumed."""
    path = Path(path)
    stream = ffmpeg.input(str(path))["a:0"].output("pipe:", format="s16le", acodec="pcm_s16le", ac=channels, ar=rate)
    for raw in stream_raw(stream, path, 2 * channels, block):
        yield np.frombuffer(raw, np.int16).reshape(-1, channels)


SELECT_MAX_RUNS = 256  # longer ``select`` expressions: frames picked in Python (see stream_frames_at)


def _runs(unique: np.ndarray) -> list[tuple[int, int]]:
    """Sorted unique indices as runs ``(first, last)`` of consecutive ones."""
    breaks = np.flatnonzero(np.diff(unique) != 1) + 1
    return [(int(r[0]), int(r[-1])) for r in np.split(unique, breaks)]


def _select_expr(unique: np.ndarray) -> str:
    """``select`` expression for sorted unique indices, runs of consecutive ones as one ``between``."""
    return "+".join(f"eq(n,{a})" if a == b else f"between(n,{a},{b})" for a, b in _runs(unique))


def _missing_frames(path: Path, unique: np.ndarray, got: int) -> DecodeError:
    return DecodeError(f"{path}: asked for {len(unique)} distinct frames (up to index {unique[-1]}), got {got}")


def stream_frames_at(
    path: str | Path, unique: np.ndarray, *, info: VideoInfo | None = None, block: int = 16
) -> Iterator[np.ndarray]:
    """The frames at sorted unique 0-based ``unique`` indices, in blocks of up to ``block``, decoded as
    they are consumed: ``read_frames(path, indices=unique)`` with memory for one block.

    Up to ``SELECT_MAX_RUNS`` runs of consecutive indices, ffmpeg's ``select`` drops the other frames
    (``read_frames``'s command); more runs (e.g. a clip around every second of a long video) would
    make the expression too long for a command line and slow to evaluate on every frame, so every
    frame leaves ffmpeg in decode order (timestamps passed through: the same numbering as ``select``'s
    ``n``) and the wanted ones are kept here. Decoding stops after the last wanted frame."""
    path = Path(path)
    info = info or probe(path)
    unique = np.asarray(unique, np.int64)
    if unique.size == 0:
        return
    few = len(_runs(unique)) <= SELECT_MAX_RUNS
    source = ffmpeg.input(str(path))["v:0"]
    if few:
        source = source.filter("select", _select_expr(unique))
    stream = source.output("pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough")
    frame_bytes = info.width * info.height * 3
    decoded = got = 0  # frames out of ffmpeg, wanted frames yielded
    raw_blocks = stream_raw(stream, path, frame_bytes, block)
    try:
        for raw in raw_blocks:
            frames = np.frombuffer(raw, np.uint8).reshape(-1, info.height, info.width, 3)
            if not few:
                at = np.arange(decoded, decoded + len(frames))
                decoded += len(frames)
                frames = frames[at[np.isin(at, unique[got:got + len(frames)])] - at[0]]
            got += len(frames)
            if len(frames):
                yield frames
            if got == len(unique):
                break
    finally:
        raw_blocks.close()
    if got != len(unique):
        raise _missing_frames(path, unique, got)


def read_frames(
    path: str | Path,
    *,
    indices: np.ndarray | list[int] | None = None,
    rate: float | None = None,
    size: tuple[int, int] | None = None,
    info: VideoInfo | None = None,
) -> np.ndarray:
    """Decode RGB frames as uint8 ``[T, H, W, 3]``.

    - ``indices``: 0-based frame positions (any order, repeats allowed); only those frames leave
      ffmpeg (a ``select`` filter), which stops decoding after the last; the result follows the given
      order.
    - ``rate``: resample to a constant rate with the output option ``-r`` (``-r 1`` is the
      originals' 1-fps extraction). Exclusive with ``indices``.
    - neither: every frame, timestamps passed through.
    ``size=(width, height)`` scales in ffmpeg (bilinear); leave it None to resize in Python.
    """
    path = Path(path)
    if indices is not None and rate is not None:
        raise ValueError("read_frames: give indices or rate, not both")
    info = info or probe(path)
    width, height = size or (info.width, info.height)
    stream = ffmpeg.input(str(path))["v:0"]
    out_args: dict = {"format": "rawvideo", "pix_fmt": "rgb24"}
    wanted = None
    if indices is not None:
        wanted = np.asarray(indices, dtype=np.int64)
        if wanted.size == 0:
            return np.zeros((0, height, width, 3), np.uint8)
        unique = np.unique(wanted)
        stream = stream.filter("select", _select_expr(unique))
        out_args.update({"fps_mode": "passthrough", "frames:v": len(unique)})  # ffmpeg stops after the last
    elif rate is not None:
        out_args["r"] = rate
    else:
        out_args["fps_mode"] = "passthrough"
    if size is not None:
        stream = stream.filter("scale", width, height, flags="bilinear")
    raw = _run_raw(stream.output("pipe:", **out_args), path)
    frame_bytes = width * height * 3
    if len(raw) % frame_bytes:
        raise DecodeError(f"{path}: truncated frame data ({len(raw)} bytes for {width}x{height} frames)")
    frames = np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)
    if len(frames) == 0:
        raise DecodeError(f"{path}: no frame could be decoded")
    if wanted is None:
        return frames
    if len(frames) != len(unique):
        raise _missing_frames(path, unique, len(frames))
    return frames[np.searchsorted(unique, wanted)]


def _read_exactly(stream, view: memoryview) -> int:
    """Fill ``view`` from ``stream`` (a pipe returns what it has); the bytes read, short only at the end."""
    got = 0
    while got < len(view):
        n = stream.readinto(view[got:])
        if not n:
            break
        got += n
    return got


ON_SLOT = 0.01  # of a frame period: how far a timestamp may sit from its constant-rate slot
RATE_MATCH = 1e-3  # relative: the frames' spacing against the banner's tbr (printed to 2 decimals)


def _on_slot_expr(unique: np.ndarray, tbr: float) -> str:
    """``select`` expression: the frames at ``unique`` as long as every frame so far sits on its slot of
    a constant rate: frame n at ``n * P`` within ``ON_SLOT * P``, where the period P is frame 1's time
    and ``1 / P`` is the banner's ``tbr`` (the rate of ffmpeg's constant-rate output) within
    ``RATE_MATCH`` (a video starting late shows there: its frame 1 comes later than one period). From
    the first frame off its slot on (a NaN time counts as off), none: ``st`` / ``ld`` keep the period
    (variable 2) and the flag (variable 1) from frame to frame."""
    on_slot = f"lt(abs(t-n*ld(2)),{ON_SLOT}*ld(2))*lt(abs(ld(2)*{tbr!r}-1),{RATE_MATCH})"
    return f"st(2,if(eq(n,1),t,ld(2)));if(eq(n,0)+{on_slot},0,st(1,1));not(ld(1))*({_select_expr(unique)})"


def _read_on_slot(path: Path, unique: np.ndarray, info: VideoInfo) -> np.ndarray | None:
    """The frames at sorted unique ``unique`` when every frame up to the last of them sits on its
    constant-rate slot, else None. There ffmpeg's constant-rate output is the decoded stream itself, frame
    for frame (no frame is doubled or dropped), so only the wanted frames need converting to RGB and
    crossing the pipe; ffmpeg stops after the last."""
    stream = (ffmpeg.input(str(path))["v:0"].filter("select", _on_slot_expr(unique, info.tbr))
              .output("pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough",
                      **{"frames:v": len(unique)}))
    raw = _run_raw(stream, path)
    frame_bytes = info.width * info.height * 3
    if len(raw) != len(unique) * frame_bytes:
        return None
    return np.frombuffer(raw, np.uint8).reshape(-1, info.height, info.width, 3)


def read_frames_cfr(
    path: str | Path, keep: set[int] | list[int], *, info: VideoInfo | None = None
) -> tuple[dict[int, np.ndarray], int]:
    """The 0-based ``keep`` frames as moviepy's reader sees them: ffmpeg's default constant-frame-rate
    output, so a variable-rate video is resampled to its nominal rate.

    Returns ``({index: frame}, number of frames decoded)``; memory holds only the kept frames. When the
    kept frames lie at least a frame before the banner's end (where a short video's positions past the
    end are decided), a stream whose frames sit on their constant-rate slots is decoded once with only
    the kept frames converted (``_read_on_slot``); any other is streamed whole.
    """
    path = Path(path)
    info = info or probe(path)
    wanted = set(int(i) for i in keep)
    unique = np.asarray(sorted(wanted), np.int64)
    if unique.size and unique[0] >= 0 and unique[-1] < info.duration * info.tbr - 1:
        frames = _read_on_slot(path, unique, info)
        if frames is not None:
            return dict(zip(unique.tolist(), frames)), int(unique[-1]) + 1
    return _stream_cfr(path, wanted, info)


def _stream_cfr(path: Path, wanted: set[int], info: VideoInfo) -> tuple[dict[int, np.ndarray], int]:
    """``read_frames_cfr`` by streaming every frame of the constant-rate output and keeping the wanted."""
    cmd = (
        ffmpeg.input(str(path))["v:0"]
        .output("pipe:", format="rawvideo", pix_fmt="rgb24")
        .global_args("-hide_banner", "-nostdin", "-loglevel", "error")
        .compile(cmd=ffmpeg_exe())
    )
    frame_bytes = info.width * info.height * 3
    kept: dict[int, np.ndarray] = {}
    count = 0
    buffer = np.empty((info.height, info.width, 3), np.uint8)  # every frame lands here; kept ones are copied
    view = memoryview(buffer).cast("B")
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        last = max(wanted, default=-1)
        while True:
            if _read_exactly(proc.stdout, view) < frame_bytes:
                break
            if count in wanted:
                kept[count] = buffer.copy()
            count += 1
            if count > last and count > 0 and last >= 0 and len(kept) == len(wanted):
                proc.kill()
                break
        err = proc.stderr.read().decode(errors="replace")
    if count == 0:
        raise DecodeError(f"{path}: no frame could be decoded ({_tail(err)})")
    return kept, count


def read_audio(path: str | Path, *, rate: int = 16000, channels: int | None = None) -> np.ndarray:
    """Decode the first audio track as int16 ``[samples, channels]`` resampled by ffmpeg to ``rate``.

    ``channels=None`` keeps the source's channel count. A file without audio raises DecodeError.
    """
    path = Path(path)
    info = probe(path)
    if not info.has_audio:
        raise DecodeError(f"{path}: no audio track")
    channels = channels or info.audio_channels or 2
    return np.concatenate([np.zeros((0, channels), np.int16), *stream_audio(path, rate=rate, channels=channels)])
