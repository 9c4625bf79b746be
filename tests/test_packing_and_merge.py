"""scripts/pack_avst_features.py round trip, and two processes merging shards into one HDF5 at once.

Oracles: the per-video .npy files read with plain numpy (the packed rows must be exactly those rows,
in index order, float16 when asked); for the merge, every video both processes staged must be in the
final file with its own values, whatever the interleaving.
"""
from __future__ import annotations

import importlib.util
import json
import multiprocessing
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from avst.data.annotations import make_record

ROOT = Path(__file__).resolve().parent.parent
ROWS = {"a": 60, "b": 60, "c": 45}  # "c" is shorter than 60 seconds


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def per_video(tmp_path):
    rng = np.random.RandomState(0)
    for kind, shape in (("vggish", (128,)), ("res18", (512, 14, 14))):
        (tmp_path / kind).mkdir()
        for vid, rows in ROWS.items():
            np.save(tmp_path / kind / f"{vid}.npy", rng.randn(rows, *shape).astype(np.float32))
    records = [make_record(vid, i, "Audio", "Counting", "Is there a voiceover?", [], "no")
               for i, vid in enumerate(["b", "a", "c", "a"])]
    (tmp_path / "train.json").write_text(json.dumps(records[:2]))
    (tmp_path / "test.json").write_text(json.dumps(records[2:]))
    return tmp_path


@pytest.mark.parametrize("float16", [False, True])
def test_pack_script_round_trip(per_video, float16):
    out = per_video / "packed"
    argv = ["--label_json", str(per_video / "train.json"), str(per_video / "test.json"), "--audio_dir",
            str(per_video / "vggish"), "--video_res14x14_dir", str(per_video / "res18"), "--out", str(out)]
    assert load_script("pack_avst_features").main(argv + (["--dtype", "float16"] if float16 else [])) == 0
    dtype = np.float16 if float16 else np.float32
    for stem, src in (("vggish", "vggish"), ("res18_14x14", "res18")):
        index = json.loads((out / f"{stem}.index.json").read_text())
        packed = np.load(out / f"{stem}.npy")
        assert packed.dtype == dtype and index["rows"] == len(packed) == sum(ROWS.values())
        by_start = sorted(index["videos"], key=lambda v: index["videos"][v][0])
        assert by_start == ["b", "a", "c"]  # first appearance over the JSON files
        for vid, (start, stop) in index["videos"].items():
            np.testing.assert_array_equal(packed[start:stop], np.load(per_video / src / f"{vid}.npy").astype(dtype))

    # the AVST loader reads the same rows from both stores, the short video padded with its last row
    from avst.data.features import open_features

    rows = np.array([0, 6, 44, 54])
    for kind, folder in (("audio", "vggish"), ("visual", "res18")):
        plain, store = open_features(kind, per_video / folder, None), open_features(kind, None, out)
        for vid in ROWS:
            expect = np.load(per_video / folder / f"{vid}.npy")[np.minimum(rows, ROWS[vid] - 1)].astype(dtype)
            np.testing.assert_array_equal(store.read(vid, rows), expect)
            np.testing.assert_array_equal(plain.read(vid, rows).astype(dtype), expect)


def _shard(path: str, videos: list[str], delay: float, barrier) -> None:
    """One extractor shard: stage its videos, then merge (reading each staged file slowly)."""
    from feat_script.stores import Hdf5Store, NpyDirStore

    read = NpyDirStore.read

    def slow_read(self, video_id, key=""):
        time.sleep(delay)
        return read(self, video_id, key)

    NpyDirStore.read = slow_read
    store = Hdf5Store(Path(path))
    for vid in videos:
        store.write(vid, {"": np.full((2, 3), int(vid[1:]), np.float32)})
    barrier.wait()
    store.finalize()


def test_two_shards_merge_into_one_hdf5_at_the_same_time(tmp_path):
    """Both shards finalize together; the slower reader would find its staged files merged and removed
    by the other (or one rename would drop the other's videos) without the lock."""
    ctx = multiprocessing.get_context("fork")
    out = tmp_path / "feats.hdf5"
    barrier = ctx.Barrier(2)
    shards = {0: [f"v{i}" for i in range(0, 12, 2)], 1: [f"v{i}" for i in range(1, 12, 2)]}
    procs = [ctx.Process(target=_shard, args=(str(out), shards[k], 0.01 * (k + 1), barrier)) for k in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    with h5py.File(out, "r") as f:
        assert sorted(f.keys(), key=lambda k: int(k[1:])) == [f"v{i}" for i in range(12)]
        for key in f:
            np.testing.assert_array_equal(f[key][()], np.full((2, 3), int(key[1:]), np.float32))
    assert not (tmp_path / "feats.hdf5.parts").exists() or not any((tmp_path / "feats.hdf5.parts").iterdir())
