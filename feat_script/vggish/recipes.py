"""Turning a waveform into VGGish input examples: AVST's one-second recipe and the standard one.

AVST (``vggish_input.wavfile_to_examples(wav, num_secs=60)`` in MUSIC-AVQA) cuts the audio into
non-overlapping one-second chunks and computes one 96x64 log-mel example per chunk (a second
gives 98 frames; the first 96 form the example). Where the original crashes on audio shorter
than ``num_secs``, we repeat the last complete second, as the authors advise (MUSIC-AVQA issue
#3). The standard AudioSet recipe frames the whole log-mel spectrogram into 0.96 s examples with
a 0.96 s hop.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch

from feat_script.vggish.mel import (
    EXAMPLE_FRAMES,
    HOP_SAMPLES,
    SAMPLE_RATE,
    WINDOW_SAMPLES,
    frame_examples,
    log_mel,
)

EXAMPLE_SAMPLES = WINDOW_SAMPLES + (EXAMPLE_FRAMES - 1) * HOP_SAMPLES


def to_mono(wave: np.ndarray | torch.Tensor, sample_rate: int) -> torch.Tensor:
    """[samples] or [samples, channels] (the layout of scipy and moviepy) -> float64 [samples]."""
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"VGGish needs {SAMPLE_RATE} Hz audio, got {sample_rate} Hz; resample when decoding")
    wave = torch.as_tensor(np.asarray(wave) if not isinstance(wave, torch.Tensor) else wave)
    if wave.ndim == 2:
        wave = wave.to(torch.float64).mean(dim=1)
    elif wave.ndim != 1:
        raise ValueError(f"expected a waveform [samples] or [samples, channels], got {tuple(wave.shape)}")
    return wave.to(torch.float64)


def avst_examples(wave: np.ndarray | torch.Tensor, sample_rate: int = SAMPLE_RATE,
                  num_secs: int = 60, rows: Sequence[int] | None = None) -> torch.Tensor:
    """Waveform -> [num_secs, 96, 64] float64, one example per second, last second repeated; ``rows``:
    only those of the num_secs rows (each second's example is its own chunk's, so only the seconds they
    take are transformed)."""
    mono = to_mono(wave, sample_rate)
    full_secs = min(mono.shape[0] // SAMPLE_RATE, num_secs)
    if full_secs < 1:
        seconds = mono.shape[0] / SAMPLE_RATE
        raise ValueError(f"audio is {seconds:.3f} s long; the AVST recipe needs at least 1 s")
    index = torch.clamp(torch.arange(num_secs), max=full_secs - 1)
    if rows is not None:
        index = index[list(rows)]
    seconds, at = torch.unique(index, return_inverse=True)
    chunks = mono[: full_secs * SAMPLE_RATE].reshape(full_secs, SAMPLE_RATE)[seconds]
    return log_mel(chunks)[:, :EXAMPLE_FRAMES][at]


def standard_examples_stream(blocks: Iterable[np.ndarray], per_step: int = 64) -> Iterator[torch.Tensor]:
    """``standard_examples`` of the concatenated 16 kHz ``blocks``, ``per_step`` examples at a time:
    each window starts on an example boundary (a multiple of the hop), so every STFT frame and
    example is the one the whole waveform gives. Memory holds one window of samples."""
    hop = EXAMPLE_FRAMES * HOP_SAMPLES
    window = per_step * hop + EXAMPLE_SAMPLES - hop
    pending = torch.zeros(0, dtype=torch.float64)
    count = 0
    for block in blocks:
        pending = torch.cat([pending, to_mono(block, SAMPLE_RATE)])
        count += len(block)
        while len(pending) >= window:
            yield frame_examples(log_mel(pending[:window]))
            pending = pending[per_step * hop:]
    if len(pending) >= EXAMPLE_SAMPLES:
        yield frame_examples(log_mel(pending))
    elif count < EXAMPLE_SAMPLES:
        raise ValueError(f"audio is {count / SAMPLE_RATE:.3f} s long; one VGGish example needs 0.975 s")


def standard_examples(wave: np.ndarray | torch.Tensor, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Waveform -> [N, 96, 64] float64, 0.96 s examples with a 0.96 s hop (AudioSet's recipe)."""
    mono = to_mono(wave, sample_rate)
    if mono.shape[0] < EXAMPLE_SAMPLES:
        seconds = mono.shape[0] / SAMPLE_RATE
        raise ValueError(f"audio is {seconds:.3f} s long; one VGGish example needs 0.975 s")
    return frame_examples(log_mel(mono))
