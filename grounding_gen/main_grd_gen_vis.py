"""Heat maps of the stage-1 spatial grounding: where in the frame the audio is heard.

    python grounding_gen/main_grd_gen_vis.py --checkpoint runs/grounding/checkpoints/best.pt \
        --audio_dir data/feats/vggish --video_dir data/frames --videos 00000093 00000238 --frames 0 5 9

For each chosen video and frame (0-9, the first ten seconds) the net's audio-guided softmax over the
14x14 positions (the positive of the original's pair) is drawn over the frame as in
``grounding_gen/main_grd_gen_vis.py --mode val``, but with correct colours, and saved as
``<out_dir>/<video>_<frame>.png``. Without ``--videos`` the first ``--max_videos`` of ``--label_json``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from avst.data.annotations import load_records, video_list
from avst.data.features import open_features
from avst.heatmap import overlay, save_png
from engine.cli import Bounded, CommandParser, accept_both_spellings, check_default_path, only_when, positive_int
from engine.device import resolve_device
from engine.errors import run_cli
from grounding_gen.dataset import FRAMES_PER_VIDEO, frame_files, load_frame


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="stage-1 weights (ours or the authors')")
    p.add_argument("--audio_dir", default="data/feats/vggish")
    p.add_argument("--packed", default=None)
    p.add_argument("--video_dir", default="data/frames")
    p.add_argument("--videos", nargs="*", default=None)
    p.add_argument("--label-json", default="data/json/avqa-train_real.json")
    p.add_argument("--max-videos", type=positive_int, default=10)
    p.add_argument("--frames", nargs="*", type=Bounded(int, 0, FRAMES_PER_VIDEO - 1),
                   default=list(range(FRAMES_PER_VIDEO)), help="frames to draw (stage 1 sees the first ten)")
    p.add_argument("--out_dir", default="runs/grounding_vis")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    only_when(p, ["--label-json", "--max-videos"], lambda a: not a.videos, "with --videos (which names the videos)")
    only_when(p, ["--audio_dir"], lambda a: a.packed is None, "with --packed (the audio comes from the packed store)")
    return accept_both_spellings(p)


@torch.no_grad()
def main(argv: list[str] | None = None) -> list[Path]:
    from avst.model import load_avst_state
    from engine.checkpoint import load_checkpoint, model_state
    from grounding_gen.model import GroundingNet

    args = build_parser().parse_command(argv)
    for dest in ("video_dir", *(() if args.packed else ("audio_dir",))):
        check_default_path(args, dest, "folder")
    if not args.videos:
        check_default_path(args, "label_json")
    device = resolve_device(args.device)
    model = GroundingNet()
    load_avst_state(model, model_state(load_checkpoint(args.checkpoint)))
    model.to(device).eval()
    audio = open_features("audio", args.audio_dir, args.packed)
    videos = args.videos or video_list(load_records(args.label_json))[:args.max_videos]
    written = []
    for video in videos:
        files = frame_files(args.video_dir, video)
        rows = audio.read(video, np.array(args.frames))
        frames = torch.stack([load_frame(files[f]) for f in args.frames])
        a = torch.from_numpy(np.ascontiguousarray(rows)).float().unsqueeze(1).to(device)
        p, _ = model(a, frames.unsqueeze(1).to(device), return_map=True)
        for k, f in enumerate(args.frames):
            with Image.open(files[f]) as img:
                rgb = np.asarray(img.convert("RGB"))
            written.append(save_png(Path(args.out_dir) / f"{video}_{f:02d}.png", overlay(rgb, p[k, 0].cpu().numpy())))
    print(f"wrote {len(written)} heat maps to {args.out_dir}")
    return written


def cli() -> int:
    """Console entry point (pyproject [project.scripts])."""
    return run_cli(main)


if __name__ == "__main__":
    raise SystemExit(cli())
