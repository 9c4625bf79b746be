"""Features for one question: the extractor CLIs (files, then read back) vs scripts/answer.py (in memory).

    PYTHONPATH=. python scripts/bench_answer.py [--model avst|masn|both] [--seconds 3] [--out /tmp/bench_answer]

Both routes get the same random weights (saved as weight files, so the CLIs load them with
``--weights``) and the same generated video; the script checks that the features the models would see
agree (max abs difference printed, exit 1 above 1e-5 of the largest value) and prints wall times and
the ratio. The CLIs run with ``--exact`` (no BatchNorm folding), as the answer path does.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402

from answering import StageTimer  # noqa: E402
from feat_script.base import main as run_extractor  # noqa: E402
from feat_script.synthetic_video import Shape, make_video  # noqa: E402

CPU = torch.device("cpu")
MASN_FLAGS = ["--num-clips", "3", "--clip-len", "8"]
DETECTOR_FLAGS = ["--det-min-size", "96", "--det-max-size", "128"]


def save(net: torch.nn.Module, path: Path) -> Path:
    torch.save(net.state_dict(), path)
    return path


def compare(name: str, ours: np.ndarray, ref: np.ndarray) -> bool:
    err, scale = float(np.abs(ours - ref).max()), float(np.abs(ref).max())
    ok = ours.shape == ref.shape and err <= 1e-5 * max(scale, 1.0)
    print(f"  {name:22s} {str(ours.shape):16s} max abs diff {err:.3g} (largest value {scale:.3g}) "
          f"{'ok' if ok else 'MISMATCH'}")
    return ok


def bench_avst(video: Path, work: Path) -> bool:
    from avst.answer import sampled_rows, video_features
    from feat_script.extract_14x14 import Res18x14
    from feat_script.extract_vggish import VggishExtractor
    from feat_script.vggish import VGGish

    r18, vgg = save(torchvision.models.resnet18(), work / "r18.pth"), save(VGGish(), work / "vggish.pth")
    common = ["--videos", str(video.parent), "--workers", "0", "--quiet", "--device", "cpu", "--exact"]
    start = time.perf_counter()
    assert run_extractor(VggishExtractor, [*common, "--out", str(work / "vggish"), "--weights", str(vgg)]) == 0
    assert run_extractor(Res18x14, [*common, "--out", str(work / "r18"), "--weights", str(r18)]) == 0
    rows = sampled_rows()
    ref = [np.load(work / "vggish" / f"{video.stem}.npy")[rows], np.load(work / "r18" / f"{video.stem}.npy")[rows]]
    t_files = time.perf_counter() - start
    start = time.perf_counter()
    audio, visual, _ = video_features(video, resnet_weights=r18, vggish_weights=vgg, random_init=False,
                                      device=CPU, amp="off", timer=StageTimer())
    t_memory = time.perf_counter() - start
    print(f"AVST: extractor CLIs + files {t_files:.1f} s, in memory {t_memory:.1f} s, ratio {t_files / t_memory:.2f}x")
    return compare("VGGish rows 0::6", audio[0].numpy(), ref[0]) & compare("ResNet-18 14x14", visual[0].numpy(), ref[1])


def bench_masn(video: Path, work: Path) -> bool:
    from feat_script.extract_i3d import I3dExtractor
    from feat_script.extract_objects import ObjectsExtractor
    from feat_script.extract_resnet import ResNetGlobal
    from feat_script.i3d import I3Res50
    from feat_script.objects import faster_rcnn
    from masn.answer import ExtractorWeights, FeatureSettings, MasnExtractors

    i3d = I3Res50()
    for m in i3d.modules():  # non-trivial BatchNorm statistics, so folding mistakes would show
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    r152, i3d_w = save(torchvision.models.resnet152(), work / "r152.pth"), save(i3d, work / "i3d.pth")
    det = save(faster_rcnn(None), work / "det.pth")
    common = ["--videos", str(video.parent), "--workers", "0", "--quiet", "--device", "cpu", "--exact"]
    out = {k: work / f"{k}.h5" for k in ("res", "i3d", "obj", "mot")}
    start = time.perf_counter()
    jobs = [(ResNetGlobal, ["--masn", "--num-clips", "3", "--out", str(out["res"]), "--weights", str(r152)]),
            (I3dExtractor, [*MASN_FLAGS, "--out", str(out["i3d"]), "--weights", str(i3d_w)]),
            (ObjectsExtractor, [*MASN_FLAGS, *DETECTOR_FLAGS, "--stream", "appearance", "--out", str(out["obj"]),
                                "--weights", str(r152), "--detector-weights", str(det)]),
            (ObjectsExtractor, [*MASN_FLAGS, "--stream", "motion", "--boxes", str(out["obj"]), "--out",
                                str(out["mot"]), "--weights", str(i3d_w)])]
    for cls, argv in jobs:
        assert run_extractor(cls, [*common, *argv]) == 0
    vid = video.stem
    with h5py.File(out["res"]) as a, h5py.File(out["i3d"]) as b, h5py.File(out["obj"]) as c, \
            h5py.File(out["mot"]) as d:
        ref = [a[vid][()], b[vid][()], c[f"image_features/{vid}"][()], c[f"spatial_features/{vid}"][()], d[vid][()]]
    t_files = time.perf_counter() - start
    start = time.perf_counter()
    extractors = MasnExtractors(FeatureSettings(3, 8, 1, 96, 128), ExtractorWeights(r152, i3d_w, det), CPU)
    ours = extractors(video, StageTimer())
    t_memory = time.perf_counter() - start
    print(f"MASN: extractor CLIs + files {t_files:.1f} s, in memory {t_memory:.1f} s, ratio {t_files / t_memory:.2f}x")
    names = ("ResNet-152 global", "I3D global", "ResNet-152 RoIAlign", "boxes", "I3D RoIAlign")
    return all([compare(n, o, r) for n, o, r in zip(names, ours, ref)])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["avst", "masn", "both"], default="both")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--out", type=Path, default=Path("/tmp/bench_answer"))
    args = p.parse_args()
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    video = make_video(args.out / "videos" / "1.mp4", [Shape("red", 440, 20, 40), Shape("blue", 660, 70, 25)],
                       seconds=args.seconds)
    ok = True
    if args.model in ("avst", "both"):
        ok &= bench_avst(video, args.out)
    if args.model in ("masn", "both"):
        ok &= bench_masn(video, args.out)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
