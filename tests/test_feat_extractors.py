"""Each model extractor: output shape, dtype and layout, values against an independent torchvision
path on the same frames, weights handling, and an HDF5 run killed and resumed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torchvision import transforms

from feat_script.base import main
from feat_script.decode import read_frames
from feat_script.extract_14x14 import Res18x14
from feat_script.extract_r2plus1d import R2Plus1D
from feat_script.extract_resnet import ResNetGlobal
from feat_script.manifest import read_failures, read_manifest, sha256_file
from feat_script.models.resnet_stride1 import resnet18_stride1
from feat_script.recipes import IMAGENET_MEAN, IMAGENET_STD, KINETICS_MEAN, KINETICS_STD
from feat_script.sampling import masn_frame_indices, read_fixed60
from feat_script.stores import PackedStore
from feat_script.synthetic_video import make_corrupt, make_gif, make_pattern_video

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """Two good videos (odd size mp4 with audio, GIF) and a corrupt one."""
    folder = tmp_path_factory.mktemp("ext_videos")
    odd = make_pattern_video(folder / "odd.mp4", size="97x61", seconds=3)
    make_gif(folder / "anim.gif")
    make_corrupt(folder / "broken.mp4", odd)
    return folder


def run(extractor, *args: str, seed: int = 0, exact: bool = True) -> int:
    """In-process CLI run; ``exact`` runs the model as built so it can be compared at 1e-5."""
    torch.manual_seed(seed)  # --random-init weights, reproducible for the reference below
    return main(extractor, ["--quiet", "--workers", "0", "--random-init", *args] + (["--exact"] if exact else []))


def pil_frames(video: Path, indices) -> list[Image.Image]:
    return [Image.fromarray(f) for f in read_frames(video, indices=indices)]


def test_14x14_npy_and_packed_match_the_originals_recipe(tmp_path, videos):
    common = ("--videos", str(videos), "--seconds", "3")  # exit status 1: broken.mp4 is listed as failed
    assert run(Res18x14, *common, "--out", str(tmp_path / "raw"), "--jpeg-quality", "0") == 1
    assert run(Res18x14, *common, "--out", str(tmp_path / "npy")) == 1  # JPEG round trip, as the original
    assert run(Res18x14, *common, "--out", str(tmp_path / "pk"), "--store", "packed", exact=False) == 1
    torch.manual_seed(0)
    model = resnet18_stride1().eval()
    tf = transforms.Compose(
        [
            transforms.Resize([224, 224]),
            transforms.ToTensor(),
            transforms.Normalize(KINETICS_MEAN, KINETICS_STD),
        ]
    )  # AVST extract_14x14_feat.py
    packed = np.load(tmp_path / "pk" / "res18_14x14.npy", mmap_mode="r")
    index = json.loads((tmp_path / "pk" / "res18_14x14.index.json").read_text())
    for vid, ext in (("odd", ".mp4"), ("anim", ".gif")):
        frames = read_fixed60(videos / f"{vid}{ext}", seconds=3)
        jpgs = []
        for i, frame in enumerate(frames):  # the original: imageio.imsave (PIL, quality 75), Image.open
            Image.fromarray(frame).save(tmp_path / f"{vid}{i}.jpg", quality=75)
            jpgs.append(Image.open(tmp_path / f"{vid}{i}.jpg").convert("RGB"))
        with torch.no_grad():
            want_raw = model(torch.stack([tf(Image.fromarray(f)) for f in frames])).numpy()
            want = model(torch.stack([tf(im) for im in jpgs])).numpy()
        got = np.load(tmp_path / "npy" / f"{vid}.npy")
        assert got.shape == (3, 512, 14, 14) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
        np.testing.assert_allclose(np.load(tmp_path / "raw" / f"{vid}.npy"), want_raw, atol=1e-5, rtol=0)
        start, stop = index["videos"][vid]
        np.testing.assert_allclose(packed[start:stop], got, atol=1e-5 * np.abs(got).max(), rtol=0)
    assert [f["video_id"] for f in read_failures(tmp_path / "npy")] == ["broken"]
    assert read_manifest(tmp_path / "npy")["weights"] == "random-init"
    from avst.data.features import NpyFeatures, PackedFeatures  # AVST's loaders read what the extractor wrote

    reader = NpyFeatures(tmp_path / "npy", "visual")
    np.testing.assert_array_equal(reader.read("odd", np.array([0, 2])), np.load(tmp_path / "npy" / "odd.npy")[[0, 2]])
    packed_reader = PackedFeatures(tmp_path / "pk", "visual")
    start, _ = index["videos"]["anim"]
    assert packed_reader.num_rows("anim") == 3
    np.testing.assert_array_equal(packed_reader.read("anim", np.array([1, 5])), packed[[start + 1, start + 2]])


def test_resnet152_masn_hdf5_layout_keyed_by_tgif_key_reads_in_masn_loader(tmp_path, videos):
    from masn.data.features import VideoFeatures

    feat = tmp_path / "feat_r6_vsync2"
    csv = tmp_path / "Total_count_question.csv"
    csv.write_text("gif_name\tquestion\tanswer\tvid_id\tkey\nodd\tq\t3\tCOUNT1\t5\nanim\tq\t2\tCOUNT2\t16\n")
    out = feat / "res152_avgpool.hdf5"
    args = ("--videos", str(videos), "--out", str(out), "--masn", "--num-clips", "2", "--batch-size", "1")
    assert run(ResNetGlobal, *args, "--id-map", str(csv)) == 0
    with h5py.File(out) as f:
        assert sorted(f.keys()) == ["16", "5"]
        for key in ("16", "5"):
            assert f[key].shape == (2, 2048) and f[key].dtype == np.float32
            assert (f[key][()] >= 0).all()  # average of ReLU outputs
        res = {key: f[key][()] for key in f}
    manifest = read_manifest(out)
    assert manifest["sampling"]["mode"] == "masn" and manifest["sampling"]["num_clips"] == 2
    assert manifest["row_shapes"] == {"": [2048]} and manifest["model"]["arch"] == "torchvision resnet152"
    # the other three MASN files, filled with zeros in the same layouts, so MASN's reader can open the set
    others = {
        "i3d_avg": ("tgif_i3d_hw7_perclip_avgpool.hdf5", (2, 2048)),
        "i3d_roi": ("tgif_i3d_roialign_hw7_perclip_avgpool_obj10.hdf5", (2, 10, 2048)),
    }
    paths = {"res_avg": out}
    for role, (name, shape) in others.items():
        paths[role] = feat / name
        with h5py.File(paths[role], "w") as f:
            for key in res:
                f[key] = np.zeros(shape, np.float32)
    paths["res_roi"] = feat / "tgif_btup_f_obj10.hdf5"
    with h5py.File(paths["res_roi"], "w") as f:
        for key in res:
            f[f"image_features/{key}"] = np.zeros((2, 10, 2048), np.float32)
            f[f"spatial_features/{key}"] = np.zeros((2, 10, 6), np.float32)
    reader = VideoFeatures(paths, key_prefix="", v_max_length=20)
    res_avg, *_, length = reader.read(5)
    assert length == 2 and res_avg.shape == (20, 2048)
    np.testing.assert_array_equal(res_avg[:2], res["5"])
    reader.close()


def test_resnet18_global_matches_torchvision_transforms(tmp_path, videos):
    assert (
        run(
            ResNetGlobal,
            "--videos",
            str(videos),
            "--out",
            str(tmp_path / "r18"),
            "--sampling",
            "masn",
            "--num-clips",
            "3",
        )
        == 1  # broken.mp4 fails
    )
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    model.fc = torch.nn.Identity()
    tf = transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )  # AVST extract_rgb_feat.py
    video = videos / "odd.mp4"
    with torch.no_grad():
        want = model(torch.stack([tf(im) for im in pil_frames(video, masn_frame_indices(75, 3))])).numpy()
    got = np.load(tmp_path / "r18" / "odd.npy")
    assert got.shape == (3, 512) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_r2plus1d_one_frame_clips_match_the_original_recipe_and_real_clips_shape(tmp_path, videos):
    assert run(R2Plus1D, "--videos", str(videos), "--out", str(tmp_path / "r1")) == 1
    torch.manual_seed(0)
    net = torchvision.models.video.r2plus1d_18(weights=None)
    net = torch.nn.Sequential(*list(net.children())[:-1]).eval()  # as extract_3D_feat.py
    tf = transforms.Compose(
        [
            transforms.Resize((112, 112)),
            transforms.ToTensor(),
            transforms.Normalize(KINETICS_MEAN, KINETICS_STD),
        ]
    )
    video = videos / "anim.gif"
    frames = [Image.fromarray(f) for f in read_frames(video, rate=1)]
    with torch.no_grad():
        want = net(torch.stack([tf(im) for im in frames])[:, :, None]).squeeze().numpy()
    got = np.load(tmp_path / "r1" / "anim.npy")
    assert got.shape == (len(frames), 512) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)

    clip_args = ("--clip-len", "4", "--sampling", "masn", "--num-clips", "2", "--batch-size", "1")
    assert run(R2Plus1D, "--videos", str(videos), "--out", str(tmp_path / "r4"), *clip_args, exact=False) == 1
    assert np.load(tmp_path / "r4" / "odd.npy").shape == (2, 512)


def test_weights_from_cache_recorded_by_sha256_and_missing_weights_error(tmp_path, videos, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    out = tmp_path / "r18"
    args = [
        "--quiet",
        "--workers",
        "0",
        "--videos",
        str(videos),
        "--out",
        str(out),
        "--sampling",
        "masn",
        "--num-clips",
        "1",
    ]
    assert main(ResNetGlobal, args) == 2
    err = capsys.readouterr().err
    assert "resnet18-5c106cde.pth" in err and "download.pytorch.org" in err
    cache = tmp_path / "torch_home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    weights = cache / "resnet18-f37072fd.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    assert main(ResNetGlobal, args) == 1
    assert read_manifest(out)["weights"] == {"path": str(weights), "sha256": sha256_file(weights)}
    bad = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, bad)
    assert main(ResNetGlobal, [*args, "--weights", str(bad)]) == 2
    assert "not a resnet18 state_dict" in capsys.readouterr().err


def _stored(out: Path, store: str) -> dict[str, np.ndarray]:
    if store == "hdf5":
        with h5py.File(out) as f:
            return {vid: f[vid][()] for vid in f}
    packed = PackedStore(out, default_kind="resnet18_avgpool")
    return {vid: np.array(packed.read(vid)) for vid in packed.index()["videos"]}


@pytest.mark.parametrize("store,staging", [("hdf5", "feat.parts"), ("packed", "feat/parts")])
def test_run_killed_after_two_videos_resumes_complete(tmp_path, videos, store, staging):
    vids = tmp_path / "vids"
    vids.mkdir()
    for name in ("odd.mp4", "anim.gif", "broken.mp4"):
        os.symlink(videos / name, vids / name)
    make_pattern_video(vids / "third.mkv", seconds=1, audio=None)
    weights = tmp_path / "w.pth"
    torch.manual_seed(1)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    common = [
        "--videos",
        str(vids),
        "--store",
        store,
        "--weights",
        str(weights),
        "--sampling",
        "masn",
        "--num-clips",
        "2",
        "--workers",
        "0",
        "--quiet",
    ]
    out = tmp_path / "feat"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "tests" / "killed_extractor.py"),
            "2",
            "feat_script.extract_resnet:ResNetGlobal",
            *common,
            "--out",
            str(out),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == -9, proc.stderr
    assert not (out.is_file() or (out / "resnet18_avgpool.npy").exists())  # killed before the merge
    assert len(list((tmp_path / staging).glob("*.npy"))) == 2  # only complete staged parts
    assert main(ResNetGlobal, [*common, "--out", str(out)]) == 1
    assert main(ResNetGlobal, [*common, "--out", str(tmp_path / "clean")]) == 1
    assert not (tmp_path / staging).exists() or not any((tmp_path / staging).iterdir())
    got, clean = _stored(out, store), _stored(tmp_path / "clean", store)
    assert sorted(got) == sorted(clean) == ["anim", "odd", "third"]
    for vid in got:
        np.testing.assert_array_equal(got[vid], clean[vid])
    assert read_manifest(out)["counts"]["already_done"] == 2
