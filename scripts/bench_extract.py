"""Extraction speed: our 14x14 and ResNet-152 extractors against a loop like the originals'.

The reference ("naive") does what AVST's feature scripts do: ffmpeg writes each video's 1-fps frames
as JPEGs (``ffmpeg -i v -r 1 %06d.jpg``), the frames are read back one by one with PIL and
transformed with torchvision, and all frames of one video go through the model in one forward pass
(eager, float32). Ours runs the extractor CLI with the same weights on the same videos (1 fps):
decoding in worker processes, no JPEGs, BatchNorm folded, channels_last. Both timings cover the
whole job (model loading included); the outputs are compared (they differ only by the JPEG loss
of the reference's frames). Prints frames/s of each, the ratio, where the reference's time goes, the
forward's speed alone (frames/s, GFLOP/s) and a bound: reference time / time of the folded forward
alone, which no pipeline running that forward can beat, however fast its decoding.

    python scripts/bench_extract.py                       # 2 generated videos of 60 s, 640x360, both extractors
    python scripts/bench_extract.py --videos 3 --seconds 8 --size 320x240 --only 14x14
"""

from __future__ import annotations

import argparse
import glob
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode
from torchvision import transforms

from benchkit.timing import synchronize
from feat_script.base import main
from feat_script.decode import ffmpeg_exe
from feat_script.extract_14x14 import Res18x14
from feat_script.extract_resnet import ResNetGlobal
from feat_script.models.resnet_stride1 import resnet18_stride1
from feat_script.recipes import IMAGENET_MEAN, IMAGENET_STD, KINETICS_MEAN, KINETICS_STD
from feat_script.synthetic_video import make_pattern_video


def make_videos(folder: Path, count: int, seconds: float, size: str) -> list[Path]:
    """``count`` silent testsrc2 mp4s (yuv420p, 25 fps) of ``seconds`` + 0.37 s x their index."""
    return [make_pattern_video(folder / f"video{i}.mp4", size=size, seconds=seconds + 0.37 * i, audio=None,
                               pattern="testsrc2", pix_fmt="yuv420p") for i in range(count)]


def naive(
    videos: list[Path], work: Path, build, tf, device: torch.device
) -> tuple[dict[str, float], int, dict[str, np.ndarray]]:
    """The originals' loop; returns (seconds per stage, frames, features)."""
    stages = dict.fromkeys(["model load", "ffmpeg -> JPEG", "PIL load + transform", "model forward", "save"], 0.0)
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        stages[stage] += now - clock
        clock = now

    model = build().eval().to(device)
    lap("model load")
    feats, frames = {}, 0
    for video in videos:
        jpgs = work / video.stem
        jpgs.mkdir(parents=True)
        subprocess.run(
            [ffmpeg_exe(), "-v", "error", "-i", str(video), "-y", "-r", "1", str(jpgs / "%06d.jpg")], check=True
        )
        lap("ffmpeg -> JPEG")
        images = [tf(Image.open(p).convert("RGB")) for p in sorted(glob.glob(str(jpgs / "*.jpg")))]
        lap("PIL load + transform")
        with torch.no_grad():
            out = model(torch.stack(images).to(device)).cpu().numpy()
        lap("model forward")
        np.save(work / f"{video.stem}.npy", out)
        feats[video.stem] = out
        frames += len(images)
        lap("save")
    return stages, frames, feats


def ours(extractor, videos: Path, out: Path, weights: Path, args: argparse.Namespace, extra: list[str]):
    start = time.perf_counter()
    main(
        extractor,
        [
            "--quiet",
            "--videos",
            str(videos),
            "--out",
            str(out),
            "--weights",
            str(weights),
            "--workers",
            str(args.workers),
            "--batch-size",
            str(args.batch_size),
            "--device",
            args.device,
            *extra,
        ],
    )
    seconds = time.perf_counter() - start
    return seconds, {p.stem: np.load(p) for p in sorted(out.glob("*.npy"))}


def model_only(build, shape: tuple[int, ...], batch: int, fast: bool, device: torch.device) -> tuple[float, float]:
    """(frames/s, GFLOP/s) of the forward pass alone (our optimisations when ``fast``), best of three."""
    model = build().eval()
    if isinstance(model, torchvision.models.ResNet):
        model.fc = torch.nn.Identity()
    x = torch.randn(batch, *shape)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(x)
    if fast:
        from torch.fx.experimental.optimization import fuse

        model = fuse(model).to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    model, x = model.to(device), x.to(device)
    best = float("inf")
    with torch.inference_mode():
        model(x)
        for _ in range(3):  # best of three: the machine may be shared
            synchronize(device)
            start = time.perf_counter()
            model(x)
            synchronize(device)
            best = min(best, time.perf_counter() - start)
    return batch / best, counter.get_total_flops() / best / 1e9


def bench(
    name: str, extractor, build, tf, shape, extra: list[str], videos: list[Path], root: Path, args: argparse.Namespace
) -> None:
    torch.manual_seed(0)
    weights = root / f"{name}.pth"
    torch.save(build().state_dict(), weights)
    device = torch.device(args.device)
    stages, frames, ref = naive(videos, root / f"naive_{name}", lambda: _load(build, weights), tf, device)
    t_naive = sum(stages.values())
    t_ours, got = ours(extractor, videos[0].parent, root / f"ours_{name}", weights, args, extra)
    assert sorted(got) == sorted(ref), (sorted(got), sorted(ref))
    assert all(got[k].shape == ref[k].shape for k in ref), "different frame counts"
    scale = max(np.abs(r).max() for r in ref.values())
    err = max(np.abs(got[k] - ref[k]).max() for k in ref)
    fps_naive, fps_ours = frames / t_naive, frames / t_ours
    print(f"{name}: {len(videos)} videos, {frames} frames")
    print(f"  naive (JPEG + PIL + one video per forward): {t_naive:7.1f} s  {fps_naive:6.2f} frames/s")
    print("    " + ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in stages.items()))
    print(
        f"  ours  (workers={args.workers}, batch={args.batch_size}):{'':12s}{t_ours:7.1f} s  {fps_ours:6.2f} frames/s"
    )
    print(
        f"  ratio ours/naive: {fps_ours / fps_naive:.2f}x   output max abs diff {err:.3g} "
        f"(relative to max |ref| {err / scale:.2e}; JPEG loss of the reference's frames)"
    )
    (eager, eager_gflops), (fused, fused_gflops) = (
        model_only(build, shape, args.batch_size, fast, device) for fast in (False, True)
    )
    print(
        f"  model only: eager {eager:.2f} frames/s ({eager_gflops:.0f} GFLOP/s), "
        f"folded+channels_last {fused:.2f} frames/s ({fused_gflops:.0f} GFLOP/s); "
        f"ceiling of the model part {fused / eager:.2f}x"
    )
    print(
        f"  bound: with decoding, JPEG, loading and saving all free and the forward at the folded speed, "
        f"no pipeline beats naive by more than {t_naive / (frames / fused):.2f}x here"
    )
    print(f"  end-to-end / model-only (folded): {fps_ours / fused:.0%} (target on a GPU: >= 50 %)")


def _load(build, weights: Path) -> torch.nn.Module:
    model = build()
    model.load_state_dict(torch.load(weights, weights_only=True))
    if isinstance(model, torchvision.models.ResNet):
        model.fc = torch.nn.Identity()  # extract_rgb_feat.py: last_linear = Identity
    return model


# name -> (our extractor, the reference model, the reference's torchvision transform, our CLI's flags)
RECIPES = {
    "14x14": (Res18x14, resnet18_stride1,
              transforms.Compose([transforms.Resize([224, 224]), transforms.ToTensor(),
                                  transforms.Normalize(KINETICS_MEAN, KINETICS_STD)]),
              ["--sampling", "1fps", "--jpeg-quality", "0"]),
    "resnet152": (ResNetGlobal, torchvision.models.resnet152,
                  transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                                      transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]),
                  ["--arch", "resnet152", "--sampling", "1fps"]),
}


def main_cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=60, help="video length (MUSIC-AVQA's are 60 s)")
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--only", choices=list(RECIPES), default=None)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i] (both pipelines and the model-only timing)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {where}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "videos").mkdir()
        videos = make_videos(root / "videos", args.videos, args.seconds, args.size)
        for name in [args.only] if args.only else RECIPES:
            extractor, build, tf, extra = RECIPES[name]
            bench(name, extractor, build, tf, (3, 224, 224), extra, videos, root, args)


if __name__ == "__main__":
    main_cli()
