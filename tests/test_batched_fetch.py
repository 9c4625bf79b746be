"""Batched fetch (``Dataset.__getitems__`` + ``engine.batching``): the batches a loader gives hold exactly the
rows of the files (as the per-sample path reads them), and a NaN / inf row anywhere in a batch still stops with
its video named."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Subset, default_collate

from avst.data.annotations import load_records
from avst.data.dataset import AVQADataset
from avst.data.features import FeatureError, NpyFeatures, PackedFeatures
from avst.data.packing import pack
from avst.data.vocab import Vocab
from engine.batching import nonfinite_rows
from engine.trainer import Loaders
from masn.data import features as masn_features
from masn.data.dataset import QADataset
from masn.data.features import FeatureError as MasnFeatureError
from masn.data.features import VideoFeatures, resolve_feature_files
from tests.test_avst_data import rec, write_json
from tests.test_masn_data import write_features

CPU = torch.device("cpu")
SAMPLED = np.arange(0, 60, 6)  # the ten rows of every question (the original's stride)


def same(got, want) -> None:
    """Equal structure, key order, dtypes, shapes and bits."""
    assert type(got) is type(want)
    if isinstance(got, torch.Tensor):
        assert got.dtype == want.dtype and got.shape == want.shape and torch.equal(got, want)
    elif isinstance(got, dict):
        assert list(got) == list(want)
        for key in got:
            same(got[key], want[key])
    else:
        assert len(got) == len(want)
        for a, b in zip(got, want):
            same(a, b)


@pytest.mark.parametrize("bits", [np.float16, np.float32, np.float64])
def test_nonfinite_rows_agrees_with_isfinite(bits):
    info = np.finfo(bits)
    values = np.array([0.0, -0.0, 1.5, -2.25, info.max, -info.max, info.tiny / 4, -info.tiny / 4,
                       np.inf, -np.inf, np.nan, -np.nan], dtype=bits)
    rows = np.zeros((len(values), 3, 5), dtype=bits)
    rows[:, 1, 2] = values
    np.testing.assert_array_equal(nonfinite_rows(rows), ~np.isfinite(values))


@pytest.fixture
def avst(tmp_path):
    """v1, v2 (30 rows) and v3 (45 rows) of random features; six questions, two per video."""
    rng = np.random.default_rng(5)
    for kind, shape in (("audio", (128,)), ("visual", (512, 14, 14))):
        (tmp_path / kind).mkdir()
        for video, rows in (("v1", 30), ("v2", 30), ("v3", 45)):
            np.save(tmp_path / kind / f"{video}.npy", rng.standard_normal((rows, *shape), dtype=np.float32))
    train = write_json(tmp_path / "train.json", [rec(i, f"v{1 + i % 3}", "Is there a <Object> sound?",
                                                     ["piano"], ["yes", "no"][i % 2]) for i in range(6)])
    return tmp_path, train


def avst_dataset(root, train, store):
    sources = {k: NpyFeatures(root / k, k) for k in ("audio", "visual")}
    if store != "npy":
        pack(["v1", "v2", "v3"], sources, root / store, np.float16 if store == "f16" else np.float32)
        sources = {k: PackedFeatures(root / store, k) for k in ("audio", "visual")}
    return AVQADataset(load_records(train), Vocab.build(train), sources["audio"], sources["visual"], seed=3)


@pytest.mark.parametrize("store, workers", [("npy", 0), ("f32", 0), ("f16", 1)])
def test_avst_batches_hold_the_rows_of_the_files(avst, store, workers):
    root, train = avst
    ds = avst_dataset(root, train, store)
    order, size, epoch = [4, 0, 5, 2, 3, 1], 4, 2
    batches = list(Loaders(num_workers=workers, collate_fn=None, seed=1, device=CPU).get(ds, order, size, epoch))
    ds.set_epoch(epoch)
    chunks = [order[:size], order[size:]]
    plain = list(DataLoader(ds, batch_size=size, sampler=order))  # torch's default_collate sees the items
    for batch, plain_batch, chunk in zip(batches, plain, chunks, strict=True):
        same(batch, default_collate([ds[i] for i in chunk]))
        same(plain_batch, batch)
        dtype = np.float16 if store == "f16" else np.float32
        files = {k: {v: np.load(root / k / f"{v}.npy").astype(dtype) for v in ("v1", "v2", "v3")}
                 for k in ("audio", "visual")}
        for n, i in enumerate(chunk):
            video = ds.records[i].video_id
            for key, kind in (("audio", "audio"), ("visual_posi", "visual")):
                rows = files[kind][video]
                np.testing.assert_array_equal(batch[key][n].numpy(), rows[np.minimum(SAMPLED, len(rows) - 1)])
            nega = [files["visual"][v][min(f, len(files["visual"][v]) - 1)] for v, f in ds.negative_frames(i)]
            np.testing.assert_array_equal(batch["visual_nega"][n].numpy(), np.stack(nega))
        assert batch["index"].tolist() == chunk


@pytest.mark.parametrize("input", ["loader", "reader"])
def test_both_pipelines_give_every_batch_whole_over_epochs(avst, input):
    """More batches than the reader's ring holds, three epochs, 2 workers or threads: every batch equals the
    in-process read (each compared before the next is asked for: the reader reuses its buffers)."""
    root, train = avst
    ds = avst_dataset(root, train, "f16")
    order = np.random.default_rng(0).integers(0, 6, 36).tolist()  # 18 batches of 2, unlike each other
    loaders = Loaders(num_workers=2, collate_fn=None, seed=1, device=CPU, input=input)
    reference = avst_dataset(root, train, "f16")
    for epoch in range(3):
        reference.set_epoch(epoch)
        count = 0
        for n, batch in enumerate(loaders.get(ds, order, 2, epoch)):
            same(batch, reference.__getitems__(order[2 * n:2 * n + 2]).batch)
            count += 1
        assert count == 18
    if input == "reader":
        ring = loaders.get(ds, order, 2, None).slots
        assert len(ring) == 4  # 2 threads + 2
        assert all(len(slot.buffers) == 3 for slot in ring)  # audio, positives, negatives: allocated once


@pytest.mark.parametrize("input", ["loader", "reader"])
def test_pipelines_pass_read_errors_on_and_survive_a_broken_off_pass(avst, input):
    root, train = avst
    ds = avst_dataset(root, train, "f16")
    loaders = Loaders(num_workers=1, collate_fn=None, seed=1, device=CPU, input=input)
    for _ in loaders.get(ds, [0, 1, 2, 3, 4, 5], 2, 0):
        break  # the reading threads are stopped, the workers persist
    again = list(loaders.get(ds, [5, 4], 2, 0))
    same(again[0], ds.__getitems__([5, 4]).batch)
    per_video = avst_dataset(root, train, "npy")  # headers checked here, rows read in the worker / thread
    path = root / "visual" / "v2.npy"
    path.write_bytes(path.read_bytes()[:200_000])  # cut after a user's dataset was built
    with pytest.raises(FeatureError, match=r"v2\.npy: truncated"):
        list(Loaders(num_workers=1, collate_fn=None, seed=1, device=CPU, input=input).get(per_video, [0, 1, 2], 3, 0))


def test_avst_nonfinite_row_in_a_batch_names_its_video(avst):
    root, train = avst
    clean = {v: np.load(root / "audio" / f"{v}.npy") for v in ("v2", "v3")}
    for video, row in (("v2", 12), ("v3", 0)):
        audio = clean[video].copy()
        audio[row, 5] = np.nan
        np.save(root / "audio" / f"{video}.npy", audio)
    ds = avst_dataset(root, train, "npy")
    with pytest.raises(FeatureError, match=r"v2\.npy: the audio features of video 'v2' hold NaN"):
        ds.__getitems__([0, 1, 2])  # v1 (fine), v2, v3: the first bad item is named
    for video, audio in clean.items():
        np.save(root / "audio" / f"{video}.npy", audio)
    ds = avst_dataset(root, train, "f16")
    store = np.load(root / "f16" / "res18_14x14.npy", mmap_mode="r+")
    store[30 + 30 + 31, 7, 2, 2] = -np.inf  # v3's row 31: only a negative can draw it (positives: 0, 6, ..., 42)
    store.flush()
    index = root / "f16" / "res18_14x14.index.json"  # a store checked when packed is trusted: this one is not
    index.write_text(json.dumps({**json.loads(index.read_text()), "checked": False}))
    ds.visual = PackedFeatures(root / "f16", "visual")
    loader = Loaders(num_workers=0, collate_fn=None, seed=1, device=CPU)
    with pytest.raises(FeatureError, match=r"res18_14x14\.npy: the visual features of video 'v3' hold NaN or inf"):
        for epoch in range(30):
            list(loader.get(ds, [0, 1, 3, 4], 4, epoch))  # the questions about v1 and v2


@pytest.fixture
def masn(tmp_path):
    """Videos 1 (7 frames) and 2 (3 frames), 4 objects per frame; read with v_max_length 5."""
    write_features(tmp_path, {1: 7, 2: 3}, objects=4, subdir=False)
    features = VideoFeatures(resolve_feature_files(tmp_path, "tgif-qa"), "", 5)
    fields = [np.arange(40).reshape(4, 10), np.array([3, 4, 5, 6]), np.array([1.0, 2.0, 3.0, 4.0], np.float32)]
    return tmp_path, QADataset("Count", np.array([2, 1, 1, 2]), fields, features)


def test_masn_batches_hold_the_padded_rows_of_the_files(masn):
    root, ds = masn
    split = Subset(ds, [3, 0, 1, 2])  # as build.py wraps train and val
    batches = list(Loaders(num_workers=0, collate_fn=None, seed=1, device=CPU).get(split, [2, 0, 3, 1], 3, None))
    paths = ds.features.paths
    with h5py.File(paths["res_avg"]) as a, h5py.File(paths["i3d_avg"]) as b, h5py.File(paths["res_roi"]) as c, \
            h5py.File(paths["i3d_roi"]) as e:
        files = {"res_avg": a, "i3d_avg": b, "res_roi": c["image_features"], "bbox": c["spatial_features"],
                 "i3d_roi": e}
        for batch, chunk in zip(batches, [[1, 3, 2], [0]], strict=True):  # the Subset maps 2, 0, 3, 1
            same(batch, default_collate([ds[i] for i in chunk]))
            for n, i in enumerate(chunk):
                video = str(ds.video_ids[i])
                for name, got in zip(masn_features.ORDER, batch):
                    want = np.zeros(got.shape[1:], np.float32)
                    raw = files[name][video][:5]
                    want[tuple(slice(0, s) for s in raw.shape)] = raw
                    np.testing.assert_array_equal(got[n].numpy(), want)
                assert batch[5][n] == min(5, len(files["res_avg"][video]))
            assert batch[6].tolist() == [ds.fields[0][i].tolist() for i in chunk]


def test_masn_direct_reads_equal_hdf5_reads_and_stored_layouts_that_need_hdf5_still_read(masn, tmp_path):
    """Contiguous float32 arrays are read at their file offset (engine-free of HDF5), the rest through h5py
    (chunked + gzip, float64): the batches are the same either way."""
    root, ds = masn
    other = tmp_path / "converted"
    other.mkdir()
    for path in ds.features.paths.values():
        with h5py.File(path) as src, h5py.File(other / path.name, "w") as dst:
            def copy(name, obj, dst=dst, wide="i3d_avg" in path.name):
                if isinstance(obj, h5py.Dataset):
                    data = obj[()].astype(np.float64 if wide else np.float32)
                    dst.create_dataset(name, data=data, chunks=True, compression="gzip")
            src.visititems(copy)
    converted = VideoFeatures(resolve_feature_files(other, "tgif-qa"), "", 5)
    for features, direct in ((ds.features, True), (converted, False)):
        plan = features._plan(features._data(), "1")
        assert all(isinstance(where, int) == direct for _, where in plan.values())
    for videos in ([1, 2], [2, 2, 1]):
        same(converted.read_batch(videos), ds.features.read_batch(videos))


def test_masn_checks_every_read_for_nan(masn, monkeypatch):
    """The HDF5 files carry no record of a check, so every read checks all five arrays of every video: a
    value changed in place after the first read is still found (in a worker and in this process)."""
    root, ds = masn
    features = ds.features
    calls = []
    real = masn_features.nonfinite_rows
    monkeypatch.setattr(masn_features, "nonfinite_rows", lambda rows: calls.append(len(rows)) or real(rows))
    features.check_videos([1, 2])
    features.read_batch([2])
    features.read_batch([2, 1])
    assert len(calls) == 15  # five arrays per video read
    features.close()
    with h5py.File(features.paths["i3d_roi"], "r+") as f:
        f["2"][1, 0, 0] = np.nan
    for workers in (0, 1):
        loader = Loaders(num_workers=workers, collate_fn=None, seed=1, device=CPU).get(ds, [0, 1, 2, 3], 4, None)
        with pytest.raises(MasnFeatureError, match=r"video '2' \(i3d_roi\) holds NaN or inf"):
            list(loader)


def test_masn_nonfinite_row_in_a_batch_names_its_video(masn):
    root, ds = masn
    with h5py.File(ds.features.paths["i3d_roi"], "a") as f:
        bad = f["1"][:]
        bad[2, 3, 7] = np.inf
        del f["1"]
        f["1"] = bad
    with pytest.raises(MasnFeatureError, match=r"obj10\.hdf5: video '1' \(i3d_roi\) holds NaN or inf"):
        ds.__getitems__([0, 1])  # video 2 (fine), then video 1
