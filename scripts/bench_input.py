"""The input pipelines alone: can a 16-core host feed a GPU through a 50 GB/s link?

These models are tiny (AVST: 0.27 GFLOP per sample for forward + backward), so an accelerator is
bound by the bytes it is fed, not by its FLOPs. For AVST (per-video ``.npy`` float32, packed float32
and packed float16), MASN (the four HDF5 files, TGIF-QA's 20 frames x 10 objects) and stage 1 (1-fps
JPEG frames, decoded and resized per item) this times the real Dataset + DataLoader + the engine's
collate (``engine.batching``: datasets with ``__getitems__`` read a batch in one pass) + pinned-memory
copy on generated files in the real formats (in the page cache: CPU and memory work, not disk speed),
and prints per pipeline (``--json`` also writes samples/s per worker process, wall clock): CPU-ms per
sample in one process (one thread) and in a ``--workers`` pass of persistent workers (every process: the
workers, and this one, which pins), bytes per sample that cross to the device, and beside each other the
samples/s that a 16-core host supplies (16 / CPU-s per sample of the workers pass: CPU time, not the
wall clock of a shared machine) and the samples/s that a 50 GB/s host-to-device link carries at those bytes per sample.
Without CUDA, pinning is emulated by a copy into a preallocated buffer (what pinning costs). The timed
pass is the second over the same indices: the steady state of a training run, after the first epoch
has read every video once (MASN checks each video for NaN / inf at its first read in a run, AVST every row
at every read).

    python scripts/bench_input.py [--workers 2] [--batches 12] [--only avst masn stage1]
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
from torch.utils.data import DataLoader, Dataset

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
    features = VideoFeatures(resolve_feature_files(work, "tgif-qa"), "", frames)
    features.check_videos(range(n_videos))  # as masn/data/build.py does before training
    features.close()
    n = 2 * n_videos
    video_ids = np.arange(n) % n_videos
    fields = [rng.integers(1, 100, (n, 20)), np.full(n, 12), rng.integers(0, 10, n).astype(np.float32)]
    return {"MASN HDF5 f32 (20 frames)": QADataset("Count", video_ids, fields, features)}


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


def pin(batch, buffers: dict):
    """pin_memory when CUDA exists; otherwise the same copy into a reused buffer."""
    if torch.cuda.is_available():
        return torch.utils.data._utils.pin_memory.pin_memory(batch)
    if isinstance(batch, torch.Tensor):
        buf = buffers.get((batch.shape, batch.dtype))
        if buf is None:
            buf = buffers[(batch.shape, batch.dtype)] = torch.empty_like(batch)
        return buf.copy_(batch)
    if isinstance(batch, dict):
        return {k: pin(v, buffers) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return [pin(v, buffers) for v in batch]
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


def measure(dataset: Dataset, workers: int, batch_size: int, batches: int) -> dict:
    """Rates and CPU costs of one pipeline: see the module docstring."""
    from engine.batching import collate
    from engine.trainer import Loaders

    # an epoch of full batches drawn from the generated items (the files stay in the page cache either way)
    sampler = np.random.default_rng(0).integers(0, len(dataset), batch_size * batches).tolist()
    buffers: dict = {}
    single = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=0, collate_fn=collate)
    first = next(iter(single))
    per_sample_bytes = batch_bytes(first) / batch_size
    cpu = time.process_time()
    for batch in single:
        pin(batch, buffers)
    cpu_ms = (time.process_time() - cpu) * 1000 / len(sampler)
    plain = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate,
                       persistent_workers=True, prefetch_factor=2)
    reference = workers_pass(plain, lambda batch: pin(batch, buffers), len(sampler))
    del plain  # its workers end
    host = Loaders(num_workers=workers, collate_fn=None, seed=1, device=torch.device("cpu"),
                   copy=lambda batch: pin(batch, buffers))  # copied out of the rings by the engine's thread
    copied = workers_pass(host.get(dataset, sampler, batch_size, 0), lambda batch: batch, len(sampler))
    del host
    if torch.cuda.is_available():  # the engine's default on CUDA: the GPU copies from the locked ring buffers
        fed = Loaders(num_workers=workers, collate_fn=None, seed=1, device=torch.device("cuda"))
    else:  # the same CPU work without a GPU: no copy on the host (the GPU's copy engine would make it)
        fed = Loaders(num_workers=workers, collate_fn=None, seed=1, device=torch.device("cpu"), copy=lambda b: b)
    feed = workers_pass(fed.get(dataset, sampler, batch_size, 0), lambda batch: batch, len(sampler))
    return {"per_worker": feed[0] / workers, "cpu_ms": cpu_ms, "cpu_ms_reference": reference[1],
            "cpu_ms_copied": copied[1], "cpu_ms_workers": feed[1], "bytes": per_sample_bytes}


def workers_pass(loader, pinned, samples: int) -> tuple[float, float]:
    """(samples/s, CPU-ms per sample of every process) of the second pass: the first starts the persistent
    workers (and fills the engine's buffer rings), which a training run pays once."""
    for batch in loader:
        pinned(batch)
    cpu, start = time.process_time() + worker_cpu_seconds(), time.perf_counter()
    for batch in loader:
        pinned(batch)
    return samples / (time.perf_counter() - start), (time.process_time() + worker_cpu_seconds() - cpu) * 1000 / samples


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes measured")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--batches", type=int, default=12, help="batches per timed pass")
    p.add_argument("--videos", type=int, default=40)
    p.add_argument("--only", nargs="*", choices=["avst", "masn", "stage1"], default=["avst", "masn", "stage1"])
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    builders = {"avst": avst_sets, "masn": masn_sets, "stage1": stage1_sets}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_input_") as tmp:
        for name in args.only:
            for label, dataset in builders[name](Path(tmp) / name, args.videos).items():
                rows.append({"pipeline": label, **measure(dataset, args.workers, args.batch_size, args.batches)})
                print(f"measured {label}", file=sys.stderr, flush=True)
    print(f"{args.workers} workers measured on {cores} cores, batch {args.batch_size}. CPU-ms/sample counts every "
          f"process of a {args.workers}-worker pass (the persistent workers, and this one). reference: torch's "
          "DataLoader as the engine used it before (fresh shared memory per batch, then pinned); host copy: the "
          "engine's Loaders (workers write into recycled buffers, one thread copies them into "
          f"{'pinned' if torch.cuda.is_available() else 'preallocated (pinning emulated)'} memory); CUDA feed: "
          "the engine's default for a GPU (the GPU copies from the page-locked buffers"
          f"{'' if torch.cuda.is_available() else '; no GPU here, so the CPU work without that copy'}). "
          f"A {HOST_WORKERS}-core host supplies {HOST_WORKERS} / (CPU-s per sample of the CUDA feed) samples/s, "
          "whatever the wall clock of this shared machine says")
    print(f"| pipeline | CPU-ms/sample, 1 process | CPU-ms/sample, {args.workers} workers: reference | host copy | "
          f"CUDA feed | reference / CUDA feed | MB/sample to device | {HOST_WORKERS}-core host samples/s | "
          "50 GB/s link samples/s | host >= link |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|:---:|")
    for row in rows:
        row["host"] = HOST_WORKERS * 1000 / row["cpu_ms_workers"]
        row["link"] = LINK_BYTES_PER_S / row["bytes"]
        print(f"| {row['pipeline']} | {row['cpu_ms']:.2f} | {row['cpu_ms_reference']:.2f} | "
              f"{row['cpu_ms_copied']:.2f} | "
              f"{row['cpu_ms_workers']:.2f} | {row['cpu_ms_reference'] / row['cpu_ms_workers']:.2f} | "
              f"{row['bytes'] / 1e6:.2f} | {row['host']:.0f} | {row['link']:.0f} | "
              f"{'yes' if row['host'] >= row['link'] else 'no'} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
