"""I3D ResNet-50: the key layout of Tushar-N/pytorch-resnet3d's i3d_r50, shapes, one block by hand."""
from __future__ import annotations

import argparse

import h5py
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from feat_script.base import main
from feat_script.extract_i3d import ClipMaps, I3dExtractor, load_clips
from feat_script.i3d import I3Res50, i3d_input, i3d_r50
from feat_script.synthetic_video import make_gif

# Upstream I3Res50: layers [3, 4, 6, 3]; the temporal kernel (3 if set, else 1) of each block's conv1.
BN = ("weight", "bias", "running_mean", "running_var")
TEMP_CONV = {1: [1, 1, 1], 2: [1, 0, 1, 0], 3: [1, 0, 1, 0, 1, 0], 4: [0, 1, 0]}
PLANES = {1: 64, 2: 128, 3: 256, 4: 512}


def expected_release_shapes() -> dict[str, tuple[int, ...]]:
    """What convert_weights.py writes for the baseline: conv/bn/downsample/fc, no num_batches_tracked."""
    shapes = {"conv1.weight": (64, 3, 5, 7, 7)}
    shapes.update({f"bn1.{s}": (64,) for s in ("weight", "bias", "running_mean", "running_var")})
    inplanes = 64
    for layer, temps in TEMP_CONV.items():
        planes = PLANES[layer]
        for block, temp in enumerate(temps):
            prefix = f"layer{layer}.{block}"
            cin = inplanes if block == 0 else planes * 4
            shapes[f"{prefix}.conv1.weight"] = (planes, cin, 1 + 2 * temp, 1, 1)
            shapes[f"{prefix}.conv2.weight"] = (planes, planes, 1, 3, 3)
            shapes[f"{prefix}.conv3.weight"] = (planes * 4, planes, 1, 1, 1)
            for i, c in ((1, planes), (2, planes), (3, planes * 4)):
                shapes.update({f"{prefix}.bn{i}.{s}": (c,) for s in BN})
            if block == 0:
                shapes[f"{prefix}.downsample.0.weight"] = (planes * 4, cin, 1, 1, 1)
                shapes.update({f"{prefix}.downsample.1.{s}": (planes * 4,)
                               for s in ("weight", "bias", "running_mean", "running_var")})
        inplanes = planes * 4
    shapes["fc.weight"] = (400, 2048)
    shapes["fc.bias"] = (400,)
    return shapes


def test_state_dict_matches_the_upstream_layout():
    expected = expected_release_shapes()
    assert len(expected) == 267
    state = I3Res50().state_dict()
    assert len(state) == 267 + 53
    ours = {k: tuple(v.shape) for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert ours == expected
    assert list(state)[:2] == ["conv1.weight", "bn1.weight"] and list(state)[-2:] == ["fc.weight", "fc.bias"]
    assert expected["layer2.0.conv1.weight"] == (128, 256, 3, 1, 1)
    assert expected["layer4.1.conv1.weight"] == (512, 2048, 3, 1, 1)
    assert expected["layer3.5.conv1.weight"] == (256, 1024, 1, 1, 1)


def test_nonlocal_variant_adds_five_blocks_in_layer2_and_layer3(tmp_path):
    expected = expected_release_shapes()
    for layer, blocks in ((2, (1, 3)), (3, (1, 3, 5))):
        dim = PLANES[layer] * 4
        for block in blocks:
            prefix = f"layer{layer}.{block}.nl"
            for conv, cin, cout in (("theta", dim, dim // 2), ("phi", dim, dim // 2), ("g", dim, dim // 2),
                                    ("out", dim // 2, dim)):
                expected[f"{prefix}.{conv}.weight"] = (cout, cin, 1, 1, 1)
                expected[f"{prefix}.{conv}.bias"] = (cout,)
            expected.update({f"{prefix}.bn.{s}": (dim,) for s in BN})
    assert len(expected) == 327
    state = I3Res50(nonlocal_blocks=True).state_dict()
    assert {k: tuple(v.shape) for k, v in state.items() if not k.endswith("num_batches_tracked")} == expected
    torch.save({k: torch.randn(s) for k, s in expected.items()}, tmp_path / "i3d_r50_nl_kinetics.pth")
    i3d_r50(tmp_path / "i3d_r50_nl_kinetics.pth", nonlocal_blocks=True)
    with pytest.raises(ValueError, match="not a i3d_r50 state_dict"):
        i3d_r50(tmp_path / "i3d_r50_nl_kinetics.pth")


def test_nonlocal_block_by_hand():
    torch.manual_seed(5)
    block = I3Res50(nonlocal_blocks=True).layer2[1].nl.eval()
    block.bn.running_mean.normal_(0, 0.2)
    block.bn.running_var.uniform_(0.5, 2.0)
    block.bn.weight.data.uniform_(0.5, 1.5)
    x = torch.randn(1, 512, 2, 4, 6)
    with torch.no_grad():  # in float64, so that the comparison tests the arithmetic, not float32 rounding
        got = block.double()(x.double())
    xd = x.double()

    def conv1(conv, inp):
        return torch.einsum("oc,bcthw->bothw", conv.weight.double()[:, :, 0, 0, 0], inp) + \
            conv.bias.double().view(1, -1, 1, 1, 1)

    pooled = xd.view(1, 512, 2, 2, 2, 3, 2).amax(dim=(4, 6))
    theta = conv1(block.theta, xd).flatten(2)
    phi = conv1(block.phi, pooled).flatten(2)
    g = conv1(block.g, pooled).flatten(2)
    weights = torch.softmax(torch.einsum("bci,bcj->bij", theta, phi) / 16.0, dim=-1)
    mixed = torch.einsum("bij,bcj->bci", weights, g).view(1, 256, 2, 4, 6)
    expected = _bn(conv1(block.out, mixed), block.bn) + xd
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_release_style_file_loads_strictly_and_bad_files_are_clear(tmp_path):
    torch.manual_seed(0)
    release = {k: torch.randn(s) for k, s in expected_release_shapes().items()}
    path = tmp_path / "i3d_r50_kinetics.pth"
    torch.save(release, path)
    model = i3d_r50(path)
    torch.testing.assert_close(model.state_dict()["layer3.2.conv1.weight"], release["layer3.2.conv1.weight"])
    assert not model.training
    torch.save({**release, "layer2.1.nl.theta.weight": torch.zeros(1)}, tmp_path / "nl.pth")
    with pytest.raises(ValueError, match="not a i3d_r50 state_dict"):
        i3d_r50(tmp_path / "nl.pth")
    with pytest.raises(FileNotFoundError, match="Tushar-N/pytorch-resnet3d"):
        i3d_r50(tmp_path / "missing.pth")


def test_clip_of_8_frames_at_224_gives_one_7x7_map():
    torch.manual_seed(1)
    model = i3d_r50()
    clip = i3d_input(torch.randint(0, 256, (1, 3, 8, 224, 224), dtype=torch.uint8))
    with torch.no_grad():
        fmap = model.features(clip)
        logits = model(clip)
    assert fmap.shape == (1, 2048, 1, 7, 7) and logits.shape == (1, 400)
    assert (fmap >= 0).all()
    torch.testing.assert_close(logits, model.fc(fmap.mean(dim=(2, 3, 4))), rtol=1e-5, atol=1e-5)


def test_time_is_divided_by_eight_and_space_by_32():
    model = i3d_r50()
    with torch.no_grad():
        fmap = model.features(torch.randn(1, 3, 16, 64, 96))
    assert fmap.shape == (1, 2048, 2, 2, 3)


def _bn(x, bn):
    shape = (1, -1, 1, 1, 1)
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    return (x - bn.running_mean.double().view(shape)) * scale.view(shape) + bn.bias.double().view(shape)


def _temporal_conv(x, w):
    """3x1x1 conv, padding 1 in time, written as shifted channel mixes."""
    k = w.shape[2]
    xp = F.pad(x, (0, 0, 0, 0, k // 2, k // 2))
    t = x.shape[2]
    return sum(torch.einsum("oc,bcthw->bothw", w[:, :, i, 0, 0], xp[:, :, i:i + t]) for i in range(k))


def _spatial_conv(x, w, stride):
    """1x3x3 conv, padding 1, as nine strided channel mixes."""
    xp = F.pad(x, (1, 1, 1, 1))
    h = (x.shape[3] - 1) // stride + 1
    wd = (x.shape[4] - 1) // stride + 1
    return sum(torch.einsum("oc,bcthw->bothw", w[:, :, 0, dy, dx],
                            xp[:, :, :, dy:dy + stride * h:stride, dx:dx + stride * wd:stride])
               for dy in range(3) for dx in range(3))


def test_first_block_of_layer2_by_hand():
    torch.manual_seed(2)
    block = I3Res50().layer2[0].eval()
    for bn in (block.bn1, block.bn2, block.bn3, block.downsample[1]):
        bn.running_mean.normal_(0, 0.2)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.normal_(0, 0.2)
    x = torch.randn(2, 256, 3, 6, 5)
    with torch.no_grad():  # in float64: the comparison tests the arithmetic, not float32 rounding
        got = block.double()(x.clone().double())
    xd = x.double()
    out = torch.relu(_bn(_temporal_conv(xd, block.conv1.weight.double()), block.bn1))
    out = torch.relu(_bn(_spatial_conv(out, block.conv2.weight.double(), 2), block.bn2))
    out = _bn(torch.einsum("oc,bcthw->bothw", block.conv3.weight.double()[:, :, 0, 0, 0], out), block.bn3)
    shortcut = torch.einsum("oc,bcthw->bothw", block.downsample[0].weight.double()[:, :, 0, 0, 0],
                            xd[:, :, :, ::2, ::2])
    expected = torch.relu(out + _bn(shortcut, block.downsample[1]))
    assert got.shape == (2, 512, 3, 3, 3)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_cli_writes_masn_motion_global_rows(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    make_gif(videos / "tumblr_x.gif", size="97x61", seconds=1.5)
    torch.manual_seed(4)
    weights = tmp_path / "i3d_r50_kinetics.pth"
    torch.save(I3Res50().state_dict(), weights)
    out = tmp_path / "tgif_i3d_hw7_perclip_avgpool.hdf5"
    argv = ["--quiet", "--videos", str(videos), "--out", str(out), "--weights", str(weights),
            "--workers", "0", "--num-clips", "3", "--clip-len", "8"]
    assert main(I3dExtractor, argv) == 0
    with h5py.File(out, "r") as f:
        assert list(f) == ["tumblr_x"]
        rows = f["tumblr_x"][()]
    assert rows.shape == (3, 2048) and rows.dtype == np.float32
    clips = load_clips(videos / "tumblr_x.gif", argparse.Namespace(num_clips=3, clip_len=8, clip_stride=1))
    assert clips.shape == (3, 3, 8, 224, 224) and clips.dtype == np.uint8
    with torch.no_grad():
        expected = ClipMaps(i3d_r50(weights))(torch.from_numpy(clips[1:2])).mean(dim=(2, 3))
    np.testing.assert_allclose(rows[1], expected[0].numpy(), rtol=1e-4, atol=1e-4)
