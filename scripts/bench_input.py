"""The input pipelines alone, side by side: can a 16-core host feed a GPU through a 50 GB/s link?

These models are tiny (AVST: 0.27 GFLOP per sample for forward + backward), so an accelerator is
bound by the bytes it is fed, not by its FLOPs. For AVST (per-video ``.npy`` float32, packed float32
and packed float16), MASN (the four HDF5 files, TGIF-QA's 20 frames x 10 objects, and the packed float32
and float16 stores ``python -m masn.data.pack`` converts them to) and optionally stage 1
(1-fps JPEG frames, decoded and resized per item) this times the real Dataset and the engine's two input
pipelines (``--input``, as the trainers take it) on generated files in the real formats (in the page
cache: CPU and memory work, not disk speed):

* ``loader``: torch's DataLoader with ``--workers`` persistent worker processes and pinned memory (on a
  machine without CUDA, pinning is emulated by a copy into a reused buffer: what pinning costs);
* ``reader``: ``engine.reader.ThreadedReader``, ``--workers`` threads of this process reading each batch
  into a ring of reused (on CUDA pinned) buffers.

On CUDA each batch also goes to the device. Printed per dataset: bytes per sample that cross to the
device, CPU-ms per sample of one thread reading (the dataset's batched fetch alone), and per pipeline
the CPU-ms per sample of every process and thread of the pass (workers included), the samples/s a
16-core host supplies at that cost (16 / CPU-s per sample: CPU time, not the wall clock of a shared
machine) and whether that reaches what a 50 GB/s host-to-device link carries; ``--json`` also writes
the wall-clock samples/s. The timed pass is the second over the same indices: the steady state of a
training run (worker processes started, buffers allocated). Every read checks NaN / inf, as training does,
except from the packed stores, checked finite when written (as their readers skip the scan in training).

    python scripts/bench_input.py [--workers 2] [--batches 12] [--only avst masn stage1] [--input loader reader]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

LINK_BYTES_PER_S = 50e9
HOST_WORKERS = 16


# ---------------------------------------------------------------- data in the real formats
def avst_sets(work: Path, n_videos: int) -> dict[str, Dataset]:
    from avst.data.annotations import load_records
    from avst.data.dataset import AVQADataset
    from avst.data.features import NpyFeatures, PackedFeatures
    from avst.data.packing import pack
    from avst.data.synthetic import random_feature_files
    from avst.data.vocab import Vocab

    recs = load_records(random_feature_files(work, n_videos))
    vocab = Vocab.from_records(recs)
    npy = {k: NpyFeatures(work / k, k) for k in ("audio", "visual")}
    sets = {"AVST per-video .npy f32": AVQADataset(recs, vocab, npy["audio"], npy["visual"], seed=1)}
    videos = list(dict.fromkeys(r.video_id for r in recs))
    for name, dtype in (("f32", np.float32), ("f16", np.float16)):
        pack(videos, npy, work / f"packed_{name}", dtype)
        packed = {k: PackedFeatures(work / f"packed_{name}", k) for k in ("audio", "visual")}
        sets[f"AVST packed {name}"] = AVQADataset(recs, vocab, packed["audio"], packed["visual"], seed=1)
    return sets


def masn_sets(work: Path, n_videos: int, frames: int = 20) -> dict[str, Dataset]:
    import h5py

    from masn.data.dataset import QADataset
    from masn.data.features import LAYOUTS, VideoFeatures, resolve_feature_files
    from masn.data.pack import convert
    from masn.data.packed import PackedVideoFeatures

    rng = np.random.default_rng(0)
    folder = work / "feat_r6_vsync2"
    folder.mkdir(parents=True, exist_ok=True)
    names = {role: names[0] for role, names in LAYOUTS["tgif-qa"].names.items()}
    with h5py.File(folder / names["res_avg"], "w") as ra, h5py.File(folder / names["i3d_avg"], "w") as ia, \
            h5py.File(folder / names["res_roi"], "w") as rr, h5py.File(folder / names["i3d_roi"], "w") as ir:
        for v in range(n_videos):
            key = str(v)
            ra[key] = rng.random((frames, 2048), dtype=np.float32)
            ia[key] = rng.random((frames, 2048), dtype=np.float32)
            rr[f"image_features/{key}"] = rng.random((frames, 10, 2048), dtype=np.float32)
            rr[f"spatial_features/{key}"] = rng.random((frames, 10, 6), dtype=np.float32)
            ir[key] = rng.random((frames, 10, 2048), dtype=np.float32)
    stores = {"HDF5 f32": VideoFeatures(resolve_feature_files(work, "tgif-qa"), "", frames)}
    for name in ("f32", "f16"):
        convert(work, "tgif-qa", work / f"packed_{name}", f"float{name[1:]}")
        stores[f"packed {name}"] = PackedVideoFeatures(work / f"packed_{name}", "", frames)
    n = 2 * n_videos
    video_ids = np.arange(n) % n_videos
    fields = [rng.integers(1, 100, (n, 20)), np.full(n, 12), rng.integers(0, 10, n).astype(np.float32)]
    sets = {}
    for name, features in stores.items():
        features.check_videos(range(n_videos))  # as masn/data/build.py does before training
        features.close()
        sets[f"MASN {name} ({frames} frames)"] = QADataset("Count", video_ids, fields, features)
    return sets


def stage1_sets(work: Path, n_videos: int) -> dict[str, Dataset]:
    from PIL import Image

    from avst.data.features import NpyFeatures
    from grounding_gen.dataset import GroundingDataset

    rng = np.random.default_rng(0)
    (work / "vggish").mkdir(parents=True, exist_ok=True)
    videos = [f"{v + 1:08d}" for v in range(n_videos)]
    base = (rng.random((45, 80, 3)) * 255).astype(np.uint8)
    for vid in videos:
        np.save(work / "vggish" / f"{vid}.npy", rng.random((60, 128), dtype=np.float32))
        (work / "frames" / vid).mkdir(parents=True, exist_ok=True)
        for k in range(10):  # smooth content at 640x360, as 1-fps frames of a 360p video compress
            img = Image.fromarray(np.roll(base, k, axis=1)).resize((640, 360), Image.BILINEAR)
            img.save(work / "frames" / vid / f"{k + 1:06d}.jpg", quality=90)
    audio = NpyFeatures(work / "vggish", "audio")
    return {"stage 1 JPEG 640x360": GroundingDataset(videos, audio, work / "frames", seed=1)}


# ---------------------------------------------------------------- measurement
def batch_bytes(batch) -> int:
    if isinstance(batch, torch.Tensor):
        return batch.numel() * batch.element_size()
    if isinstance(batch, dict):
        return sum(batch_bytes(v) for v in batch.values())
    if isinstance(batch, (list, tuple)):
        return sum(batch_bytes(v) for v in batch)
    return 0


def emulate_pin(batch, buffers: dict):
    """Without CUDA, what ``pin_memory=True`` costs: a copy of every tensor into a reused buffer."""
    if isinstance(batch, torch.Tensor):
        buf = buffers.get((batch.shape, batch.dtype))
        if buf is None:
            buf = buffers[(batch.shape, batch.dtype)] = torch.empty_like(batch)
        return buf.copy_(batch)
    if isinstance(batch, dict):
        return {k: emulate_pin(v, buffers) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return [emulate_pin(v, buffers) for v in batch]
    return batch


def worker_cpu_seconds() -> float:
    """CPU time of this process's live children (the DataLoader workers), from ``/proc/<pid>/stat``."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # a process that just ended
            continue
        if int(fields[1]) == os.getpid():  # ppid; utime and stime follow at 14 and 15 (1-based)
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def measure(dataset: Dataset, inputs: list[str], workers: int, batch_size: int, batches: int) -> dict:
    """Bytes and CPU costs of one dataset through each pipeline: see the module docstring."""
    from engine.batching import collate
    from engine.reader import batch_fetch
    from engine.trainer import Loaders, to_device

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    # an epoch of full batches drawn from the generated items (the files stay in the page cache either way)
    order = np.random.default_rng(0).integers(0, len(dataset), batch_size * batches).tolist()
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    fetch = batch_fetch(dataset, collate)
    row = {"bytes": batch_bytes(fetch(chunks[0])) / batch_size}
    cpu = time.process_time()
    for chunk in chunks:
        fetch(chunk)
    row["cpu_ms_one_thread"] = (time.process_time() - cpu) * 1000 / len(order)
    buffers: dict = {}
    for name in inputs:
        loaders = Loaders(num_workers=workers, collate_fn=None, seed=1, device=device, input=name)
        if cuda:
            consume = lambda batch: to_device(batch, device)  # noqa: E731  (the reader's are there already)
        else:
            consume = (lambda batch: emulate_pin(batch, buffers)) if name == "loader" else (lambda batch: batch)
        rate, cpu_ms = timed_pass(loaders.get(dataset, order, batch_size, 0), consume, len(order), device)
        row[name] = {"samples_per_s_wall": rate, "cpu_ms": cpu_ms, "host": HOST_WORKERS * 1000 / cpu_ms}
        del loaders  # the loader's workers end
    return row


def timed_pass(loader, consume, samples: int, device: torch.device) -> tuple[float, float]:
    """(samples/s, CPU-ms per sample of every process and thread) of the second pass: the first starts
    the persistent workers (or allocates the reader's ring), which a training run pays once."""
    for batch in loader:
        consume(batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    cpu, start = time.process_time() + worker_cpu_seconds(), time.perf_counter()
    for batch in loader:
        consume(batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return samples / (time.perf_counter() - start), (time.process_time() + worker_cpu_seconds() - cpu) * 1000 / samples


def table(rows: list[dict], inputs: list[str]) -> list[str]:
    """The Markdown table of ``rows`` (one per dataset), the pipelines side by side."""
    head = ["pipeline", "MB/sample to device", "CPU-ms/sample, 1 thread"]
    head += [f"{name} CPU-ms/sample" for name in inputs]
    head += [f"{name}: {HOST_WORKERS}-core host samples/s" for name in inputs]
    head += ["50 GB/s link samples/s"] + [f"{name} >= link" for name in inputs]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1 - len(inputs)) + ":---:|" * len(inputs)]
    for row in rows:
        row["link"] = LINK_BYTES_PER_S / row["bytes"]
        cells = [row["pipeline"], f"{row['bytes'] / 1e6:.2f}", f"{row['cpu_ms_one_thread']:.2f}"]
        cells += [f"{row[name]['cpu_ms']:.2f}" for name in inputs]
        cells += [f"{row[name]['host']:.0f}" for name in inputs]
        cells += [f"{row['link']:.0f}"]
        cells += [f"yes, {row[n]['host'] / row['link']:.2f}x" if row[n]["host"] >= row["link"] else
                  f"no, {row[n]['host'] / row['link']:.2f}x" for n in inputs]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2, help="worker processes (loader) or threads (reader)")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--batches", type=int, default=12, help="batches per timed pass")
    p.add_argument("--videos", type=int, default=40)
    p.add_argument("--only", nargs="*", choices=["avst", "masn", "stage1"], default=["avst", "masn"])
    p.add_argument("--input", nargs="+", choices=["loader", "reader"], default=["loader", "reader"],
                   help="the input pipelines to measure (both by default, side by side)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    builders = {"avst": avst_sets, "masn": masn_sets, "stage1": stage1_sets}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_input_") as tmp:
        for name in args.only:
            for label, dataset in builders[name](Path(tmp) / name, args.videos).items():
                rows.append({"pipeline": label, **measure(dataset, args.input, args.workers, args.batch_size,
                                                          args.batches)})
                print(f"measured {label}", file=sys.stderr, flush=True)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA: pinning emulated"
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {cores} cores, {device}; {args.workers} workers (loader: "
          f"processes, reader: threads), batch {args.batch_size}, {args.batches} batches per timed pass. "
          f"CPU-ms/sample counts every process and thread of the pass; a {HOST_WORKERS}-core host supplies "
          f"{HOST_WORKERS} / (CPU-s per sample) samples/s, whatever the wall clock of this machine says.")
    print("\n".join(table(rows, args.input)))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
