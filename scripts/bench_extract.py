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

QA-TIGER / TSPM features (``--only clip``, ``--only vit-tome``; the ``clip`` extra): the reference is
written the way those repositories' scripts are: MUSIC-AVQA's 1-fps frames (middle of each second) saved
as JPEGs, then each JPEG opened with PIL, transformed with torchvision and run through the model alone
(batch 1: ``encode_image``, or the ViT with token merging), on the same random weights as ours. Prints
videos/s of each and the ratio, in one run. ``--small`` uses the tests' small networks (a CPU smoke run).

    python scripts/bench_extract.py --only clip --device cuda --videos 8 --batch-size 120
    python scripts/bench_extract.py --only vit-tome --small --videos 2 --seconds 6
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

from benchkit.small_sota import TINY_TOME, tiny_clip_arch
from benchkit.timing import synchronize
from feat_script.base import main
from feat_script.decode import ffmpeg_exe
from feat_script.extract_14x14 import Res18x14
from feat_script.extract_resnet import ResNetGlobal
from feat_script.models.resnet_stride1 import resnet18_stride1
from feat_script.recipes import AVST_SECONDS, IMAGENET_MEAN, IMAGENET_STD, JPEG_QUALITY, KINETICS_MEAN, KINETICS_STD
from feat_script.recipes_sota import CLIP_ARCH, CLIP_MEAN, CLIP_STD, TOME_ARCH, TOME_LAYERS, TOME_R
from feat_script.sampling import read_fixed60
from feat_script.synthetic_video import make_pattern_video
from feat_script.tome import ToMeViT


def make_videos(folder: Path, count: int, seconds: float, size: str) -> list[Path]:
    """``count`` silent testsrc2 mp4s (yuv420p, 25 fps) of ``seconds`` + 0.37 s x their index."""
    return [make_pattern_video(folder / f"video{i}.mp4", size=size, seconds=seconds + 0.37 * i, audio=None,
                               pattern="testsrc2", pix_fmt="yuv420p") for i in range(count)]


class Laps:
    """Seconds per named stage of a loop, each stage timed as a lap of one clock."""

    def __init__(self, stages: list[str]) -> None:
        self.seconds = dict.fromkeys(stages, 0.0)
        self.clock = time.perf_counter()

    def __call__(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] += now - self.clock
        self.clock = now


def naive(
    videos: list[Path], work: Path, build, tf, device: torch.device
) -> tuple[dict[str, float], int, dict[str, np.ndarray]]:
    """The originals' loop; returns (seconds per stage, frames, features)."""
    lap = Laps(["model load", "ffmpeg -> JPEG", "PIL load + transform", "model forward", "save"])

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
    return lap.seconds, frames, feats


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


def peers_loop(videos: list[Path], work: Path, build, tf, device: torch.device):
    """QA-TIGER's and TSPM's scripts: 1-fps JPEGs on disk, then one frame per forward; returns (seconds
    per stage, features by video)."""
    lap = Laps(["model load", "frames -> JPEG", "PIL load + transform", "model forward", "save"])

    model = build().to(device)
    lap("model load")
    feats = {}
    for video in videos:
        jpgs = work / video.stem
        jpgs.mkdir(parents=True)
        for i, frame in enumerate(read_fixed60(video, AVST_SECONDS), start=1):  # MUSIC-AVQA's adaptive frames
            Image.fromarray(frame).save(jpgs / f"{i:08d}.jpg", quality=JPEG_QUALITY)
        lap("frames -> JPEG")
        rows = []
        for path in sorted(glob.glob(str(jpgs / "*.jpg"))):
            image = tf(Image.open(path).convert("RGB"))[None].to(device)
            lap("PIL load + transform")
            with torch.no_grad():
                rows.append(model(image).float().cpu().numpy())
            synchronize(device)
            lap("model forward")
        feats[video.stem] = np.concatenate(rows)
        np.save(work / f"{video.stem}.npy", feats[video.stem])
        lap("save")
    return lap.seconds, feats


def sota_parts(name: str, small: bool):
    """(our extractor, its flags beyond the common ones, the reference model builder from a weights
    file, the reference's torchvision transform, the random weights' state_dict)."""
    from torchvision.transforms import InterpolationMode

    from feat_script.extract_clip import Clip
    from feat_script.extract_vit_tome import VitTome

    if name == "clip":
        import open_clip

        arch = tiny_clip_arch() if small else CLIP_ARCH
        size = open_clip.get_model_config(arch)["vision_cfg"]["image_size"]

        def build_clip(weights: Path | None = None) -> torch.nn.Module:
            model = open_clip.create_model(arch, force_quick_gelu=True).eval()
            if weights is not None:
                model.load_state_dict(torch.load(weights, weights_only=True))
            return ImageTower(model)

        tf = transforms.Compose([transforms.Resize(size, interpolation=InterpolationMode.BICUBIC),
                                 transforms.CenterCrop(size), transforms.ToTensor(),
                                 transforms.Normalize(CLIP_MEAN, CLIP_STD)])
        return Clip, {"arch": arch}, build_clip, tf, build_clip().model.state_dict()
    import timm

    tome = TINY_TOME if small else {"arch_overrides": None, "r": TOME_R, "merge_layers": TOME_LAYERS}
    size = (tome["arch_overrides"] or {}).get("img_size", 384)

    def build_vit(weights: Path) -> torch.nn.Module:
        vit = timm.create_model(TOME_ARCH, pretrained=False, **tome["arch_overrides"] or {}).eval()
        vit.load_state_dict(torch.load(weights, weights_only=True))  # timm's file holds the classifier too
        vit.reset_classifier(0)
        return ToMeViT(vit, [tome["r"]] * tome["merge_layers"]).eval()

    tf = transforms.Compose([transforms.Resize(int(256 / 224 * size), interpolation=InterpolationMode.BICUBIC),
                             transforms.CenterCrop(size), transforms.ToTensor(),
                             transforms.Normalize((0.5,) * 3, (0.5,) * 3)])  # TSPM's extract_tome14.py
    state = timm.create_model(TOME_ARCH, pretrained=False, **tome["arch_overrides"] or {}).state_dict()
    return VitTome, tome, build_vit, tf, state


class ImageTower(torch.nn.Module):
    """``encode_image`` as a module's forward (the reference loop calls ``model(image)``)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(images)


def bench_sota(name: str, videos: list[Path], root: Path, args: argparse.Namespace) -> None:
    """Ours (the extractor, batches across videos) against the peers' loop, same random weights."""
    from feat_script.base import run

    torch.manual_seed(0)
    extractor_cls, settings, build, tf, state = sota_parts(name, args.small)
    weights = root / f"{name}.pth"
    torch.save(state, weights)
    device = torch.device(args.device)
    stages, ref = peers_loop(videos, root / f"peers_{name}", lambda: build(weights), tf, device)
    t_peers = sum(stages.values())
    extractor = extractor_cls(extractor_cls.Config(weights=weights, device=args.device, batch_size=args.batch_size,
                                                   amp=args.amp, **settings))
    start = time.perf_counter()
    run(extractor, argparse.Namespace(videos=videos[0].parent, out=root / f"ours_{name}", store="npy",
                                      workers=args.workers, id_map=None, shard="0/1", allow_foreign=False, quiet=True))
    t_ours = time.perf_counter() - start
    got = {p.stem: np.load(p) for p in sorted((root / f"ours_{name}").glob("*.npy"))}
    assert sorted(got) == sorted(ref) and all(got[k].shape == ref[k].shape for k in ref)
    err = max(np.abs(got[k] - ref[k]).max() for k in ref)
    scale = max(np.abs(r).max() for r in ref.values())
    n = len(videos)
    print(f"{name}{' (small networks)' if args.small else ''}: {n} videos, {AVST_SECONDS} frames each")
    print(f"  peers' loop (JPEGs, one frame per forward): {t_peers:7.1f} s  {n / t_peers:7.3f} videos/s")
    print("    " + ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in stages.items()))
    print(f"  ours (workers={args.workers}, batch={args.batch_size}, amp={args.amp}): {t_ours:7.1f} s  "
          f"{n / t_ours:7.3f} videos/s")
    print(f"  ratio ours/peers: {t_peers / t_ours:.2f}x   output max abs diff {err:.3g} (max |ref| {scale:.3g})")


SOTA = ("clip", "vit-tome")


def main_cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=60, help="video length (MUSIC-AVQA's are 60 s)")
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--only", choices=[*RECIPES, *SOTA], default=None,
                        help="one extractor (default: 14x14 and resnet152; clip and vit-tome only when named)")
    parser.add_argument("--small", action="store_true", help="clip / vit-tome: the tests' small networks")
    parser.add_argument("--amp", choices=["off", "bf16", "fp16"], default="off", help="clip / vit-tome: ours' --amp")
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
            if name in SOTA:
                bench_sota(name, videos, root, args)
                continue
            extractor, build, tf, extra = RECIPES[name]
            bench(name, extractor, build, tf, (3, 224, 224), extra, videos, root, args)


if __name__ == "__main__":
    main_cli()
