"""16 kHz 16-bit WAV per video, sample for sample what AVST's ``extract_audio.py`` wrote with moviepy.

moviepy (1.x and 2.x) decodes the track with ffmpeg at 44.1 kHz stereo, takes the nearest sample
``round(44100 * k / 16000)`` for output sample k (no low-pass filter), clips to +-0.99 and scales
by 32768. ``load_audio_16k`` repeats that arithmetic in memory (tests check it bit-exact against
moviepy's ``write_audiofile``); ``--backend moviepy`` calls moviepy itself. The output is always
stereo, as moviepy's, whatever the source (mono, 44.1 kHz, 48 kHz...). A video without an audio
track is a failure (listed), not a crash. Output: ``<out>/<video_id>.wav``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import tempfile
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from engine.cli import Bounded
from feat_script.base import Extractor, ExtractorConfig, main
from feat_script.decode import DecodeError, probe, stream_audio
from feat_script.stores import WavStore
from feat_script.streams import RowStream, is_long

MOVIEPY_READ_RATE = 44100


def iter_audio_16k(video: str | Path, rate: int = 16000, block: int = 1 << 16) -> Iterator[np.ndarray]:
    """The audio track as moviepy's ``write_audiofile(fps=rate)`` writes it, int16 ``[b, 2]`` blocks of
    up to ``block`` samples, decoded as they are consumed (memory holds one block of each rate).

    Output sample k is source sample ``round(44100 * k / rate)`` (0 past the source's end), over
    ``int(rate * duration)`` samples: per sample the same float64 arithmetic as moviepy's whole-array
    code, so the samples are identical. Stop iterating to stop decoding."""
    info = probe(video)
    if not info.has_audio:
        raise DecodeError(f"{video}: no audio track")
    n = int(rate * info.duration)
    source = stream_audio(video, rate=MOVIEPY_READ_RATE, channels=2)
    held, start, total = np.zeros((0, 2), np.int16), 0, None  # held = source[start:start + len(held)]
    try:
        for k0 in range(0, n, block):
            t = (1.0 / rate) * np.arange(k0, min(n, k0 + block))
            idx = np.round(MOVIEPY_READ_RATE * t).astype(np.int64)
            while total is None and start + len(held) <= idx[-1]:
                more = next(source, None)
                if more is None:
                    total = start + len(held)
                else:
                    held = np.concatenate([held, more])
            inside = (t < info.duration) & (idx < (start + len(held) if total is None else total))
            out = np.zeros((len(t), 2), np.float64)
            out[inside] = held[idx[inside] - start] / 32768
            yield (32768 * np.clip(out, -0.99, 0.99)).astype(np.int16)
            drop = min(int(idx[-1]) - start, len(held))
            held, start = held[drop:], start + drop
    finally:
        source.close()


def load_audio_16k(video: str | Path, rate: int = 16000) -> np.ndarray:
    """The whole track of ``iter_audio_16k`` as one int16 ``[n, 2]`` array."""
    return np.concatenate([np.zeros((0, 2), np.int16), *iter_audio_16k(video, rate)])


def first_seconds_16k(video: str | Path, seconds: int, rate: int = 16000) -> np.ndarray:
    """The first ``seconds`` of ``load_audio_16k`` (fewer when shorter); decoding stops there."""
    blocks, count = [np.zeros((0, 2), np.int16)], 0
    stream = iter_audio_16k(video, rate)
    try:
        for block in stream:
            blocks.append(block[: seconds * rate - count])
            count += len(blocks[-1])
            if count >= seconds * rate:
                break
    finally:
        stream.close()
    return np.concatenate(blocks)


def iter_audio_moviepy(video: str | Path, rate: int = 16000, block: int = 1 << 16) -> Iterator[np.ndarray]:
    """Let moviepy write the WAV (to a temporary file; moviepy writes it chunk by chunk) and read it
    back as int16 ``[b, channels]`` blocks of up to ``block`` samples: memory holds one block."""
    from moviepy import VideoFileClip

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "audio.wav"
        with VideoFileClip(str(video)) as clip:
            if clip.audio is None:
                raise DecodeError(f"{video}: no audio track")
            clip.audio.write_audiofile(str(wav), fps=rate, logger=None)
        with wave.open(str(wav)) as w:
            while data := w.readframes(block):
                yield np.frombuffer(data, "<i2").reshape(-1, w.getnchannels())


def load_audio_moviepy(video: str | Path, rate: int = 16000) -> np.ndarray:
    """The whole track of ``iter_audio_moviepy`` as one int16 ``[n, channels]`` array."""
    blocks = list(iter_audio_moviepy(video, rate))
    return np.concatenate(blocks) if blocks else np.zeros((0, 2), np.int16)


@dataclasses.dataclass
class AudioConfig(ExtractorConfig):
    rate: int = 16000
    backend: str = "memory"  # memory: moviepy's arithmetic in numpy; moviepy: moviepy itself


class Audio(Extractor):
    Config = AudioConfig
    name = "audio"
    description = __doc__
    stores = ("wav",)
    default_store = "wav"
    output_dtype = "int16 (WAV)"
    batched_input = "audio"

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--rate", type=Bounded(int, 1, MOVIEPY_READ_RATE), default=16000,
                            help=f"output sample rate (Hz), at most the {MOVIEPY_READ_RATE} Hz the track is read at")
        parser.add_argument(
            "--backend",
            choices=["memory", "moviepy"],
            default="memory",
            help="memory: moviepy's arithmetic in numpy (fast); moviepy: moviepy itself",
        )

    def sampling(self) -> dict:
        return {
            "rate": self.config.rate,
            "channels": 2,
            "backend": self.config.backend,
            "method": "moviepy: ffmpeg 44.1 kHz stereo, nearest sample, clip +-0.99",
        }

    def load(self, video: Path) -> dict[str, np.ndarray | RowStream]:
        if is_long(video):
            if not probe(video).has_audio:
                raise DecodeError(f"{video}: no audio track")
            blocks = iter_audio_16k if self.config.backend == "memory" else iter_audio_moviepy
            return {"audio": RowStream(functools.partial(blocks, video, self.config.rate))}
        loader = load_audio_16k if self.config.backend == "memory" else load_audio_moviepy
        audio = loader(video, self.config.rate)
        if len(audio) == 0:
            raise DecodeError(f"{video}: the audio track is empty")
        return {"audio": audio}

    def make_store(self, out: Path, kind: str) -> WavStore:
        return WavStore(out, rate=self.config.rate)


if __name__ == "__main__":
    raise SystemExit(main(Audio))
