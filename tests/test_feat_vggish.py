"""VGGish: log-mel front end vs a plain float64 reference, recipes, converters, PCA."""
from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from feat_script.base import main
from feat_script.extract_audio import load_audio_16k
from feat_script.extract_vggish import VggishExtractor
from feat_script.manifest import read_failures, read_manifest
from feat_script.synthetic_video import make_pattern_video
from feat_script.vggish import VGGish, avst_examples, load_pca, standard_examples, vggish
from feat_script.vggish.convert import convert, save_state_dict
from feat_script.vggish.mel import log_mel

SR = 16000


def reference_log_mel(signal: np.ndarray) -> np.ndarray:
    """AudioSet's front end written out from its definition, one frame at a time."""
    window = np.array([0.5 - 0.5 * math.cos(2 * math.pi * n / 400) for n in range(400)])
    freqs = np.array([k * (SR / 2) / 256 for k in range(257)])

    def mel(f):
        return 1127.0 * np.log(1.0 + f / 700.0)

    edges = np.linspace(mel(125.0), mel(7500.0), 66)
    weights = np.zeros((257, 64))
    for band in range(64):
        lo, mid, hi = edges[band], edges[band + 1], edges[band + 2]
        for k in range(1, 257):
            m = mel(freqs[k])
            if lo < m <= mid:
                weights[k, band] = (m - lo) / (mid - lo)
            elif mid < m < hi:
                weights[k, band] = (hi - m) / (hi - mid)
    rows = []
    for start in range(0, len(signal) - 400 + 1, 160):
        spectrum = np.abs(np.fft.fft(signal[start:start + 400] * window, 512))[:257]
        rows.append(np.log(spectrum @ weights + 0.01))
    return np.array(rows)


def tone(seconds: float, channels: int = 0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    wave = 0.4 * np.sin(2 * np.pi * (300 + 400 * t) * t) + 0.05 * rng.standard_normal(t.shape)
    if channels:
        wave = np.stack([wave * (c + 1) / channels for c in range(channels)], axis=1)
    return wave


def test_log_mel_matches_plain_float64_reference():
    signal = tone(0.3, seed=1)
    ours = log_mel(torch.from_numpy(signal)).numpy()
    expected = reference_log_mel(signal)
    assert ours.shape == expected.shape == (1 + (len(signal) - 400) // 160, 64)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-9)


def test_avst_recipe_one_example_per_second_and_repeats_the_last_second():
    wave = tone(3.5, channels=2, seed=2)
    examples = avst_examples(wave).numpy()
    assert examples.shape == (60, 96, 64)
    mono = wave.mean(axis=1)
    for second in (0, 2):
        expected = reference_log_mel(mono[second * SR:(second + 1) * SR])[:96]
        np.testing.assert_allclose(examples[second], expected, atol=1e-9)
    assert not np.allclose(examples[1], examples[2])
    np.testing.assert_array_equal(examples[3:], np.broadcast_to(examples[2], (57, 96, 64)))


def test_avst_recipe_keeps_only_the_first_num_secs():
    wave = tone(4.0, seed=3)
    first_two = avst_examples(wave[:2 * SR], num_secs=2)
    np.testing.assert_array_equal(avst_examples(wave, num_secs=2).numpy(), first_two)


@pytest.mark.parametrize("length", [3.5, 7.0, 9.0])
def test_avst_recipe_rows_are_the_rows_of_every_example(length):
    """Rows past the audio's end take its last complete second, as every example does; a repeated row
    repeats its example."""
    wave = tone(length, seed=6)
    rows = [0, 3, 3, 7]
    np.testing.assert_array_equal(avst_examples(wave, num_secs=8, rows=rows).numpy(),
                                  avst_examples(wave, num_secs=8).numpy()[rows])


@pytest.mark.parametrize("length", [2.5, 4.0, 4.5, 6.0])
def test_extractor_rows_decode_only_up_to_the_last_row(tmp_path, length):
    """Audio shorter than, as long as, and longer than the last row's second, and longer than num_secs:
    the rows equal the same rows of the whole recipe, though only the seconds up to the last row decode."""
    video = make_pattern_video(tmp_path / "a.mp4", seconds=length)
    common = {"random_init": True, "num_secs": 5}
    whole = VggishExtractor(VggishExtractor.Config(**common)).load(video)["examples"]
    rows = VggishExtractor(VggishExtractor.Config(**common, rows=(1, 3))).load(video)["examples"]
    np.testing.assert_array_equal(rows, whole[[1, 3]])


def test_standard_recipe_hops_096_seconds():
    wave = tone(3.0, seed=4)
    examples = standard_examples(wave).numpy()
    frames = reference_log_mel(wave)
    assert len(frames) == 298 and examples.shape == (3, 96, 64)
    np.testing.assert_allclose(examples[2], frames[192:288], atol=1e-9)


@pytest.mark.parametrize("seconds", [0.0, 0.5])
def test_too_short_audio_is_a_clear_error(seconds):
    with pytest.raises(ValueError, match="at least 1 s"):
        avst_examples(tone(seconds))
    with pytest.raises(ValueError, match="0.975 s"):
        standard_examples(tone(seconds))


def test_wrong_sample_rate_is_rejected():
    with pytest.raises(ValueError, match="16000 Hz"):
        avst_examples(tone(2.0), sample_rate=44100)


def test_missing_weights_name_the_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="vggish_model.ckpt"):
        vggish(tmp_path / "vggish.pt")
    with pytest.raises(FileNotFoundError, match="vggish_model.ckpt"):
        convert(tmp_path / "vggish_model.ckpt")
    with pytest.raises(FileNotFoundError, match="vggish_pca_params.npz"):
        load_pca(tmp_path / "vggish_pca_params.npz")


class TorchVggishLayout(nn.Module):
    """The common PyTorch port's module tree (features.N / embeddings.N), NCHW -> NHWC flatten."""

    def __init__(self):
        super().__init__()
        layers, cin = [], 1
        for v in [64, "M", 128, "M", 256, 256, "M", 512, 512, "M"]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU()]
                cin = v
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(nn.Linear(12288, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(),
                                        nn.Linear(4096, 128), nn.ReLU())

    def forward(self, x):
        x = self.features(x.unsqueeze(1))
        return self.embeddings(x.transpose(1, 3).transpose(1, 2).reshape(x.shape[0], -1))


@pytest.fixture(scope="module")
def converted_port(tmp_path_factory):
    """A random torchvggish-layout model and our conversion of its .pth (shared: 290 MB each)."""
    torch.manual_seed(0)
    port = TorchVggishLayout().eval()
    for p in port.parameters():
        nn.init.normal_(p, std=0.04)
    folder = tmp_path_factory.mktemp("torchvggish")
    src = folder / "vggish-10086976.pth"
    torch.save(port.state_dict(), src)
    out = folder / "vggish.pt"
    save_state_dict(convert(src), out)
    src.unlink()
    return port, out


def test_torchvggish_pth_converts_and_gives_the_same_embeddings(converted_port):
    port, converted = converted_port
    x = avst_examples(tone(2.0, seed=5), num_secs=2).float()
    with torch.no_grad():
        expected = port(x)
        got = vggish(converted)(x)
    assert expected.abs().max() > 1.0
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


def test_torchvggish_pth_with_wrong_keys_is_rejected(tmp_path):
    src = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(64, 1, 3, 3)}, src)
    with pytest.raises(ValueError, match="not a torchvggish state_dict"):
        convert(src)


def test_pca_postprocess_matches_audioset_formula(tmp_path):
    rng = np.random.default_rng(6)
    eig = rng.standard_normal((128, 128)).astype(np.float32) * 0.1
    means = rng.standard_normal((128, 1)).astype(np.float32)
    np.savez(tmp_path / "vggish_pca_params.npz", pca_eigen_vectors=eig, pca_means=means)
    emb = rng.random((5, 128)).astype(np.float32) * 3
    pca = np.dot(eig, emb.T - means).T
    quantized = np.round((np.clip(pca, -2.0, 2.0) + 2.0) * (255.0 / 4.0))
    got = load_pca(tmp_path / "vggish_pca_params.npz")(torch.from_numpy(emb)).numpy()
    np.testing.assert_allclose(got, quantized, atol=1e-3)
    raw = load_pca(tmp_path / "vggish_pca_params.npz", quantize=False)(torch.from_numpy(emb)).numpy()
    np.testing.assert_allclose(raw, pca, atol=1e-4)


def test_tensorflow_checkpoint_converts_and_gives_the_same_embeddings(tmp_path):
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("tensorflow is not installed")
    examples = avst_examples(tone(3.0, channels=2, seed=7), num_secs=3).float().numpy()
    np.save(tmp_path / "examples.npy", examples)
    helper = Path(__file__).with_name("tf_vggish_graph.py")
    done = subprocess.run([sys.executable, str(helper), str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    expected = np.load(tmp_path / "expected.npy")
    got = np.load(tmp_path / "got.npy")
    assert np.abs(expected).max() > 1.0 and (expected == 0).mean() < 0.9
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_model_shapes_and_relu_embedding():
    torch.manual_seed(1)
    model = VGGish().eval()
    with torch.no_grad():
        out = model(torch.randn(2, 96, 64))
    assert out.shape == (2, 128) and out.dtype == torch.float32 and (out >= 0).all()


def test_cli_writes_avst_features_and_lists_bad_audio(tmp_path, converted_port):
    videos = tmp_path / "videos"
    videos.mkdir()
    make_pattern_video(videos / "long.mp4", seconds=3)
    make_pattern_video(videos / "short.mkv", seconds=0.5, audio="mono22k")
    make_pattern_video(videos / "silent.webm", vcodec="libvpx", audio=None, seconds=1)
    port, weights = converted_port
    out = tmp_path / "vggish"
    argv = ["--quiet", "--videos", str(videos), "--out", str(out), "--weights", str(weights),
            "--workers", "0"]
    assert main(VggishExtractor, argv) == 1  # short and silent fail, long is written
    assert sorted(p.name for p in out.iterdir()) == ["long.npy"]
    feats = np.load(out / "long.npy")
    assert feats.shape == (60, 128) and feats.dtype == np.float32
    examples = avst_examples(load_audio_16k(videos / "long.mp4") / 32768.0).float()
    with torch.no_grad():
        expected = port(examples[:3]).numpy()
    np.testing.assert_allclose(feats[:3], expected, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(feats[3:], np.broadcast_to(feats[2], (57, 128)))
    reasons = {f["video_id"]: f["reason"] for f in read_failures(out)}
    assert set(reasons) == {"short", "silent"}
    assert "at least 1 s" in reasons["short"] and "no audio" in reasons["silent"]
    assert read_manifest(out)["sampling"]["recipe"] == "avst"


def test_cli_pca_only_with_the_standard_recipe(tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a.mp4").write_bytes(b"")
    np.savez(tmp_path / "vggish_pca_params.npz", pca_eigen_vectors=np.eye(128), pca_means=np.zeros((128, 1)))
    argv = ["--videos", str(videos), "--out", str(tmp_path / "o"), "--random-init",
            "--pca", str(tmp_path / "vggish_pca_params.npz")]
    assert main(VggishExtractor, argv) == 2
    assert "--recipe standard" in capsys.readouterr().err


def test_cli_missing_weights_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a.mp4").write_bytes(b"")
    assert main(VggishExtractor, ["--videos", str(videos), "--out", str(tmp_path / "o")]) == 2
    assert "vggish_model.ckpt" in capsys.readouterr().err
