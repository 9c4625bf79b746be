"""The packed store both papers read (engine.packed): MASN's HDF5 converter and reader give the HDF5 path's
tensors, a store checked finite when packed is trusted and any other is scanned at every read, and a header
that does not describe its array is refused when the store is opened, naming the file."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from avst.data import dataset as avst_dataset
from avst.data.dataset import AVQADataset
from avst.data.features import NpyFeatures, PackedFeatures
from avst.data.packing import pack
from avst.data.vocab import Vocab
from engine.errors import run_cli
from engine.packed import PackedArray, PackedError, PackedWriter
from masn.data import features as masn_features
from masn.data.build import open_features
from masn.data.dataset import QADataset
from masn.data.features import FeatureError, VideoFeatures, resolve_feature_files
from masn.data.pack import main as pack_main
from masn.data.packed import PackedVideoFeatures
from tests.test_avst_data import rec, write_json
from tests.test_masn_data import write_features

FRAMES = {1: 7, 2: 3, 3: 5}  # read with v_max_length 5: video 1 truncated, 2 padded, 3 exact


def one_error_line(capsys, *names) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    for name in names:
        assert str(name) in err[0], err[0]
    return err[0]


def convert(src, out, *extra) -> int:
    return run_cli(pack_main, ["--feat_dir", str(src), "--dataset", "tgif-qa", "--out", str(out), *extra])


@pytest.fixture
def hdf5(tmp_path):
    """The four HDF5 files, 4 objects per frame (the store pads them to 10, as the reader does)."""
    write_features(tmp_path / "h5", FRAMES, objects=4, subdir=False)
    return tmp_path / "h5"


def masn_dataset(features) -> QADataset:
    fields = [np.arange(50).reshape(5, 10), np.array([3, 4, 5, 6, 7])]
    return QADataset("Count", np.array([2, 1, 3, 3, 1]), fields, features)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_masn_packed_store_gives_the_hdf5_tensors(hdf5, tmp_path, dtype, capsys):
    assert convert(hdf5, tmp_path / "packed", "--dtype", dtype) == 0
    assert "packed 3 videos" in capsys.readouterr().out
    plain = masn_dataset(VideoFeatures(resolve_feature_files(hdf5, "tgif-qa"), "", 5))
    packed = masn_dataset(open_features("tgif-qa", None, 5, packed=tmp_path / "packed"))
    assert isinstance(packed.features, PackedVideoFeatures) and packed.features.checked
    for items in ([0, 1, 2, 3, 4], [4], [2, 0]):
        want, got = plain.__getitems__(items).batch, packed.__getitems__(items).batch
        for w, g in zip(want, got, strict=True):
            assert g.dtype == w.dtype and g.shape == w.shape
            if dtype == "float32" or not w.is_floating_point():
                assert torch.equal(g, w)
            else:  # within float16 rounding: exactly the HDF5 values rounded to float16
                assert torch.equal(g, w.half().float())
    for i in range(5):
        for w, g in zip(plain[i], packed[i], strict=True):
            np.testing.assert_array_equal(np.asarray(g), np.asarray(w).astype(dtype).astype(np.asarray(w).dtype))
    assert int(packed[1][5]) == 5 and int(packed[0][5]) == 3  # lengths: truncated to 5, and 3
    header = json.loads((tmp_path / "packed" / "res_roi.index.json").read_text())
    assert header == {"format": "packed-v1", "dtype": dtype, "row_shape": [10, 2048], "rows": 15,
                      "videos": {"1": [0, 7], "2": [7, 10], "3": [10, 15]}, "checked": True, "checks": ["finite"]}


def test_masn_videos_some_file_lacks_are_left_out_and_read_as_missing(tmp_path, capsys):
    write_features(tmp_path / "h5", FRAMES, objects=10, subdir=False)
    import h5py

    with h5py.File(tmp_path / "h5" / "res152_avgpool.hdf5", "r+") as f:
        del f["3"]
    assert convert(tmp_path / "h5", tmp_path / "packed") == 0
    assert "1 video(s) some file lacks were left out" in capsys.readouterr().out
    features = PackedVideoFeatures(tmp_path / "packed", "", 5)
    missing, bad = features.check_videos([1, 2, 3])
    assert bad == [] and all(keys == ["3"] for keys in missing.values()) and len(missing) == 5
    with pytest.raises(FeatureError, match="video '3' is missing"):
        features.read(3)
    zeros = PackedVideoFeatures(tmp_path / "packed", "", 5, allow_missing=True).read(3)
    assert all(not a.any() for a in zeros[:5]) and zeros[5] == 1  # the original's zeros, length 1


# --- checked and unchecked stores ----------------------------------------------------------------------

def unmark(header_path) -> None:
    header = json.loads(header_path.read_text())
    header["checked"] = False
    header_path.write_text(json.dumps(header))


def spoil(array_path, row: int, value: float) -> None:
    array = np.load(array_path, mmap_mode="r+")
    array[row, 0, 5] = value
    array.flush()


def counting(monkeypatch, module) -> list:
    calls, real = [], module.nonfinite_rows
    monkeypatch.setattr(module, "nonfinite_rows", lambda rows: calls.append(len(rows)) or real(rows))
    return calls


def test_checked_masn_store_is_not_scanned_and_an_unchecked_one_is(hdf5, tmp_path, monkeypatch):
    assert convert(hdf5, tmp_path / "packed") == 0
    calls = counting(monkeypatch, masn_features)
    PackedVideoFeatures(tmp_path / "packed", "", 5).read_batch([1, 2, 3])
    assert calls == []
    unmark(tmp_path / "packed" / "bbox.index.json")  # one kind unchecked: the store is scanned
    PackedVideoFeatures(tmp_path / "packed", "", 5).read_batch([1, 2, 3])
    assert len(calls) == 15  # five arrays per video


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_unchecked_masn_store_with_a_nonfinite_row_is_refused_at_read(hdf5, tmp_path, value):
    assert convert(hdf5, tmp_path / "packed") == 0
    spoil(tmp_path / "packed" / "i3d_roi.npy", 7 + 2, value)  # video 2's last frame
    PackedVideoFeatures(tmp_path / "packed", "", 5).read_batch([2])  # checked: trusted, not scanned
    unmark(tmp_path / "packed" / "i3d_roi.index.json")
    features = PackedVideoFeatures(tmp_path / "packed", "", 5)
    features.read_batch([1, 3])  # other videos read fine
    with pytest.raises(FeatureError) as err:
        features.read_batch([1, 2])
    assert str(err.value).startswith(f"{tmp_path / 'packed' / 'i3d_roi.npy'}: video '2' (i3d_roi) holds NaN or inf")
    assert "pack the store again with python -m masn.data.pack from HDF5 files that are finite" in str(err.value)


def test_checked_avst_store_is_not_scanned_and_per_video_files_are(tmp_path, monkeypatch):
    for kind, shape in (("audio", (128,)), ("visual", (512, 14, 14))):
        (tmp_path / kind).mkdir()
        for k in (1, 2):
            np.save(tmp_path / kind / f"v{k}.npy", np.full((12, *shape), k, np.float32))
    train = write_json(tmp_path / "train.json", [rec(i, f"v{1 + i % 2}", "Is there a <Object> sound?", ["piano"],
                                                     "yes") for i in range(4)])
    from avst.data.annotations import load_records

    sources = {k: NpyFeatures(tmp_path / k, k) for k in ("audio", "visual")}
    pack(["v1", "v2"], sources, tmp_path / "packed", np.float16)
    calls = counting(monkeypatch, avst_dataset)
    stores = [PackedFeatures(tmp_path / "packed", k) for k in ("audio", "visual")]
    assert all(s.checked for s in stores)
    AVQADataset(load_records(train), Vocab.build(train), *stores, seed=1).__getitems__([0, 1])
    assert calls == []
    AVQADataset(load_records(train), Vocab.build(train), *sources.values(), seed=1).__getitems__([0, 1])
    assert calls


def test_writer_without_refusal_records_an_unchecked_store(tmp_path):
    """feat_script's --store packed merges what extractors wrote: a NaN is kept, the store marked unchecked."""
    with open(tmp_path / "a.npy", "wb") as f:
        writer = PackedWriter(f, 3, (2,), "float32")
        writer.add("x", np.ones((2, 2), np.float32))
        writer.add("y", np.array([[np.nan, 0]], np.float32))
    assert (writer.header()["checked"], writer.header()["checks"]) == (False, [])
    with open(tmp_path / "b.npy", "wb") as f:
        writer = PackedWriter(f, 1, (2,), "float16")
        writer.add("x", np.array([[65504, -65504]], np.float32))  # float16's largest: still finite
    assert writer.header()["checked"] is True


# --- headers that do not describe their array ----------------------------------------------------------

@pytest.fixture
def store(tmp_path):
    """Videos a (rows 0-3), b (3-5), c (5-9) of one kind, [9, 2, 3] float32."""
    with open(tmp_path / "k.npy", "wb") as f:
        writer = PackedWriter(f, 9, (2, 3), "float32")
        for video, n in (("a", 3), ("b", 2), ("c", 4)):
            writer.add(video, np.full((n, 2, 3), ord(video), np.float32))
    (tmp_path / "k.index.json").write_text(json.dumps(writer.header()))
    return tmp_path


def open_store(root) -> PackedArray:
    return PackedArray(root / "k.npy", root / "k.index.json", (2, 3))


def edit(root, **changes) -> None:
    header = json.loads((root / "k.index.json").read_text())
    (root / "k.index.json").write_text(json.dumps({**header, **changes}))


def test_a_valid_store_reads_every_video_up_to_its_bounds(store):
    array = open_store(store)
    assert array.ranges == {"a": (0, 3), "b": (3, 5), "c": (5, 9)} and array.checked
    out = np.empty((3, 2, 3), np.float32)
    array.read_pairs([("a", 2), ("b", 9), ("c", 0)], out)  # b's row 9: its last
    assert out[:, 0, 0].tolist() == [ord("a"), ord("b"), ord("c")]
    assert array.read_head("c", np.empty((4, 2, 3), np.float32))[:, 1, 2].tolist() == [ord("c")] * 4
    with pytest.raises(ValueError, match="5 rows asked for, it has 4"):
        array.read_head("c", np.empty((5, 2, 3), np.float32))
    edit(store, videos={"a": [0, 3], "b": [3, 5]})  # rows no video owns are allowed
    assert open_store(store).ranges == {"a": (0, 3), "b": (3, 5)}


@pytest.mark.parametrize("videos, why", [
    ({"a": [0, 3], "b": [2, 5], "c": [5, 9]}, r"b: overlaps a"),  # by one row
    ({"a": [0, 3], "b": [3, 6], "c": [5, 9]}, r"c: overlaps b"),
    ({"a": [0, 3], "b": [3, 5], "c": [5, 10]}, r"c: \[5, 10\] past the end \(9 rows\)"),  # by one row
    ({"a": [0, 3], "b": [3, 3], "c": [5, 9]}, r"b: \[3, 3\] empty"),
    ({"a": [0, 3], "b": [5, 3], "c": [5, 9]}, r"b: \[5, 3\] reversed"),
    ({"a": [-1, 3], "b": [3, 5], "c": [5, 9]}, r"a: \[-1, 3\] negative"),
    ({"a": [0, 3], "b": [3, True], "c": [5, 9]}, r"b: \[3, true\] is not \[start, stop\]|b: \[3, True\] is not"),
])
def test_bad_ranges_are_refused_when_opened(store, videos, why):
    edit(store, videos=videos)
    with pytest.raises(PackedError, match=rf"k\.index\.json: 1 bad row range\(s\): {why}"):
        open_store(store)


@pytest.mark.parametrize("changes, why", [
    ({"dtype": "float16"}, r"dtype 'float16' \(the array: 'float32'\)"),
    ({"row_shape": [3, 2]}, r"row_shape \[3, 2\] \(the array: \[2, 3\]\)"),
    ({"rows": 10}, r"rows 10 \(the array: 9\)"),
    ({"rows": 8}, r"rows 8 \(the array: 9\)"),
    ({"videos": [["a", 0, 3]]}, r"videos list, not a mapping"),
])
def test_header_that_does_not_describe_its_array_is_refused(store, changes, why):
    edit(store, **changes)
    with pytest.raises(PackedError, match=rf"k\.index\.json: says {why}"):
        open_store(store)


def test_array_unlike_its_kind_or_cut_is_refused(store, capsys):
    np.save(store / "k.npy", np.zeros((9, 3, 2), np.float32))
    with pytest.raises(PackedError, match=r"k\.npy: float32 \[9, 3, 2\], expected C-ordered floating point "
                                          r"\[rows, 2, 3\]"):
        open_store(store)
    np.save(store / "k.npy", np.zeros((9, 2, 3), np.int32))
    with pytest.raises(PackedError, match=r"k\.npy: int32"):
        open_store(store)
    np.save(store / "k.npy", np.zeros((9, 2, 3), np.float32))
    (store / "k.npy").write_bytes((store / "k.npy").read_bytes()[:-4])
    with pytest.raises(PackedError, match=r"k\.npy: unreadable or truncated"):
        open_store(store)
    np.save(store / "k.npy", np.zeros((9, 2, 3), np.float32))
    (store / "k.index.json").write_text('{"format": "packed-v1", "videos": {"a": [0, 1], "a": [1, 2]}}')
    assert run_cli(open_store, store) == 2
    one_error_line(capsys, store / "k.index.json", "video 'a' is listed twice")


def test_masn_reader_names_the_bad_header_in_one_line(hdf5, tmp_path, capsys):
    assert convert(hdf5, tmp_path / "packed") == 0
    edit_path = tmp_path / "packed" / "bbox.index.json"
    header = json.loads(edit_path.read_text())
    edit_path.write_text(json.dumps({**header, "videos": {**header["videos"], "2": [7, 11]}}))  # into video 3
    assert run_cli(PackedVideoFeatures, tmp_path / "packed", "", 5) == 2
    one_error_line(capsys, edit_path, "3: overlaps 2", "python -m masn.data.pack")
    assert run_cli(PackedVideoFeatures, tmp_path / "nowhere", "", 5) == 2
    one_error_line(capsys, "--packed", tmp_path / "nowhere")


# --- the converter's refusals --------------------------------------------------------------------------

@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_converter_refuses_nonfinite_rows_and_leaves_nothing(hdf5, tmp_path, value, capsys):
    import h5py

    with h5py.File(hdf5 / "tgif_btup_f_obj10.hdf5", "r+") as f:
        f["spatial_features/3"][4, 1, 2] = value
    out = tmp_path / "new" / "packed"
    assert convert(hdf5, out) == 2
    one_error_line(capsys, "tgif_btup_f_obj10.hdf5:spatial_features", "video '3' (bbox) holds NaN or inf")
    assert not out.exists()
    (tmp_path / "empty").mkdir()
    assert convert(hdf5, tmp_path / "empty") == 2  # a folder the user made stays, empty
    assert list((tmp_path / "empty").iterdir()) == []


def test_converter_refuses_values_beyond_float16(hdf5, tmp_path, capsys):
    import h5py

    with h5py.File(hdf5 / "res152_avgpool.hdf5", "r+") as f:
        f["1"][0, 0] = 70000.0
    assert convert(hdf5, tmp_path / "p16", "--dtype", "float16") == 2
    one_error_line(capsys, "res152_avgpool.hdf5", "video '1' (res_avg) holds values beyond the range of float16",
                   "--dtype float32")
    assert not (tmp_path / "p16").exists()
    assert convert(hdf5, tmp_path / "p32", "--dtype", "float32") == 0


def test_converter_refuses_bad_input_before_writing(hdf5, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    assert convert(hdf5, taken) == 2
    one_error_line(capsys, "--out", taken, "notes.txt")
    assert [p.name for p in taken.iterdir()] == ["notes.txt"] and (taken / "notes.txt").read_text() == "mine"
    assert convert(hdf5, taken / "notes.txt") == 2  # a file
    one_error_line(capsys, "is a file")
    assert convert(tmp_path / "nothing", tmp_path / "p") == 2
    one_error_line(capsys, "feature file not found")
    import h5py

    with h5py.File(hdf5 / "tgif_i3d_hw7_perclip_avgpool.hdf5", "r+") as f:
        del f["2"]
        f["2"] = np.zeros((3, 1024), np.float32)  # wrong width
    assert convert(hdf5, tmp_path / "p") == 2
    one_error_line(capsys, "video '2' (i3d_avg) shape (3, 1024)")
    assert not (tmp_path / "p").exists()
    with pytest.raises(SystemExit) as exit_:
        pack_main(["--feat_dir", str(hdf5), "--dataset", "tgif-qa", "--out", str(tmp_path / "p"), "--dtype",
                   "float64"])
    assert exit_.value.code == 2 and not (tmp_path / "p").exists()


# --- masn/main.py --packed ------------------------------------------------------------------------------

def test_masn_main_packed_excludes_feat_dir_and_trains_as_the_hdf5_files(tmp_path, capsys):
    from masn.data.synthetic import make_demo
    from masn.main import build_parser, main

    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_command(["--packed", "p", "--feat_dir", "f"])
    assert exit_.value.code == 2 and "--feat_dir" in capsys.readouterr().err
    assert build_parser().parse_command(["--packed", "p"]).packed == "p"
    demo = tmp_path / "demo"
    make_demo(demo, seed=1, n_train=10, n_test=3, frames=2)
    assert convert(demo / "feat_r6_vsync2", tmp_path / "packed") == 0
    common = ["--task", "Count", "--df_dir", str(demo / "question"), "--vc_dir", str(demo / "vocab"),
              "--batch_size", "5", "--num_workers", "0", "--quiet", "--device", "cpu", "--v_max_length", "3",
              "--max_epoch", "1", "--hidden_size", "16"]
    runs = [main([*common, *source, "--run_dir", str(tmp_path / name)])
            for name, source in (("h5", ["--feat_dir", str(demo)]), ("pk", ["--packed", str(tmp_path / "packed")]))]
    assert runs[0] == runs[1] and runs[0]["val_selected"]["val"]["loss"] > 0
