"""The demo that starts from pixels: synthetic videos -> real extractors -> training -> scripts/answer.py.

    python scripts/demo_video.py [--out runs/demo_video] [--quick]

1. ffmpeg draws a handful of 3-second videos: 1 to 3 coloured squares moving left to right, each
   with its own tone (feat_script/synthetic_video.py).
2. The real feature extractors run on them with RANDOM weights (--random-init): VGGish and the
   stride-1 ResNet-18 for AVST; ResNet-152, I3D, Faster R-CNN + RoIAlign for MASN (small settings).
3. AVST (avst/main_avst.py, without the stage-1 initialisation) and MASN Count (masn/main.py) train
   for one epoch on questions about those videos ("How many instruments are sounding ...?").
4. scripts/answer.py answers one question per model from a raw video, with an AVST heat map.

Weights are random and the data synthetic: the answers mean nothing. The point is that every format
and every step joins up. Small settings keep it to a few minutes on a 2-core CPU.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from avst.data.annotations import make_record
from demos.folders import fresh_folder
from engine.cli import accept_both_spellings
from engine.errors import run_cli
from feat_script.synthetic_video import Shape, make_video

ROOT = Path(__file__).resolve().parents[1]
SHAPES = (Shape("red", 440, 16, 40), Shape("lime", 660, 48, 30), Shape("blue", 880, 80, 20))
NUMBERS = ("zero", "one", "two", "three")
MASN_SAMPLING = ["--num-clips", "3", "--clip-len", "8"]
DETECTOR_SIZE = ["--det-min-size", "96", "--det-max-size", "128"]
AVST_QUESTIONS = (("How many instruments are sounding in the video?", [], lambda n: NUMBERS[n]),
                  ("Is the <Object> in the video always playing?", ["red"], lambda n: "yes"),
                  ("Are there more than two sounding objects?", [], lambda n: "yes" if n > 2 else "no"))
MASN_QUESTIONS = ("How many squares move ?", "How many times does the square cross ?",
                  "How many coloured squares are there ?")


@dataclass(frozen=True)
class Size:
    """How much the demo makes: squares (and tones) per video, each video's length, who answers which video."""

    counts: tuple[int, ...]  # one video per entry; video ids are TGIF-style integer keys from 1
    seconds: int
    avst_video: int  # index into counts of the video each model is asked about
    masn_video: int


FULL = Size(counts=(1, 2, 3, 2), seconds=3, avst_video=2, masn_video=1)
QUICK = Size(counts=(1, 3), seconds=2, avst_video=1, masn_video=1)


def say(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def make_videos(folder: Path, size: Size) -> list[Path]:
    return [make_video(folder / f"{key}.mp4", list(SHAPES[:n]), seconds=size.seconds)
            for key, n in enumerate(size.counts, start=1)]


def extract(videos: Path, feats: Path, size: Size) -> None:
    """Every extractor as its CLI would run it, in this process (importing torch once)."""
    from feat_script.base import main as run_extractor
    from feat_script.extract_14x14 import Res18x14
    from feat_script.extract_i3d import I3dExtractor
    from feat_script.extract_objects import ObjectsExtractor
    from feat_script.extract_resnet import ResNetGlobal
    from feat_script.extract_vggish import VggishExtractor

    common = ["--videos", str(videos), "--random-init", "--workers", "0", "--quiet", "--device", "cpu"]
    masn = feats / "masn" / "feat_r6_vsync2"
    # A 3-s video's fixed-60 rows 3..59 repeat row 2 (the last second), which is what the AVST loader's
    # padding of short files gives: 3 rows per video compute the same inputs as 60.
    jobs = [(VggishExtractor, ["--out", str(feats / "vggish"), "--num-secs", str(size.seconds)]),
            (Res18x14, ["--out", str(feats / "res18_14x14"), "--seconds", str(size.seconds)]),
            (ResNetGlobal, ["--masn", "--out", str(masn / "res152_avgpool.hdf5"), "--num-clips", "3"]),
            (I3dExtractor, ["--out", str(masn / "tgif_i3d_hw7_perclip_avgpool.hdf5"), *MASN_SAMPLING]),
            (ObjectsExtractor, ["--stream", "appearance", "--out", str(masn / "tgif_btup_f_obj10.hdf5"),
                                *MASN_SAMPLING, *DETECTOR_SIZE]),
            (ObjectsExtractor, ["--stream", "motion", "--boxes", str(masn / "tgif_btup_f_obj10.hdf5"),
                                "--out", str(masn / "tgif_i3d_roialign_hw7_perclip_avgpool_obj10.hdf5"),
                                *MASN_SAMPLING])]
    for cls, argv in jobs:
        start = time.time()
        status = run_extractor(cls, [*common, *argv])
        if status != 0:  # the extractor has printed its one-line error
            raise SystemExit(status)
        print(f"  {cls.name:12s} {time.time() - start:6.1f} s  -> {argv[argv.index('--out') + 1]}", flush=True)


def avst_labels(folder: Path, size: Size) -> Path:
    """MUSIC-AVQA JSON records about the videos (the same file serves as train, val and test)."""
    folder.mkdir(parents=True, exist_ok=True)
    records, qid = [], 0
    for key, n in enumerate(size.counts, start=1):
        for content, values, answer in AVST_QUESTIONS:
            qid += 1
            records.append(make_record(str(key), qid, "Audio-Visual", "Counting", content, values, answer(n)))
    path = folder / "avqa-demo.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def masn_questions(folder: Path, size: Size) -> Path:
    """TGIF-QA Count CSVs (tab-separated) and a tiny GloVe file for the question words."""
    from masn.data.text import tokenize

    pairs = [(key, n, q) for key, n in enumerate(size.counts, start=1) for q in MASN_QUESTIONS]
    rows = [{"gif_name": f"demo{key}", "question": q, "answer": n, "vid_id": f"COUNT{i}", "key": key}
            for i, (key, n, q) in enumerate(pairs, start=1)]  # vid_id names the question, as in TGIF-QA
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("Train", "Test", "Total"):
        pd.DataFrame(rows).to_csv(folder / f"{split}_count_question.csv", sep="\t", index=False)
    words = sorted({w for q in MASN_QUESTIONS for w in tokenize(q)})
    rng = np.random.RandomState(0)
    with open(folder / "glove.42B.300d.txt", "w") as f:
        for w in words:
            f.write(w + " " + " ".join(f"{x:.4f}" for x in rng.randn(300) * 0.4) + "\n")
    return folder


def train(feats: Path, work: Path, size: Size) -> tuple[Path, Path]:
    from avst.main_avst import main as avst_main
    from feat_script.recipes import AVST
    from masn.main import main as masn_main

    labels = str(avst_labels(work, size))
    common = ["--num_workers", "0", "--quiet", "--device", "cpu", "--seed", "1"]
    avst_main(["--mode", "train", "--audio_dir", str(feats / AVST.streams["audio"].output), "--video_res14x14_dir",
               str(feats / AVST.streams["visual"].output), "--label_train", labels, "--label_val", labels,
               "--label_test", labels,
               "--vocab-json", labels, "--epochs", "1", "--batch-size", "6", "--no-grounding-init",
               "--run-dir", str(work / "avst"), *common])
    questions = masn_questions(work / "tgif", size)
    masn_main(["--task", "Count", "--df_dir", str(questions), "--vc_dir", str(questions), "--feat_dir",
               str(feats / "masn"), "--v_max_length", "4", "--batch_size", "6", "--max_epoch", "1",
               "--val_ratio", "0.2", "--run-dir", str(work / "masn"),
               *common])
    return work / "avst/checkpoints/best.pt", work / "masn/checkpoints/best.pt"


def answer(argv: list[str]) -> None:
    cmd = [sys.executable, str(ROOT / "scripts/answer.py"), *argv, "--random-init", "--device", "cpu", "--verbose"]
    print("$ python scripts/answer.py " + " ".join(f'"{a}"' if " " in a else a for a in cmd[2:]), flush=True)
    status = subprocess.run(cmd).returncode
    if status != 0:  # answer.py has printed its one-line error
        raise SystemExit(status)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/demo_video"),
                   help="everything goes here; a folder an earlier demo wrote is replaced, any other is refused")
    p.add_argument("--quick", action="store_true",
                   help="smoke size: two 2-s videos and fewer questions (what the test suite runs)")
    return accept_both_spellings(p)


def run(args: argparse.Namespace) -> None:
    start = time.time()
    print("Demo from pixels. Extractor weights are RANDOM and the videos SYNTHETIC: the answers mean nothing; "
          "the demo shows that every format and step joins up.")
    size = QUICK if args.quick else FULL
    out = fresh_folder(args.out, "--out")
    say(f"1/4 ffmpeg: {len(size.counts)} synthetic {size.seconds}-s videos with 1-3 moving squares and tones")
    videos = make_videos(out / "videos", size)
    say("2/4 feature extraction with random weights (feat_script extractors)")
    extract(out / "videos", out / "feats", size)
    say("3/4 one epoch of AVST and of MASN Count on those features")
    avst_ckpt, masn_ckpt = train(out / "feats", out / "train", size)
    say("4/4 ask the raw videos a question")
    answer(["--model", "avst", "--checkpoint", str(avst_ckpt), "--video", str(videos[size.avst_video]),
            "--question", "Is the <Object> in the video always playing?", "--values", "red",
            "--heatmaps", str(out / "heatmaps")])
    answer(["--model", "masn", "--checkpoint", str(masn_ckpt), "--video", str(videos[size.masn_video]),
            "--question", "How many squares move ?", *MASN_SAMPLING, *DETECTOR_SIZE])
    print(f"\nDemo from pixels done in {time.time() - start:.0f} s: heat maps in {out / 'heatmaps'}. "
          "Weights were random and the data synthetic.")


def main(argv: list[str] | None = None) -> int:
    return run_cli(lambda: run(build_parser().parse_args(argv)))
