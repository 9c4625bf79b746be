"""Benchmark: our VGGish AVST recipe vs a loop shaped like the original extractor.

    python scripts/bench_vggish.py [--videos 4] [--seconds 60] [--threads 2]

Both sides get the same 16 kHz stereo waveforms (decoding excluded) and the same random weights,
and must give the same [60, 128] features. The reference does what MUSIC-AVQA's
``audio_feature_extractor.py`` does per file: rebuild the model and reload the weights, compute
the log-mel spectrogram second by second in numpy, then run the batch. Ours builds the model once
and computes the 60 examples in one batched torch call. Prints videos/s and the ratio.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from engine.errors import run_cli
from feat_script.vggish import VGGish, avst_examples
from feat_script.vggish.mel import mel_matrix


def numpy_log_mel_second(chunk: np.ndarray, mel: np.ndarray) -> np.ndarray:
    """One second of mono audio -> the first 96 log-mel frames, one numpy frame loop as in mel_features."""
    window = 0.5 - 0.5 * np.cos(2 * np.pi / 400 * np.arange(400))
    count = 1 + (len(chunk) - 400) // 160
    frames = np.stack([chunk[i * 160:i * 160 + 400] for i in range(count)])
    spectrum = np.abs(np.fft.rfft(frames * window, 512))
    return np.log(spectrum @ mel + 0.01)[:96]


def reference(waves: list[np.ndarray], weights: Path) -> list[np.ndarray]:
    mel = mel_matrix().numpy()
    out = []
    for wave in waves:
        model = VGGish()
        model.load_state_dict(torch.load(weights, weights_only=True))
        model.eval()
        examples = np.stack([numpy_log_mel_second(wave[i * 16000:(i + 1) * 16000].mean(axis=1), mel)
                             for i in range(len(wave) // 16000)])
        with torch.no_grad():
            out.append(model(torch.from_numpy(examples).float()).numpy())
    return out


def ours(waves: list[np.ndarray], weights: Path, num_secs: int) -> list[np.ndarray]:
    model = VGGish()
    model.load_state_dict(torch.load(weights, weights_only=True))
    model.eval()
    with torch.inference_mode():
        return [model(avst_examples(wave, num_secs=num_secs).float()).numpy() for wave in waves]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    waves = [rng.uniform(-0.5, 0.5, (args.seconds * 16000, 2)) for _ in range(args.videos)]
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "vggish.pt"
        torch.manual_seed(0)
        torch.save(VGGish().state_dict(), weights)
        start = time.perf_counter()
        expected = reference(waves, weights)
        t_ref = time.perf_counter() - start
        start = time.perf_counter()
        got = ours(waves, weights, args.seconds)
        t_ours = time.perf_counter() - start
    mel = mel_matrix().numpy()
    start = time.perf_counter()
    for wave in waves:
        np.stack([numpy_log_mel_second(wave[i * 16000:(i + 1) * 16000].mean(axis=1), mel)
                  for i in range(args.seconds)])
    t_mel_ref = time.perf_counter() - start
    start = time.perf_counter()
    for wave in waves:
        avst_examples(wave, num_secs=args.seconds)
    t_mel_ours = time.perf_counter() - start
    error = max(float(np.abs(a - b).max()) for a, b in zip(got, expected))
    print(f"max abs difference: {error:.2e}")
    print(f"reference (per-file reload, numpy per second): {args.videos / t_ref:.2f} videos/s")
    print(f"ours (model once, batched torch log-mel):       {args.videos / t_ours:.2f} videos/s")
    print(f"speed-up: {t_ref / t_ours:.2f}x")
    print(f"log-mel front end alone: numpy per second {t_mel_ref / args.videos * 1000:.1f} ms/video, "
          f"batched torch {t_mel_ours / args.videos * 1000:.1f} ms/video ({t_mel_ref / t_mel_ours:.2f}x)")
    return 0 if error < 1e-4 else 1


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
