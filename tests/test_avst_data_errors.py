"""AVST / stage-1 inputs that a loader could accept silently or crash on: a packed index with bad
ranges, NaN / inf, unusable dtypes, a feature file missing for the val split only, corrupt frames, bad
records. Each is refused where it enters, naming the file."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from avst.data.annotations import AnnotationError, load_records
from avst.data.check import main as check_main
from avst.data.dataset import AVQADataset
from avst.data.features import FeatureError, NpyFeatures, PackedFeatures
from avst.data.packing import pack
from avst.data.vocab import Vocab
from engine.errors import run_cli
from grounding_gen.dataset import FrameError, GroundingDataset, load_frame
from tests.test_avst_data import rec, write_json


@pytest.fixture
def features(tmp_path):
    """Videos v1, v2 (60 rows) and v3 (45 audio rows); visual maps of 12 rows (padded) keep the files small."""
    for kind, shape in (("audio", (128,)), ("visual", (512, 14, 14))):
        (tmp_path / kind).mkdir()
        for k, rows in ((1, 60), (2, 60), (3, 45)):
            n = rows if kind == "audio" else 12 + 33 * (k == 3)
            np.save(tmp_path / kind / f"v{k}.npy", np.full((n, *shape), k, np.float32))
    train = write_json(tmp_path / "train.json", [rec(i, f"v{1 + i % 3}", "Is there a <Object> sound?",
                                                     ["piano"], "yes") for i in range(6)])
    return tmp_path, train


def sources(root):
    return {k: NpyFeatures(root / k, k) for k in ("audio", "visual")}


@pytest.fixture
def packed(features):
    root, _ = features
    audio = {"audio": NpyFeatures(root / "audio", "audio")}
    pack(["v1", "v2", "v3"], audio, root / "packed", np.float32)  # rows v1 0-60, v2 60-120, v3 120-165
    return root / "packed"


@pytest.mark.parametrize("ranges, why", [
    ({"v1": [0, 60], "v2": [60, 60], "v3": [120, 165]}, r"v2: \[60, 60\] empty"),
    ({"v1": [0, 60], "v2": [120, 60], "v3": [120, 165]}, r"v2: \[120, 60\] reversed"),
    ({"v1": [-10, 60], "v2": [60, 120], "v3": [120, 165]}, r"v1: \[-10, 60\] negative"),
    ({"v1": [0, 60], "v2": [60, 120], "v3": [120, 170]}, r"v3: \[120, 170\] past the end \(165 rows\)"),
    ({"v1": [0, 166], "v2": [60, 120], "v3": [120, 165]}, r"v1: \[0, 166\] past the end \(165 rows\)"),  # 0 is no sign
    ({"v1": [0, 60], "v2": [50, 120], "v3": [120, 165]}, r"v2: overlaps v1"),
    ({"v1": [0, 60], "v2": [60, 120.0], "v3": [120, 165]}, r"v2: \[60, 120\.0\] is not \[start, stop\]"),
])
def test_packed_index_ranges_checked_when_opened(packed, ranges, why):
    index_file = packed / "vggish.index.json"
    index = json.loads(index_file.read_text())
    index["videos"] = ranges
    index_file.write_text(json.dumps(index))
    with pytest.raises(FeatureError, match=rf"vggish\.index\.json: 1 bad row range\(s\): {why}"):
        PackedFeatures(packed, "audio")


def test_packed_index_duplicate_video_and_check_data(packed, features, capsys):
    _, train = features
    index_file = packed / "vggish.index.json"
    text = index_file.read_text()
    index_file.write_text(text.replace('"v3": [', '"v1": [0, 60], "v3": ['))  # v1 twice: json keeps the last
    with pytest.raises(FeatureError, match=r"vggish\.index\.json: not a valid packed index \(video 'v1' is "
                                           r"listed twice\)"):
        PackedFeatures(packed, "audio")
    assert check_main(["music-avqa", "--json_file", str(train), "--vocab_json", str(train), "--packed",
                       str(packed), "--json"]) == 1
    assert "listed twice" in " ".join(json.loads(capsys.readouterr().out)["problems"])


def test_nonfinite_features_named_by_item_check_data_and_pack(features, capsys):
    root, train = features
    bad = np.load(root / "visual" / "v3.npy")
    bad[31, 7, 2, 2] = np.inf  # a frame only a negative can draw (positives are rows 0, 6, ..., 42, 44)
    np.save(root / "visual" / "v3.npy", bad)
    ds = AVQADataset(load_records(train), Vocab.build(train), *sources(root).values(), seed=3)
    with pytest.raises(FeatureError, match=r"v3\.npy: the visual features of video 'v3' hold NaN or inf"):
        for epoch in range(20):
            ds.set_epoch(epoch)
            for i in (0, 1, 3, 4):  # the questions about v1 and v2
                ds[i]
    audio = np.load(root / "audio" / "v1.npy")
    audio[12, 0] = np.nan
    np.save(root / "audio" / "v1.npy", audio)
    with pytest.raises(FeatureError, match=r"v1\.npy: the audio features of video 'v1' hold NaN"):
        ds[0]
    args = ["music-avqa", "--json_file", str(train), "--vocab_json", str(train), "--audio_dir", str(root / "audio"),
            "--video_res14x14_dir", str(root / "visual"), "--json"]
    assert check_main(args) == 1
    assert len(json.loads(capsys.readouterr().out)["nonfinite"]) == 2
    with pytest.raises(FeatureError, match=r"v1\.npy: the audio features of video 'v1' hold NaN"):
        pack(["v1", "v2", "v3"], sources(root), root / "packed", np.float32)
    assert not (root / "packed").exists() or not any((root / "packed").iterdir())


@pytest.mark.parametrize("array, why", [
    (np.zeros((60, 128), np.int64), "dtype int64"),
    (np.zeros((60, 128), np.complex64), "dtype complex64"),
    (np.full((60, 128), "x"), "dtype <U1"),
    (np.full((60, 128), None, dtype=object), "unreadable"),  # never unpickled
])
def test_unusable_dtypes_refused_when_the_split_is_built(features, array, why):
    root, train = features
    np.save(root / "audio" / "v2.npy", array, allow_pickle=True)
    with pytest.raises(FeatureError, match=rf"1 feature file\(s\) of this split cannot be used, the first: "
                                           rf".*v2\.npy: {why}"):
        AVQADataset(load_records(train), Vocab.build(train), *sources(root).values())


def test_float16_overflow_refused_by_pack(features):
    root, _ = features
    np.save(root / "audio" / "v2.npy", np.full((60, 128), 1e6, np.float32))
    with pytest.raises(FeatureError, match=r"v2\.npy: values beyond the range of float16"):
        pack(["v1", "v2"], sources(root), root / "packed", np.float16)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from avst.data.synthetic import make_dataset

    root = tmp_path_factory.mktemp("musicavqa")
    make_dataset(root, seed=1, n_videos=3, n_frame_videos=0, rounds=1)
    return root


def cli(demo, tmp_path, **labels):
    from avst.main_avst import main

    argv = ["--mode", "train", "--model", "baseline", "--epochs", "1", "--batch-size", "4", "--num_workers", "0",
            "--quiet", "--audio_dir", str(demo / "feats/vggish"), "--video_res14x14_dir",
            str(demo / "feats/res18_14x14"), "--vocab_json", str(demo / "json/avqa-train.json"),
            "--run_dir", str(tmp_path / "run")]
    for split in ("train", "val"):
        argv += [f"--label_{split}", str(labels.get(split, demo / f"json/avqa-{split}.json"))]
    return run_cli(main, argv)


def test_feature_missing_for_val_only_fails_before_training(demo, tmp_path, capsys, monkeypatch):
    from avst.tasks import AVQATask

    steps = []
    loss = AVQATask.training_loss
    monkeypatch.setattr(AVQATask, "training_loss", lambda self, *a: steps.append(1) or loss(self, *a))
    val = json.loads((demo / "json/avqa-val.json").read_text())
    val[-1]["video_id"] = "99999999"
    assert cli(demo, tmp_path, val=write_json(tmp_path / "val.json", val)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "99999999.npy" in err[0]
    assert steps == []  # found before the first training step


@pytest.mark.parametrize("change, why", [
    (lambda r: r.update(question_id="q7"), "question_id must be an integer, got 'q7'"),
    (lambda r: r.pop("templ_values"), r"record lacks key\(s\) \['templ_values'\]"),
    (lambda r: r.update(anser="seventeen"), "answer 'seventeen' is not among the"),
])
def test_bad_records_exit_2_with_one_line(demo, tmp_path, capsys, change, why):
    val = json.loads((demo / "json/avqa-val.json").read_text())
    change(val[0])
    assert cli(demo, tmp_path, val=write_json(tmp_path / "val.json", val)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert any(s in err[0] for s in ("val.json", "question_id")) and __import__("re").search(why, err[0])


def test_empty_annotation_file_refused(tmp_path):
    with pytest.raises(AnnotationError, match=r"e\.json: holds no question"):
        load_records(write_json(tmp_path / "e.json", []))


def test_grounding_frames_and_audio_checked(tmp_path):
    (tmp_path / "audio").mkdir()
    for k in range(2):
        folder = tmp_path / "frames" / f"v{k}"
        folder.mkdir(parents=True)
        for f in range(10):
            Image.new("RGB", (8, 8), (k * 90, 0, 0)).save(folder / f"{f + 1:06d}.jpg")
        np.save(tmp_path / "audio" / f"v{k}.npy", np.zeros((60, 128), np.float32))
    audio = NpyFeatures(tmp_path / "audio", "audio")
    jpeg = tmp_path / "frames" / "v1" / "000004.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:40])  # truncated download
    with pytest.raises(FrameError, match=r"000004\.jpg: the image cannot be decoded"):
        load_frame(jpeg)
    with pytest.raises(FrameError, match=r"frames/v2: frame folder not found"):
        GroundingDataset(["v0", "v2"], audio, tmp_path / "frames")
    (tmp_path / "frames" / "v1" / "000010.jpg").unlink()
    with pytest.raises(FrameError, match=r"frames/v1: 9 frames, stage 1 needs the first 10"):
        GroundingDataset(["v0", "v1"], audio, tmp_path / "frames")
    with pytest.raises(FrameError, match="at least two videos"):
        GroundingDataset(["v0"], audio, tmp_path / "frames")
    np.save(tmp_path / "audio" / "v0.npy", np.zeros((60, 64), np.float32))
    Image.new("RGB", (8, 8)).save(tmp_path / "frames" / "v1" / "000010.jpg")
    with pytest.raises(FeatureError, match=r"v0\.npy: shape \[60, 64\]"):
        GroundingDataset(["v0", "v1"], audio, tmp_path / "frames")


def test_pack_script_refuses_nonfinite_with_one_line(features, tmp_path):  # the script as a user runs it
    import subprocess
    import sys
    from pathlib import Path

    root, train = features
    audio = np.load(root / "audio" / "v2.npy")
    audio[3, 3] = np.nan
    np.save(root / "audio" / "v2.npy", audio)
    script = Path(__file__).resolve().parents[1] / "scripts" / "pack_avst_features.py"
    proc = subprocess.run([sys.executable, str(script), "--label_json", str(train), "--audio_dir", str(root / "audio"),
                           "--video_res14x14_dir", str(root / "visual"), "--out", str(tmp_path / "packed")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "v2.npy: the audio features of video 'v2' hold NaN or inf" in proc.stderr
    assert not list((tmp_path / "packed").glob("*.npy"))


def test_descriptor_cache_closes_what_leaves_it_and_never_a_file_in_use(tmp_path):
    from avst.data.features import Descriptors

    paths = []
    for i in range(4):
        paths.append(tmp_path / f"f{i}")
        paths[-1].write_bytes(b"x")
    cache = Descriptors(2)
    with cache.use("f0", paths[0]) as held:  # in use while two others push it out of the cache
        fds = {}
        for i in (1, 2):
            with cache.use(f"f{i}", paths[i]) as fds[i]:
                pass
        assert os.read(held, 1) == b"x"  # still open under its reader
    with pytest.raises(OSError):
        os.fstat(held)  # closed by its last reader once out of the cache
    with cache.use("f3", paths[3]):
        pass
    assert list(cache.entries) == ["f2", "f3"]
    with pytest.raises(OSError):
        os.fstat(fds[1])  # unused when it left the cache: closed at once
    assert os.fstat(fds[2])


def test_mixed_dtype_files_read_into_one_batch(tmp_path):
    (tmp_path / "audio").mkdir()
    a, b = np.arange(60 * 128).reshape(60, 128), np.arange(60 * 128).reshape(60, 128)[::-1]
    np.save(tmp_path / "audio" / "v1.npy", a.astype(np.float16))
    np.save(tmp_path / "audio" / "v2.npy", b.astype(np.float32) / 7)
    source = NpyFeatures(tmp_path / "audio", "audio")
    got = source.read_pairs([("v2", 5), ("v1", 3), ("v2", 59)])  # the first pair's dtype: float32
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.stack([b[5] / 7, a[3].astype(np.float16), b[59] / 7]).astype(np.float32))
