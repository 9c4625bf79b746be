"""Long videos are streamed block by block (bounded memory) and give exactly what the in-memory path gives."""
from __future__ import annotations

import tracemalloc
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from feat_script import decode, streams
from feat_script.base import main
from feat_script.batching import RowBatcher
from feat_script.decode import count_frames, read_frames
from feat_script.extract_14x14 import Res18x14
from feat_script.extract_audio import Audio, first_seconds_16k, iter_audio_16k, iter_audio_moviepy
from feat_script.extract_frames import Frames
from feat_script.extract_r2plus1d import R2Plus1D
from feat_script.extract_resnet import ResNetGlobal
from feat_script.extract_vggish import VggishExtractor
from feat_script.sampling import clips_around, one_fps_indices
from feat_script.streams import iter_clips
from feat_script.synthetic_video import make_pattern_video
from feat_script.vggish import standard_examples
from feat_script.vggish.recipes import standard_examples_stream


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return make_pattern_video(tmp_path_factory.mktemp("stream") / "clip.mp4", size="97x61", seconds=3.3)


def test_the_model_sees_the_chunks_of_the_whole_array_whatever_the_blocks():
    rows = np.arange(23)
    blocks = [rows[:5], rows[5:6], rows[6:6], rows[6:20], rows[20:]]
    want = [rows[i:i + 4].tolist() for i in range(0, 23, 4)]
    seen: list = []
    for given in (blocks, rows):
        seen.clear()
        batcher = RowBatcher(lambda x: seen.append(x.tolist()) or x, 4, torch.device("cpu"))
        [(_, out)] = batcher.add("v", given) + batcher.finish()
        assert seen == want and out.tolist() == rows.tolist()


def test_streamed_16k_audio_in_small_blocks_is_moviepys(tmp_path, video):
    from moviepy import VideoFileClip

    with VideoFileClip(str(video)) as clip:  # the oracle: moviepy's own writer
        clip.audio.write_audiofile(str(tmp_path / "want.wav"), fps=16000, logger=None)
    with wave.open(str(tmp_path / "want.wav")) as w:
        want = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    blocks = list(iter_audio_16k(video, block=997))
    assert len(blocks) > 40
    np.testing.assert_array_equal(np.concatenate(blocks), want)
    np.testing.assert_array_equal(first_seconds_16k(video, 2), want[:32000])


def test_standard_examples_window_by_window_equal_the_whole():
    wave = np.random.default_rng(0).uniform(-1, 1, (16000 * 7 + 1234, 2))
    whole = standard_examples(wave)
    blocks = [wave[i:i + 5001] for i in range(0, len(wave), 5001)]
    streamed = torch.cat(list(standard_examples_stream(blocks, per_step=2)))
    assert streamed.shape == whole.shape == (7, 96, 64)
    torch.testing.assert_close(streamed, whole, rtol=0, atol=0)


CASES = {
    "frames 1fps": (Frames, [], "frames"),
    "audio": (Audio, [], "wav"),
    "audio moviepy": (Audio, ["--backend", "moviepy"], "wav"),
    "vggish standard": (VggishExtractor, ["--random-init", "--recipe", "standard"], "npy"),
    "resnet18 1fps": (ResNetGlobal, ["--random-init", "--arch", "resnet18", "--batch-size", "2"], "npy"),
    "14x14 1fps": (Res18x14, ["--random-init", "--sampling", "1fps", "--batch-size", "3"], "npy"),
    "r2plus1d 1fps": (R2Plus1D, ["--random-init", "--batch-size", "2"], "npy"),
    "r2plus1d 1fps clips": (R2Plus1D, ["--random-init", "--clip-len", "4", "--batch-size", "2"], "npy"),
}


def _outputs(out: Path, kind: str) -> dict[str, bytes]:
    pattern = {"frames": "*/*.jpg", "wav": "*.wav", "npy": "*.npy"}[kind]
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob(pattern))}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_streamed_long_video_path_gives_identical_outputs(name, tmp_path, video, monkeypatch):
    cls, flags, kind = CASES[name]
    args = ["--quiet", "--workers", "0", "--videos", str(video.parent), *flags]
    assert main(cls, [*args, "--out", str(tmp_path / "memory")]) == 0
    monkeypatch.setattr(streams, "LONG_VIDEO_SECONDS", 0.0)  # every video counts as long: streamed
    monkeypatch.setattr(streams, "FRAME_BLOCK", 2)
    monkeypatch.setattr(decode, "SELECT_MAX_RUNS", 0)  # clips: every frame decoded, picked in Python
    assert main(cls, [*args, "--out", str(tmp_path / "streamed")]) == 0
    memory, streamed = _outputs(tmp_path / "memory", kind), _outputs(tmp_path / "streamed", kind)
    assert memory and memory == streamed


@pytest.mark.parametrize("max_runs", [256, 0], ids=["select", "picked"])
def test_clips_one_at_a_time_are_the_clips_read_at_once(video, monkeypatch, max_runs):
    """The oracle is the all-at-once read (``read_frames`` with every index, as the clip extractors did)."""
    monkeypatch.setattr(decode, "SELECT_MAX_RUNS", max_runs)
    monkeypatch.setattr(streams, "FRAME_BLOCK", 3)
    n = count_frames(video)
    indices = np.concatenate([clips_around(one_fps_indices(n, 25), n, 5, 2), [[n - 1, 0, 7, 7, 3]]])  # clamped,
    want = read_frames(video, indices=indices.ravel()).reshape(*indices.shape, 61, 97, 3)  # out of order, repeats
    got = list(iter_clips(video, indices))
    assert len(got) == len(indices)
    np.testing.assert_array_equal(np.concatenate(got), want)


def _traced_peak(blocks, start_after: int = 0) -> int:
    """Peak traced bytes while ``blocks`` is consumed (from its ``start_after``-th block on)."""
    tracemalloc.start()
    try:
        for i, _ in enumerate(blocks):
            if i + 1 == start_after:
                tracemalloc.reset_peak()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("max_runs", [256, 0], ids=["select", "picked"])
def test_clip_memory_does_not_grow_with_the_video(tmp_path, monkeypatch, max_runs):
    """A clip around every second: 24 s of video need no more memory than 4 s (all at once: 6x)."""
    monkeypatch.setattr(decode, "SELECT_MAX_RUNS", max_runs)
    monkeypatch.setattr(streams, "FRAME_BLOCK", 4)
    peaks = []
    for seconds in (4, 24):
        clip = make_pattern_video(tmp_path / f"{seconds}.mp4", size="160x120", rate=10, seconds=seconds, audio=None)
        n = count_frames(clip)
        peaks.append(_traced_peak(iter_clips(clip, clips_around(one_fps_indices(n, 10), n, 4))))
    assert peaks[1] < 1.2 * peaks[0], peaks


def test_moviepy_backend_reads_its_wav_back_block_by_block(tmp_path):
    """60 s of 16 kHz stereo is 3.8 MB; read back, memory holds about one 65,536-sample block (256 KiB)."""
    clip = make_pattern_video(tmp_path / "a.mp4", size="32x32", rate=1, seconds=60)
    peak = _traced_peak(iter_audio_moviepy(clip), start_after=1)  # after moviepy has written the WAV
    assert peak < 3 * (1 << 16) * 4, peak
