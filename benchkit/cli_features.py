"""The features the answerers compute in memory, taken the long way: extractor CLIs, files, read back.

``masn.answer.MasnAnswerer`` / ``avst.answer.AvstAnswerer`` promise the same features as the extractor
CLIs for the same video and weights; ``tests/test_answer.py`` checks the promise with these helpers
and ``scripts/bench_answer.py`` prints both routes' figures. The CLIs run with ``--exact`` (no
BatchNorm folding), as the answerers do.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from feat_script.base import main as run_extractor

MASN_CLIP_FLAGS = ["--num-clips", "3", "--clip-len", "8"]
DETECTOR_FLAGS = ["--det-min-size", "96", "--det-max-size", "128"]


def _common(video: Path) -> list[str]:
    return ["--videos", str(video.parent), "--workers", "0", "--quiet", "--device", "cpu", "--exact"]


def _weights(flag: str, path: Path | None) -> list[str]:
    """``flag path``, or ``--random-init`` for None (the seed-0 weights the answerers draw too)."""
    return ["--random-init"] if path is None else [flag, str(path)]


def avst_cli_features(video: Path, work: Path, resnet18: Path | None, vggish: Path | None,
                      rows: np.ndarray) -> list[np.ndarray]:
    """[VGGish rows, ResNet-18 14x14 rows] of ``video`` (one of the files in its folder) as the CLIs write them."""
    from feat_script.extract_14x14 import Res18x14
    from feat_script.extract_vggish import VggishExtractor

    common = _common(video)
    for cls, out, weights in ((VggishExtractor, "vggish", vggish), (Res18x14, "r18", resnet18)):
        if run_extractor(cls, [*common, "--out", str(work / out), *_weights("--weights", weights)]) != 0:
            raise RuntimeError(f"{cls.name} failed on {video}")
    return [np.load(work / out / f"{video.stem}.npy")[rows] for out in ("vggish", "r18")]


def masn_cli_features(video: Path, work: Path, resnet152: Path | None, i3d: Path | None,
                      detector: Path | None) -> list[np.ndarray]:
    """[ResNet-152 global, I3D global, ResNet-152 RoIAlign, boxes, I3D RoIAlign] as the CLIs write them
    with ``MASN_CLIP_FLAGS`` and ``DETECTOR_FLAGS`` (None weights: ``--random-init``)."""
    from feat_script.extract_i3d import I3dExtractor
    from feat_script.extract_objects import ObjectsExtractor
    from feat_script.extract_resnet import ResNetGlobal

    out = {k: work / f"{k}.h5" for k in ("res", "i3d", "obj", "mot")}
    appearance = [*_weights("--weights", resnet152), *_weights("--detector-weights", detector)]
    jobs = [(ResNetGlobal, ["--masn", "--num-clips", "3", "--out", str(out["res"]), *_weights("--weights", resnet152)]),
            (I3dExtractor, [*MASN_CLIP_FLAGS, "--out", str(out["i3d"]), *_weights("--weights", i3d)]),
            (ObjectsExtractor, [*MASN_CLIP_FLAGS, *DETECTOR_FLAGS, "--stream", "appearance", "--out",
                                str(out["obj"]), *dict.fromkeys(appearance)]),
            (ObjectsExtractor, [*MASN_CLIP_FLAGS, "--stream", "motion", "--boxes", str(out["obj"]), "--out",
                                str(out["mot"]), *_weights("--weights", i3d)])]
    for cls, argv in jobs:
        if run_extractor(cls, [*_common(video), *argv]) != 0:
            raise RuntimeError(f"{cls.name} failed on {video}")
    vid = video.stem
    with h5py.File(out["res"]) as a, h5py.File(out["i3d"]) as b, h5py.File(out["obj"]) as c, \
            h5py.File(out["mot"]) as d:
        return [a[vid][()], b[vid][()], c[f"image_features/{vid}"][()], c[f"spatial_features/{vid}"][()], d[vid][()]]


def max_abs_diff(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float, bool]:
    """(max |ours - ref|, max |ref|, agree): agree when the shapes match and the difference is at most
    1e-5 of the largest value (float32 rounding of the same arithmetic)."""
    err, scale = float(np.abs(ours - ref).max()), float(np.abs(ref).max())
    return err, scale, ours.shape == ref.shape and err <= 1e-5 * max(scale, 1.0)
