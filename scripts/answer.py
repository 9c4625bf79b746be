"""Ask videos questions: raw video -> features (in memory) -> MASN or AVST -> answer, top 5, attention.

    python scripts/answer.py --model avst --checkpoint runs/avst/checkpoints/best.pt --video v.mp4 \\
        --question "Is the <Object> in the video always playing?" --values violin \\
        --resnet18-weights resnet18-5c106cde.pth --vggish-weights checkpoints/vggish.pt --heatmaps out/
    python scripts/answer.py --model masn --task Action --checkpoint C --video v.gif \\
        --question "what does the man do 3 times" --candidates nod wave jump clap spin \\
        --resnet152-weights R --i3d-weights I --detector-weights D
    python scripts/answer.py --model masn --checkpoint C --video a.mp4 b.mp4 \\
        --question "what is the man holding" --question "what colour is the car" ...

One answerer (``masn.answer.MasnAnswerer`` / ``avst.answer.AvstAnswerer``) answers every question
about every video: each video is decoded and its features computed once, each network built once.
Questions come from ``--question`` (repeatable; ``--values`` / ``--candidates`` apply to each) and/or
``--questions FILE``: a JSON list of ``{"question", "values": [...], "candidates": [...]}`` or a CSV
with the columns ``question``, ``values``, ``candidates`` (space-separated words). ``--one-shot``
frees each feature network right after its use, so memory holds one at a time (the default when
one question about one video is asked; otherwise the networks are kept). The vocabulary, answer
index and v_max_length come from the checkpoint. ``--random-init`` runs the feature extractors with
random weights (tests and the demo only; the output says so).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from engine.cli import CommandParser, accept_both_spellings, only_when
from engine.device import resolve_device
from engine.errors import UserError, run_cli
from engine.files import distinct_names
from feat_script.answerer import RANDOM_NOTE, AnswerError, FeatureCache, add_extractor_args
from feat_script.streams import bound_heap_growth

# Flags of one model's pipeline, refused with the other (--heatmaps has its own message below).
AVST_ONLY = ("--values", "--vocab-json", "--resnet18-weights", "--vggish-weights")
MASN_ONLY = ("--task", "--candidates", "--resnet152-weights", "--i3d-weights", "--detector-weights", "--num-clips",
             "--clip-len", "--clip-stride", "--det-min-size", "--det-max-size")


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["avst", "masn"], required=True)
    p.add_argument("--checkpoint", type=Path, required=True,
                   help="written by avst/main_avst.py, masn/main.py or masn/convert_checkpoint.py --csv_dir")
    p.add_argument("--video", type=Path, nargs="+", required=True, help="any file ffmpeg reads (mp4, gif, webm, ...)")
    p.add_argument("--question", action="append", default=[], help="repeat for several questions")
    p.add_argument("--questions", type=Path, default=None, help="a JSON or CSV file of questions (see above)")
    p.add_argument("--values", nargs="*", default=[], help="AVST: fillers of the --question's <...> slots")
    p.add_argument("--vocab-json", type=Path, default=None,
                   help="AVST: the official avqa-train.json, for the authors' weights-only avst.pt")
    p.add_argument("--task", choices=["Count", "Action", "Trans", "FrameQA", "MS-QA"], default=None,
                   help="MASN: default the checkpoint's")
    p.add_argument("--candidates", nargs="*", default=None, help="MASN Action/Trans: the --question's 5 answers")
    p.add_argument("--heatmaps", type=Path, default=None,
                   help="AVST: write t<second>.png overlays of the 10 sampled seconds and temporal.png here "
                        "(several answers: in <video stem>/<question number>/ below it; two videos with one stem "
                        "get their folder names prefixed)")
    p.add_argument("--one-shot", choices=["auto", "on", "off"], default="auto",
                   help="free each feature network after its use (auto: on for one question about one video)")
    p.add_argument("--json", action="store_true", help="print one JSON object per answer, one per line")
    p.add_argument("--verbose", action="store_true", help="time each stage")
    add_extractor_args(p)
    only_when(p, AVST_ONLY, lambda args: args.model == "avst", "with --model masn")
    only_when(p, MASN_ONLY, lambda args: args.model == "masn", "with --model avst")
    return accept_both_spellings(p)


def read_questions(path: Path) -> list[dict]:
    """``[{"question", "values", "candidates"}]`` from a JSON list or a CSV with a ``question`` column."""
    if not path.is_file():
        raise UserError(f"--questions {path}: no such file")
    if path.suffix.lower() == ".json":
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise UserError(f"--questions {path}: not JSON ({err.msg}, line {err.lineno}); give a list of "
                            '{"question": ...} objects') from None
    else:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [{**row, "values": (row.get("values") or "").split(),
                     "candidates": (row.get("candidates") or "").split() or None} for row in csv.DictReader(f)]
    if not isinstance(rows, list) or not all(isinstance(r, dict) and str(r.get("question") or "").strip()
                                             for r in rows):
        raise UserError(f"--questions {path}: every entry needs a non-empty \"question\"; give a JSON list of "
                        "objects or a CSV with a question column")
    return [{"question": str(r["question"]), "values": [str(v) for v in r.get("values") or []],
             "candidates": [str(c) for c in r["candidates"]] if r.get("candidates") else None} for r in rows]


def questions_of(args: argparse.Namespace) -> list[dict]:
    if (args.values or args.candidates) and not args.question:
        raise UserError("--values / --candidates: they fill --question, and none was given; put them in the "
                        "--questions file's entries instead")
    asked = [{"question": q, "values": args.values, "candidates": args.candidates} for q in args.question]
    if args.questions is not None:
        asked += read_questions(args.questions)
    if not asked:
        raise UserError("no question: give --question (repeatable) or --questions FILE")
    if args.model == "masn" and args.heatmaps is not None:
        raise AnswerError("--heatmaps is for --model avst (MASN has no spatial attention map to draw)")
    return asked


def make_answerer(args: argparse.Namespace, device, one_shot: bool):
    cache = FeatureCache(folder=args.feature_cache)
    if args.model == "avst":
        from avst.answer import AvstAnswerer

        return AvstAnswerer(args.checkpoint, resnet_weights=args.resnet18_weights, vggish_weights=args.vggish_weights,
                            random_init=args.random_init, device=device, amp=args.amp, vocab_json=args.vocab_json,
                            cache=cache, one_shot=one_shot)
    from masn.answer import ExtractorWeights, FeatureSettings, MasnAnswerer

    settings = FeatureSettings(args.num_clips, args.clip_len, args.clip_stride, args.det_min_size, args.det_max_size)
    weights = ExtractorWeights(args.resnet152_weights, args.i3d_weights, args.detector_weights, args.random_init)
    return MasnAnswerer(args.checkpoint, task=args.task, settings=settings, weights=weights, device=device,
                        amp=args.amp, cache=cache, one_shot=one_shot)


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
    args = build_parser().parse_command(argv)
    bound_heap_growth()  # long videos: freed frame blocks go back to the system (feat_script/streams.py)
    for video in args.video:
        if not video.is_file():
            raise UserError(f"--video {video}: no such file")
    questions = questions_of(args)
    several = len(questions) * len(args.video) > 1
    one_shot = {"on": True, "off": False}.get(args.one_shot, not several)
    if args.random_init:
        print(RANDOM_NOTE, file=sys.stderr, flush=True)
    answerer = make_answerer(args, resolve_device(args.device), one_shot)
    for video, name in zip(args.video, distinct_names(args.video)):  # two videos never share a folder
        for number, (asked, result) in enumerate(zip(questions, answerer.ask_many(video, questions, args.verbose))):
            out = {**result.to_json(), "random_init_extractors": args.random_init}
            if several:
                out.update(video=str(video), question=asked["question"])
            if args.heatmaps is not None:
                from avst.answer import write_heatmaps

                folder = args.heatmaps / name / str(number) if several else args.heatmaps
                out["heatmaps"] = [str(p) for p in write_heatmaps(result, folder)]
            if args.json:
                print(json.dumps(out), flush=True)
            else:
                print(f"{video}: {asked['question']}\n" if several else "", report(out), sep="", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
