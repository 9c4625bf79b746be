"""Preprocessing constants the extractors actually use, against their published sources.

The expected values are written here from the sources, never taken from our modules:
* ImageNet mean/std (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225): torchvision's ImageNet models.
* Kinetics mean/std (0.43216, 0.394666, 0.37645) / (0.22803, 0.22145, 0.216989): torchvision's video
  models documentation; AVST's 14x14 and grounding loaders use the same (AVST's grounding_gen
  dataloader and extract_14x14_feat.py).
* I3D ResNet-50: Tushar-N/pytorch-resnet3d utils/util.py kinetics_mean_std() = 114.75 / 57.375 per
  channel on 0..255 pixels (its gtransforms.ToTensor multiplies by 255).
* VGGish (tensorflow/models research/audioset/vggish/vggish_params.py): 16 kHz, 25 ms window, 10 ms hop,
  64 mel bands from 125 to 7500 Hz (HTK mel), log offset 0.01, 0.96 s examples of 96 frames.
* Geometry: Resize(256) + CenterCrop(224) for ResNet global features (pretrainedmodels'
  LoadTransformImage), Resize([224, 224]) for the 14x14 maps, 112x112 for R(2+1)D (AVST's
  extract_rgb_feat.py and extract_3D_feat.py).
The pipelines are run on frames and compared with torchvision's own transforms fed those constants.
"""
from __future__ import annotations

import argparse
import io
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from feat_script.base import add_common_args

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
KINETICS = ((0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989))


@pytest.fixture(autouse=True)
def short_videos(monkeypatch):
    """The tests hand frames in through ``sample_frames``: keep the loaders on the in-memory (short-video)
    path, which is the one that calls it."""
    from feat_script import streams

    monkeypatch.setattr(streams, "is_long", lambda video: False)


def feed(monkeypatch, module, make) -> None:
    """Hand ``make()``'s frames to ``module``'s loader, whichever decoder its sampling calls."""
    from feat_script import streams

    monkeypatch.setattr(module, "sample_frames", make)
    monkeypatch.setattr(streams, "read_frames", make)


def network_input(ex) -> np.ndarray:
    """What the network sees: the worker's rows (``load``), then the device part (``inputs``), on the CPU."""
    return ex.inputs(torch.from_numpy(ex.load(None)["frames"])).numpy()


def extractor(cls, *argv: str):
    """The extractor as its CLI builds it from ``argv``."""
    parser = argparse.ArgumentParser()
    add_common_args(parser, cls.stores, cls.default_store, cls.default_batch_size)
    cls.add_args(parser)
    return cls(cls.config_from_args(parser.parse_args(["--videos", "v", "--out", "o", "--random-init", *argv])))


def frames(height: int, width: int, n: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).randint(0, 256, (n, height, width, 3)).astype(np.uint8)


def torchvision_pipeline(frame: np.ndarray, *steps, stats) -> np.ndarray:
    t = transforms.Compose([*steps, transforms.ToTensor(), transforms.Normalize(*stats)])
    return t(Image.fromarray(frame)).numpy()


def assert_normalised_with(stats, out: np.ndarray, y: int, x: int) -> None:
    """``out`` holds a black and a white frame, normalised: the (mean, std) per channel recovered at pixel
    (y, x) from the values of pixels 0 and 255 (x = (p/255 - m) / s) must be ``stats``."""
    black, white = out[0, :, y, x], out[1, :, y, x]
    std = 1.0 / (white - black)
    assert -black * std == pytest.approx(stats[0], abs=1e-6) and std == pytest.approx(stats[1], abs=1e-6)


def constant_frames(height: int, width: int) -> np.ndarray:
    out = np.zeros((2, height, width, 3), np.uint8)
    out[1] = 255
    return out


@pytest.mark.parametrize("size", [(240, 320), (320, 240)])
def test_resnet_global_imagenet_resize256_crop224(monkeypatch, size):
    from feat_script import extract_resnet

    ex = extractor(extract_resnet.ResNetGlobal)
    given = frames(*size)
    feed(monkeypatch, extract_resnet, lambda *a, **k: given)
    ours = network_input(ex)
    assert ours.shape == (2, 3, 224, 224)
    for k in range(2):
        ref = torchvision_pipeline(given[k], transforms.Resize(256), transforms.CenterCrop(224), stats=IMAGENET)
        assert np.abs(ours[k] - ref).max() < 1e-5
    feed(monkeypatch, extract_resnet, lambda *a, **k: constant_frames(*size))
    out = network_input(ex)
    assert_normalised_with(IMAGENET, out, 100, 100)


def test_res18_14x14_kinetics_224_after_jpeg75(monkeypatch):
    from feat_script import extract_14x14

    given = frames(180, 320)
    feed(monkeypatch, extract_14x14, lambda *a, **k: given)
    ours = network_input(extractor(extract_14x14.Res18x14))
    assert ours.shape == (2, 3, 224, 224)
    for k in range(2):
        buf = io.BytesIO()
        Image.fromarray(given[k]).save(buf, format="JPEG", quality=75)  # the original's frames on disk
        buf.seek(0)
        jpeg = np.asarray(Image.open(buf).convert("RGB"))
        ref = torchvision_pipeline(jpeg, transforms.Resize([224, 224]), stats=KINETICS)
        assert np.abs(ours[k] - ref).max() < 1e-5
    feed(monkeypatch, extract_14x14, lambda *a, **k: constant_frames(180, 320))
    out = network_input(extractor(extract_14x14.Res18x14, "--jpeg-quality", "0"))
    assert_normalised_with(KINETICS, out, 7, 7)


def test_r2plus1d_kinetics_112(monkeypatch):
    from feat_script import extract_r2plus1d

    given = frames(90, 160)
    feed(monkeypatch, extract_r2plus1d, lambda *a, **k: given)
    ours = network_input(extractor(extract_r2plus1d.R2Plus1D))
    assert ours.shape == (2, 3, 1, 112, 112)  # one-frame clips [T, C, L, H, W]
    for k in range(2):
        ref = torchvision_pipeline(given[k], transforms.Resize([112, 112]), stats=KINETICS)
        assert np.abs(ours[k, :, 0] - ref).max() < 1e-5


def test_grounding_frames_kinetics_224(tmp_path):
    from grounding_gen.dataset import load_frame

    given = frames(100, 150, n=1)[0]
    Image.fromarray(given).save(tmp_path / "f.png")
    ref = torchvision_pipeline(given, transforms.Resize([224, 224]), stats=KINETICS)
    assert np.abs(load_frame(tmp_path / "f.png").numpy() - ref).max() < 1e-6


def test_i3d_sees_0_255_pixels_scaled_by_114_75_and_57_375(monkeypatch):
    """The tensor reaching I3D's first convolution, for black and white clips resized to 224x224."""
    from feat_script import extract_i3d

    given = constant_frames(120, 160)
    given[:, :10, :10] = 7  # a corner mark: the resize must keep it (no crop)
    monkeypatch.setattr(extract_i3d, "read_frames", lambda video, indices, **k: given[np.arange(len(indices)) % 2])
    monkeypatch.setattr(extract_i3d, "count_frames", lambda video: 50)
    ex = extractor(extract_i3d.I3dExtractor, "--num-clips", "1", "--clip-len", "2")
    clips = ex.load(None)["clips"]
    assert clips.shape == (1, 3, 2, 224, 224) and clips.dtype == np.uint8
    expect = np.asarray(Image.fromarray(given[0]).resize((224, 224), Image.BILINEAR)).transpose(2, 0, 1)
    assert np.array_equal(clips[0, :, 0], expect)

    seen = []

    class Seen(Exception):
        pass

    def grab(module, inputs):
        seen.append(inputs[0].detach().clone())
        raise Seen

    model = ex.build_model()
    model.i3d.conv1.register_forward_pre_hook(grab)
    with pytest.raises(Seen):
        ex.forward(model, torch.from_numpy(clips))
    x = seen[0]
    assert x[0, :, 0, 100, 100].tolist() == pytest.approx([(0 - 114.75) / 57.375] * 3)
    assert x[0, :, 1, 100, 100].tolist() == pytest.approx([(255 - 114.75) / 57.375] * 3)


def htk_mel(hz: float) -> float:
    return 1127.0 * math.log(1.0 + hz / 700.0)


def test_vggish_frames_bands_offset_and_examples():
    from feat_script.vggish.mel import log_mel
    from feat_script.vggish.recipes import avst_examples, standard_examples

    rate = 16000
    window, hop = int(0.025 * rate), int(0.010 * rate)
    for n in (window, window + hop - 1, window + hop, rate):
        assert log_mel(torch.zeros(n, dtype=torch.float64)).shape == (1 + (n - window) // hop, 64)
    silence = log_mel(torch.zeros(rate, dtype=torch.float64))
    assert torch.allclose(silence, torch.full_like(silence, math.log(0.01)))

    lo, hi = htk_mel(125.0), htk_mel(7500.0)
    centres = [lo + (k + 1) * (hi - lo) / 65 for k in range(64)]  # 64 triangles, 66 equally spaced edges
    t = np.arange(rate) / rate
    for hz in (300.0, 1000.0, 4000.0):
        spec = log_mel(torch.from_numpy(np.sin(2 * np.pi * hz * t)))
        assert int(spec.mean(0).argmax()) == int(np.argmin([abs(c - htk_mel(hz)) for c in centres]))
    for hz in (30.0, 7900.0):  # outside 125-7500 Hz: every band stays near the floor log(0.01)
        spec = log_mel(torch.from_numpy(np.sin(2 * np.pi * hz * t)))
        assert float(spec.mean(0).max()) < float(log_mel(torch.from_numpy(np.sin(2 * np.pi * 1000 * t))).max()) - 5

    # 0.96 s examples (96 frames of 10 ms), AudioSet's hop of one example
    wave = np.random.RandomState(0).randn(int(3 * 0.96 * rate) + window - hop)
    assert tuple(standard_examples(wave, rate).shape) == (3, 96, 64)
    assert tuple(standard_examples(wave[:-1], rate).shape) == (2, 96, 64)
    with pytest.raises(ValueError, match="16000 Hz"):
        standard_examples(wave, 44100)
    assert tuple(avst_examples(np.zeros(2 * rate), rate, num_secs=3).shape) == (3, 96, 64)
