"""The extractor registry and API: every extract_*.py is reachable by name (a wrong name is one line,
exit 2), is an object with ``extract(video)`` built from a Config that the CLI fills from its flags,
and finds its weights through the one weights table."""
from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from feat_script import recipes
from feat_script.base import Extractor, add_common_args, main
from feat_script.decode import DecodeError
from feat_script.extract_objects import ObjectsConfig, ObjectsExtractor
from feat_script.extract_resnet import ResNetConfig, ResNetGlobal
from feat_script.registry import EXTRACTORS, extractor_class
from feat_script.synthetic_video import make_pattern_video
from feat_script.weights import WeightsNotFound, resolve

ROOT = Path(__file__).resolve().parents[1]


def test_every_extractor_module_is_registered_and_resolves():
    modules = {p.stem for p in (ROOT / "feat_script").glob("extract_*.py")}
    registered = {target.split(":")[0].rsplit(".", 1)[1] for target in EXTRACTORS.values()}
    assert registered == modules
    for name in EXTRACTORS:
        assert issubclass(extractor_class(name), Extractor)


def test_module_cli_runs_the_named_extractor_and_refuses_unknown_names():
    run = [sys.executable, "-m", "feat_script"]
    helped = subprocess.run([*run, "frames", "-h"], capture_output=True, text=True, cwd=ROOT)
    assert helped.returncode == 0 and "extract_frames" in helped.stdout
    wrong = subprocess.run([*run, "vgish", "--videos", "x", "--out", "y"], capture_output=True, text=True, cwd=ROOT)
    assert wrong.returncode == 2
    assert wrong.stderr.strip().splitlines() == [wrong.stderr.strip()] and "unknown extractor 'vgish'" in wrong.stderr


RUN_LOOP_FLAGS = {"videos", "out", "store", "workers", "id_map", "shard", "allow_foreign", "quiet"}


def cli_args(cls: type[Extractor], *argv: str):
    parser = argparse.ArgumentParser()
    add_common_args(parser, cls.stores, cls.default_store, cls.default_batch_size)
    cls.add_args(parser)
    return parser.parse_args(["--videos", "v", "--out", "o", *argv])


def test_every_flag_but_the_run_loop_s_is_a_config_field():
    """The CLI is a thin layer: each extractor setting it parses reaches the extractor's Config."""
    for name in EXTRACTORS:
        cls = extractor_class(name)
        argv = ("--stream", "motion") if name == "objects" else ()
        flags = set(vars(cli_args(cls, *argv))) - RUN_LOOP_FLAGS
        assert flags <= {f.name for f in dataclasses.fields(cls.Config)}, name
        config = cls.config_from_args(cli_args(cls, *argv))
        assert all(getattr(config, flag) == getattr(cli_args(cls, *argv), flag) for flag in flags), name


def test_the_avst_recipe_is_what_the_cli_defaults_give():
    """AVST's features are the 14x14 and VGGish CLIs' defaults (the recipe is their single source)."""
    for kind, fixed in (("visual", {"sampling": "fixed60", "seconds": 60, "jpeg_quality": 75}),
                        ("audio", {"recipe": "avst", "num_secs": 60})):
        stream = recipes.AVST.streams[kind]
        cls = extractor_class(stream.extractor)
        defaults = cls(cls.config_from_args(cli_args(cls))).config
        assert recipes.build(stream).config == defaults
        assert {k: getattr(defaults, k) for k in fixed} == fixed  # the original scripts' values
    assert recipes.AVST.rows == (0, 6, 12, 18, 24, 30, 36, 42, 48, 54)  # avst dataloader: range(0, 60, 6)


@pytest.mark.slow
def test_extract_from_code_equals_what_the_cli_stores(tmp_path):
    """``extract(video)`` from code and the CLI give the same array (random weights of one seed)."""
    (tmp_path / "videos").mkdir()
    make_pattern_video(tmp_path / "videos" / "v.mp4", size="64x48", seconds=2)
    argv = ["--videos", str(tmp_path / "videos"), "--out", str(tmp_path / "out"), "--quiet", "--workers", "0",
            "--random-init", "--seed", "3", "--device", "cpu"]
    assert main(ResNetGlobal, argv) == 0
    stored = np.load(tmp_path / "out" / "v.npy")
    extractor = ResNetGlobal(ResNetConfig(random_init=True, seed=3, device="cpu"))
    got = extractor.extract(tmp_path / "videos" / "v.mp4")
    assert list(got) == ["resnet18_avgpool"] and got["resnet18_avgpool"].shape[1:] == (512,)
    assert np.array_equal(got["resnet18_avgpool"], stored)


@pytest.mark.slow
def test_weights_table_resolve_gives_the_file_or_one_line_naming_what_to_get(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(WeightsNotFound) as missing:
        resolve("resnet152")
    message = str(missing.value)
    assert "\n" not in message and "--weights PATH to resnet152-b121ed2d.pth" in message
    assert "https://download.pytorch.org/models/resnet152-b121ed2d.pth" in message
    assert "Nothing is downloaded" in message
    with pytest.raises(WeightsNotFound, match=r"^--i3d-weights .*nope\.pth: no such file \(I3D ResNet-50: "
                                              r"i3d_r50_kinetics\.pth from Get i3d_baseline"):
        resolve("i3d_r50", tmp_path / "nope.pth", flag="--i3d-weights")
    with pytest.raises(WeightsNotFound, match="not both"):
        resolve("vggish", tmp_path / "nope.pth", random_init=True)
    assert resolve("vggish", None, random_init=True) is None
    cached = tmp_path / "hub" / "checkpoints" / "resnet152-394f9c45.pth"  # the newer torchvision file
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")
    assert resolve("resnet152") == cached
    given = tmp_path / "mine.pth"
    given.write_bytes(b"")
    assert resolve("resnet152", given) == given
    (tmp_path / "videos").mkdir()
    make_pattern_video(tmp_path / "videos" / "v.mp4", size="32x24", seconds=1)
    proc = subprocess.run([sys.executable, "-m", "feat_script", "vggish", "--videos", str(tmp_path / "videos"), "--out",
                           str(tmp_path / "o")], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "TORCH_HOME": str(tmp_path / "empty")})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "vggish.pt" in proc.stderr


def test_motion_objects_take_boxes_from_memory_as_from_a_file(tmp_path):
    """``ObjectsConfig.boxes`` may be {video id: spatial features} (what answer.py passes on from the
    appearance stream) instead of an HDF5 file; a missing id or a wrong shape is a DecodeError."""
    spatial = np.zeros((3, 10, 6), np.float32)
    spatial[:, :2] = [0.1, 0.2, 0.5, 0.6, 0.4, 0.4]
    extractor = ObjectsExtractor(ObjectsConfig(stream="motion", num_clips=3, boxes={"a": spatial, "b": spatial[:2]}))
    np.testing.assert_array_equal(extractor._stored_boxes(tmp_path / "a.gif"), spatial)
    with pytest.raises(DecodeError, match="no boxes given for 'c'"):
        extractor._stored_boxes(tmp_path / "c.gif")
    with pytest.raises(DecodeError, match=r"expected \(3, 10, 6\)"):
        extractor._stored_boxes(tmp_path / "b.gif")


def test_r2plus1d_default_batch_holds_at_most_64_frames_and_a_given_batch_is_kept():
    """Sixteen 16-frame clips per forward took 3.1 GB on a CPU: the default scales with the clip length."""
    from feat_script.extract_r2plus1d import R2Plus1D

    def batch(**fields) -> int:
        return R2Plus1D(R2Plus1D.Config(**fields)).config.batch_size

    assert batch(clip_len=1) == 16 and batch(clip_len=8) == 8 and batch(clip_len=16) == 4
    assert batch(clip_len=100) == 1 and batch(clip_len=16, batch_size=16) == 16
    parser = argparse.ArgumentParser()
    add_common_args(parser, R2Plus1D.stores, R2Plus1D.default_store, R2Plus1D.default_batch_size)
    R2Plus1D.add_args(parser)
    args = parser.parse_args(["--videos", "v", "--out", "o", "--clip-len", "16"])
    assert R2Plus1D(R2Plus1D.config_from_args(args)).config.batch_size == 4  # the CLI leaves it to the rule
