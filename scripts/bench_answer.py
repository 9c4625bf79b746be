"""Features for one question: the extractor CLIs (files, then read back) vs scripts/answer.py (in memory).

    PYTHONPATH=. python scripts/bench_answer.py [--model avst|masn|both] [--seconds 3] [--out /tmp/bench_answer]

Both routes get the same random weights (saved as weight files, so the CLIs load them with
``--weights``) and the same generated video; the script checks that the features the models would see
agree (max abs difference printed, exit 1 above 1e-5 of the largest value) and prints wall times and
the ratio. The CLIs run with ``--exact`` (no BatchNorm folding), as the answer path does.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

from answering import StageTimer
from feat_script.cli_features import avst_cli_features, masn_cli_features, max_abs_diff
from feat_script.synthetic_video import Shape, make_video

CPU = torch.device("cpu")


def save(net: torch.nn.Module, path: Path) -> Path:
    torch.save(net.state_dict(), path)
    return path


def compare(name: str, ours: np.ndarray, ref: np.ndarray) -> bool:
    err, scale, ok = max_abs_diff(ours, ref)
    print(f"  {name:22s} {str(ours.shape):16s} max abs diff {err:.3g} (largest value {scale:.3g}) "
          f"{'ok' if ok else 'MISMATCH'}")
    return ok


def bench_avst(video: Path, work: Path) -> bool:
    from avst.answer import sampled_rows, video_features
    from feat_script.vggish import VGGish

    r18, vgg = save(torchvision.models.resnet18(), work / "r18.pth"), save(VGGish(), work / "vggish.pth")
    start = time.perf_counter()
    ref = avst_cli_features(video, work, r18, vgg, sampled_rows())
    t_files = time.perf_counter() - start
    start = time.perf_counter()
    audio, visual, _ = video_features(video, resnet_weights=r18, vggish_weights=vgg, random_init=False,
                                      device=CPU, amp="off", timer=StageTimer())
    t_memory = time.perf_counter() - start
    print(f"AVST: extractor CLIs + files {t_files:.1f} s, in memory {t_memory:.1f} s, ratio {t_files / t_memory:.2f}x")
    return compare("VGGish rows 0::6", audio[0].numpy(), ref[0]) & compare("ResNet-18 14x14", visual[0].numpy(), ref[1])


def bench_masn(video: Path, work: Path) -> bool:
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
    start = time.perf_counter()
    ref = masn_cli_features(video, work, r152, i3d_w, det)
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
