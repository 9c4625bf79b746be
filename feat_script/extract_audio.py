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
import tempfile
import wave
from pathlib import Path

import numpy as np

from feat_script.base import Extractor, main
from feat_script.decode import DecodeError, probe, read_audio
from feat_script.stores import WavStore

MOVIEPY_READ_RATE = 44100


def load_audio_16k(video: str | Path, rate: int = 16000) -> np.ndarray:
    """The audio track as moviepy's ``write_audiofile(fps=rate)`` writes it: int16 ``[n, 2]``."""
    info = probe(video)
    if not info.has_audio:
        raise DecodeError(f"{video}: no audio track")
    source = read_audio(video, rate=MOVIEPY_READ_RATE, channels=2)
    n = int(rate * info.duration)
    t = (1.0 / rate) * np.arange(n)
    idx = np.round(MOVIEPY_READ_RATE * t).astype(np.int64)
    inside = (t < info.duration) & (idx < len(source))
    out = np.zeros((n, 2), np.float64)
    out[inside] = source[idx[inside]] / 32768
    return (32768 * np.clip(out, -0.99, 0.99)).astype(np.int16)


def load_audio_moviepy(video: str | Path, rate: int = 16000) -> np.ndarray:
    """Let moviepy write the WAV (to a temporary file) and read it back: int16 ``[n, channels]``."""
    from moviepy import VideoFileClip

    with VideoFileClip(str(video)) as clip:
        if clip.audio is None:
            raise DecodeError(f"{video}: no audio track")
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "audio.wav"
            clip.audio.write_audiofile(str(wav), fps=rate, logger=None)
            with wave.open(str(wav)) as w:
                data = np.frombuffer(w.readframes(w.getnframes()), "<i2")
                return data.reshape(-1, w.getnchannels())


class Audio(Extractor):
    name = "audio"
    description = __doc__
    stores = ("wav",)
    default_store = "wav"
    output_dtype = "int16 (WAV)"
    batched_input = "audio"

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--rate", type=int, default=16000, help="output sample rate (Hz)")
        parser.add_argument(
            "--backend",
            choices=["memory", "moviepy"],
            default="memory",
            help="memory: moviepy's arithmetic in numpy (fast); moviepy: moviepy itself",
        )

    def sampling(self) -> dict:
        return {
            "rate": self.args.rate,
            "channels": 2,
            "backend": self.args.backend,
            "method": "moviepy: ffmpeg 44.1 kHz stereo, nearest sample, clip +-0.99",
        }

    def load(self, video: Path) -> dict[str, np.ndarray]:
        loader = load_audio_16k if self.args.backend == "memory" else load_audio_moviepy
        audio = loader(video, self.args.rate)
        if len(audio) == 0:
            raise DecodeError(f"{video}: the audio track is empty")
        return {"audio": audio}

    def make_store(self) -> WavStore:
        return WavStore(self.args.out, rate=self.args.rate)


if __name__ == "__main__":
    raise SystemExit(main(Audio))
