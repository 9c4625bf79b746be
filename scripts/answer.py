"""Ask a video a question: raw video -> features (in memory) -> MASN or AVST -> answer, top 5, attention.

    python scripts/answer.py --model avst --checkpoint runs/avst/checkpoints/best.pt --video v.mp4 \\
        --question "Is the <Object> in the video always playing?" --values violin \\
        --resnet18-weights resnet18-5c106cde.pth --vggish-weights checkpoints/vggish.pt --heatmaps out/
    python scripts/answer.py --model masn --task Action --checkpoint C --video v.gif \\
        --question "what does the man do 3 times" --candidates nod wave jump clap spin \\
        --resnet152-weights R --i3d-weights I --detector-weights D

The vocabulary, answer index and v_max_length come from the checkpoint. ``--random-init`` runs the
feature extractors with random weights (tests and the demo only; the output says so).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from answering import RANDOM_NOTE, AnswerError, add_extractor_args
from engine.checkpoint import CheckpointError
from engine.cli import accept_both_spellings
from engine.device import resolve_device
from engine.errors import run_cli
from feat_script.streams import bound_heap_growth


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["avst", "masn"], required=True)
    p.add_argument("--checkpoint", type=Path, required=True,
                   help="written by avst/main_avst.py, masn/main.py or masn/convert_checkpoint.py --csv_dir")
    p.add_argument("--video", type=Path, required=True, help="any file ffmpeg reads (mp4, gif, webm, ...)")
    p.add_argument("--question", required=True)
    p.add_argument("--values", nargs="*", default=[], help="AVST: fillers of the question's <...> slots")
    p.add_argument("--vocab-json", type=Path, default=None,
                   help="AVST: the official avqa-train.json, for the authors' weights-only avst.pt")
    p.add_argument("--task", choices=["Count", "Action", "Trans", "FrameQA", "MS-QA"], default=None,
                   help="MASN: default the checkpoint's")
    p.add_argument("--candidates", nargs="*", default=None, help="MASN Action/Trans: the 5 answers")
    p.add_argument("--heatmaps", type=Path, default=None,
                   help="AVST: write t<second>.png overlays of the 10 sampled seconds and temporal.png here")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--verbose", action="store_true", help="time each stage")
    add_extractor_args(p)
    return accept_both_spellings(p)


def run_avst(args, device) -> dict:
    from avst.answer import ask, write_heatmaps

    result = ask(args.video, args.question, args.values, args.checkpoint, resnet_weights=args.resnet18_weights,
                 vggish_weights=args.vggish_weights, random_init=args.random_init, device=device, amp=args.amp,
                 verbose=args.verbose, vocab_json=args.vocab_json)
    out = result.to_json()
    if args.heatmaps is not None:
        out["heatmaps"] = [str(p) for p in write_heatmaps(result, args.heatmaps)]
    return out


def run_masn(args, device) -> dict:
    from masn.answer import ExtractorWeights, FeatureSettings, ask

    if args.heatmaps is not None:
        raise AnswerError("--heatmaps is for --model avst (MASN has no spatial attention map to draw)")
    settings = FeatureSettings(args.num_clips, args.clip_len, args.clip_stride, args.det_min_size, args.det_max_size)
    weights = ExtractorWeights(args.resnet152_weights, args.i3d_weights, args.detector_weights, args.random_init)
    return ask(args.video, args.question, args.checkpoint, task=args.task, candidates=args.candidates,
               settings=settings, weights=weights, device=device, amp=args.amp, verbose=args.verbose).to_json()


def report(out: dict) -> str:
    lines = [f"answer: {out['answer']}"]
    if "count_raw" in out:
        lines.append(f"  (regression output {out['count_raw']:.4f}, rounded and clamped to 1..10)")
    for row in out.get("scores", []):
        lines.append(f"  {row['score']:9.4f}  {row['answer']}")
    if out["top5"]:
        lines.append("top 5:")
        lines += [f"  {row['prob']:.4f}  {row['answer']}" for row in out["top5"]]
    if out.get("heatmaps"):
        lines.append(f"heat maps: {len(out['heatmaps'])} PNGs in {Path(out['heatmaps'][0]).parent}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    bound_heap_growth()  # long videos: freed frame blocks go back to the system (feat_script/streams.py)
    if not args.video.is_file():
        print(f"error: --video {args.video}: no such file", file=sys.stderr)
        return 2
    if args.random_init:
        print(RANDOM_NOTE, file=sys.stderr, flush=True)
    try:
        device = resolve_device(args.device)
        out = run_avst(args, device) if args.model == "avst" else run_masn(args, device)
    except (AnswerError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out["random_init_extractors"] = args.random_init
    if args.json:
        print(json.dumps(out))
    else:
        print(report(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
