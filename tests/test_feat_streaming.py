"""Long videos are streamed block by block (bounded memory) and give exactly what the in-memory path gives."""
from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from feat_script import streams
from feat_script.base import main
from feat_script.batching import RowBatcher
from feat_script.extract_14x14 import Res18x14
from feat_script.extract_audio import Audio, first_seconds_16k, iter_audio_16k
from feat_script.extract_frames import Frames
from feat_script.extract_r2plus1d import R2Plus1D
from feat_script.extract_resnet import ResNetGlobal
from feat_script.extract_vggish import VggishExtractor
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
    "vggish standard": (VggishExtractor, ["--random-init", "--recipe", "standard"], "npy"),
    "resnet18 1fps": (ResNetGlobal, ["--random-init", "--arch", "resnet18", "--batch-size", "2"], "npy"),
    "14x14 1fps": (Res18x14, ["--random-init", "--sampling", "1fps", "--batch-size", "3"], "npy"),
    "r2plus1d 1fps": (R2Plus1D, ["--random-init", "--batch-size", "2"], "npy"),
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
    assert main(cls, [*args, "--out", str(tmp_path / "streamed")]) == 0
    memory, streamed = _outputs(tmp_path / "memory", kind), _outputs(tmp_path / "streamed", kind)
    assert memory and memory == streamed
