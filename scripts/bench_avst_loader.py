"""AVST data loading: the original ``AVQA_dataset.__getitem__`` vs ours, on the same per-video files.

Generates ``--videos`` fake videos (VGGish [60,128], ResNet-18 [60,512,14,14] float32) and a JSON in
the original format under ``--work`` (default a fresh folder in /tmp, never the repository), then times
single-item loading by the original dataset (imported from ``--original``, a MUSIC-AVQA checkout), by
ours on the per-video files, and by ours on a packed store (float32 and float16). Bytes per sample are
counted from what each loader asks for: whole files for the original (its ``np.load`` calls), rows for
ours. Files stay in the page cache, so this measures CPU/memory work, not disk speed.

    python scripts/bench_avst_loader.py --original /work/orig/avqa [--videos 30] [--samples 20]
"""
from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
import types
from pathlib import Path

import numpy as np

from avst.data.annotations import load_records
from avst.data.dataset import AVQADataset
from avst.data.features import NpyFeatures, PackedFeatures
from avst.data.packing import pack
from avst.data.synthetic import random_feature_files
from avst.data.vocab import Vocab
from benchkit.originals import original_avqa_dataset
from engine.errors import run_cli


def original_dataset(original: Path, work: Path, label: Path):
    """The original class, counting the bytes its ``np.load`` calls read."""
    dataloader_avst = original_avqa_dataset(original)

    counted = {"bytes": 0}
    real_np = dataloader_avst.np

    def load(path, *a, **k):
        counted["bytes"] += os.path.getsize(path)
        return real_np.load(path, *a, **k)

    dataloader_avst.np = types.SimpleNamespace(**{n: getattr(real_np, n) for n in ("array",)}, load=load)
    cwd = os.getcwd()
    os.chdir(work)  # it reads ./data/json/avqa-train.json for the vocabulary
    try:
        ds = dataloader_avst.AVQA_dataset(str(label), str(work / "audio"), str(work / "visual"))
    finally:
        os.chdir(cwd)
    return ds, counted


def timed(ds, n: int) -> float:
    ds[0]
    start = time.perf_counter()
    for i in range(n):
        ds[i % len(ds)]
    return n / (time.perf_counter() - start)


def same_positives(orig, ours: AVQADataset) -> bool:
    """Everything but the (randomly drawn) negatives must equal the original's item."""
    for i in (0, 1, len(ours) - 1):
        a, b = orig[i], ours[i]
        if not (np.array_equal(np.asarray(a["audio"]), b["audio"].numpy())
                and np.array_equal(np.asarray(a["visual_posi"]), b["visual_posi"].numpy())
                and a["question"].tolist() == b["question"].tolist() and int(a["label"]) == int(b["label"])):
            return False
    return True


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--original", type=Path, required=True, help="checkout of GeWu-Lab/MUSIC-AVQA")
    p.add_argument("--videos", type=int, default=30)
    p.add_argument("--samples", type=int, default=20, help="items timed for the original (ours: 10x)")
    p.add_argument("--work", type=Path, default=None)
    args = p.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_avst_loader_"))
    label = random_feature_files(work, args.videos)
    random.seed(0)
    orig, counted = original_dataset(args.original.resolve(), work, label)
    records = load_records(label)
    vocab = Vocab.build(label)
    ours = {"ours .npy": (NpyFeatures(work / "audio", "audio"), NpyFeatures(work / "visual", "visual"))}
    for name, dtype in (("ours packed f32", np.float32), ("ours packed f16", np.float16)):
        out = work / f"packed_{np.dtype(dtype).name}"
        sources = {k: NpyFeatures(work / k, k) for k in ("audio", "visual")}
        pack(list(dict.fromkeys(r.video_id for r in records)), sources, out, dtype)
        ours[name] = (PackedFeatures(out, "audio"), PackedFeatures(out, "visual"))

    same = same_positives(orig, AVQADataset(records, vocab, *ours["ours .npy"], negatives=False))
    print(f"audio, visual_posi, question and label identical to the original's on 3 items: {same}")
    n = args.samples
    counted["bytes"] = 0
    rate_orig = timed(orig, n)
    bytes_orig = counted["bytes"] / (n + 1)
    print(f"{'loader':<18}{'samples/s':>12}{'MB/sample':>12}{'speed x':>10}{'bytes ratio':>13}")
    print(f"{'original':<18}{rate_orig:>12.1f}{bytes_orig / 1e6:>12.2f}{1.0:>10.1f}{1.0:>13.3f}")
    for name, (audio, visual) in ours.items():
        ds = AVQADataset(records, vocab, audio, visual, negatives=True, seed=1)
        audio.bytes_read = visual.bytes_read = 0
        rate = timed(ds, 10 * n)
        per = (audio.bytes_read + visual.bytes_read) / (10 * n + 1)
        print(f"{name:<18}{rate:>12.1f}{per / 1e6:>12.2f}{rate / rate_orig:>10.1f}{per / bytes_orig:>13.3f}")
    print(f"(work folder {work}; {args.videos} videos of [60,512,14,14] float32; delete it when done)")


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
