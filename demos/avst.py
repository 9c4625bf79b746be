"""AVST's part of ``make demo``: stage-1 pretraining, AVST training and the test report on the
synthetic MUSIC-AVQA data, printed beside the majority-answer chance level.

The schedule is shortened to fit a few CPU minutes (stage 1: one epoch on a few frame folders; AVST:
a few epochs at a higher learning rate); the code paths are those of a full run.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from avst.data.annotations import load_records
from avst.report import majority_baseline, to_markdown
from demos.folders import fresh_folder

STAGE1_VIDEOS = 4
STAGE1_VAL_VIDEOS = 2
AVST_EPOCHS = 4
AVST_BATCH = 32
AVST_LR = 1e-3


def _stage1_labels(demo_dir: Path, out: Path) -> tuple[Path, Path]:
    """Train/val JSONs restricted to the videos that have frame folders (stage 1 reads frames)."""
    framed = sorted(p.name for p in (demo_dir / "frames").iterdir())
    records = json.loads((demo_dir / "json" / "avqa-train.json").read_text(encoding="utf-8"))
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    val = framed[STAGE1_VIDEOS:STAGE1_VIDEOS + STAGE1_VAL_VIDEOS]
    for name, videos in (("train", framed[:STAGE1_VIDEOS]), ("val", val)):
        path = out / f"stage1-{name}.json"
        path.write_text(json.dumps([r for r in records if r["video_id"] in videos]), encoding="utf-8")
        paths.append(path)
    return paths[0], paths[1]


def run(demo_dir: Path, runs_dir: Path, quick: bool = False) -> None:
    """Stage 1, AVST training and its test report; ``quick``: one AVST epoch (smoke size)."""
    from avst.main_avst import main as avst_main
    from grounding_gen.main_grd_gen import main as grounding_main
    from grounding_gen.main_grd_gen_vis import main as grounding_vis

    demo_dir, runs_dir = Path(demo_dir), fresh_folder(Path(runs_dir), "--runs")
    start = time.time()
    feats = ["--audio_dir", str(demo_dir / "feats/vggish")]
    common = ["--num_workers", "0", "--quiet", "--seed", "1"]
    train_json, val_json = _stage1_labels(demo_dir, runs_dir / "labels")
    print("AVST demo, stage 1: audio-visual grounding pretraining (random ResNet-18, 1 epoch)")
    grounding_main([*feats, "--video_dir", str(demo_dir / "frames"), "--label_train", str(train_json),
                    "--label_val", str(val_json), "--epochs", "1", "--batch-size", "8",
                    "--run-dir", str(runs_dir / "grounding"), *common])
    grounding_vis(["--checkpoint", str(runs_dir / "grounding/checkpoints/best.pt"), *feats, "--video_dir",
                   str(demo_dir / "frames"), "--label-json", str(val_json), "--max-videos", "1", "--frames", "0",
                   "--out_dir", str(runs_dir / "grounding/heatmaps"), "--device", "cpu"])
    labels = {f"--label_{s}": str(demo_dir / "json" / f"avqa-{s}.json") for s in ("train", "val", "test")}
    data = [*feats, "--video_res14x14_dir", str(demo_dir / "feats/res18_14x14"),
            "--vocab-json", labels["--label_train"], *[x for kv in labels.items() for x in kv]]
    epochs = 1 if quick else AVST_EPOCHS
    print(f"AVST demo, stage 2: AVST, {epochs} epochs, lr {AVST_LR}")
    avst_main(["--mode", "train", *data, "--epochs", str(epochs), "--lr", str(AVST_LR),
               "--batch-size", str(AVST_BATCH), "--run-dir", str(runs_dir / "avst"),
               "--pretrained-grounding", str(runs_dir / "grounding/checkpoints/best.pt"), *common])
    report = avst_main(["--mode", "test", *data, "--run-dir", str(runs_dir / "avst"), "--heatmaps", "1",
                        "--frames-dir", str(demo_dir / "frames"), *common])
    chance = majority_baseline(load_records(labels["--label_train"]), load_records(labels["--label_test"]))
    print("\nAVST on the synthetic test set, beside the majority-answer chance level:\n")
    print(to_markdown(report, chance))
    print(f"AVST demo done in {time.time() - start:.0f} s; runs in {runs_dir}")
