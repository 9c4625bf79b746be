"""VGGish's log-mel front end in PyTorch, batched and float64 by default.

Same parameters and arithmetic as AudioSet's ``mel_features.py``: 16 kHz input, periodic Hann
window of 400 samples, hop 160, 512-point FFT magnitude (no padding at either end), 64 HTK mel
bands between 125 and 7500 Hz with the DC bin zeroed, ``log(mel + 0.01)``, then examples of
96 frames. Float64 keeps it within rounding of the numpy original.
"""
from __future__ import annotations

import math

import torch

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 400
HOP_SAMPLES = 160
FFT_LENGTH = 512
NUM_MEL_BINS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96


def hertz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    """HTK mel scale."""
    return 1127.0 * torch.log1p(hz / 700.0)


def mel_matrix(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """[257, 64] triangular filters on the mel scale; the DC row is zero as in the original."""
    num_bins = FFT_LENGTH // 2 + 1
    bins_mel = hertz_to_mel(torch.linspace(0.0, SAMPLE_RATE / 2, num_bins, dtype=torch.float64))
    lo, hi = hertz_to_mel(torch.tensor([MEL_MIN_HZ, MEL_MAX_HZ], dtype=torch.float64))
    edges = torch.linspace(float(lo), float(hi), NUM_MEL_BINS + 2, dtype=torch.float64)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_mel[:, None] - lower) / (center - lower)
    falling = (upper - bins_mel[:, None]) / (upper - center)
    weights = torch.clamp(torch.minimum(rising, falling), min=0.0)
    weights[0] = 0.0
    return weights.to(dtype)


def periodic_hann(length: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    n = torch.arange(length, dtype=torch.float64)
    return (0.5 - 0.5 * torch.cos(2 * math.pi / length * n)).to(dtype)


def log_mel(wave: torch.Tensor) -> torch.Tensor:
    """[..., samples] at 16 kHz -> [..., frames, 64] with frames = 1 + (samples - 400) // 160."""
    if wave.shape[-1] < WINDOW_SAMPLES:
        raise ValueError(f"need at least {WINDOW_SAMPLES} samples for one STFT frame, got {wave.shape[-1]}")
    frames = wave.unfold(-1, WINDOW_SAMPLES, HOP_SAMPLES)
    window = periodic_hann(WINDOW_SAMPLES, wave.dtype).to(wave.device)
    magnitude = torch.fft.rfft(frames * window, n=FFT_LENGTH).abs()
    mel = magnitude @ mel_matrix(wave.dtype).to(wave.device)
    return torch.log(mel + LOG_OFFSET)


def frame_examples(spectrogram: torch.Tensor, hop: int = EXAMPLE_FRAMES) -> torch.Tensor:
    """[frames >= 96, 64] -> [examples, 96, 64]; an incomplete last example is dropped, as in the original."""
    return spectrogram.unfold(0, EXAMPLE_FRAMES, hop).transpose(1, 2)
