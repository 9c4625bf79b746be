"""MASN inputs that a loader could accept silently or crash on: each is refused where it enters
(``build.py`` before any training step, the reader per item, ``check_data.py``) with the file and key named."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from engine.errors import run_cli
from masn.data import check, tgif
from masn.data.build import load_tgif, random_val_split
from masn.data.features import FeatureError, VideoFeatures, resolve_feature_files
from masn.data.glove import GloveError, read_glove_vectors
from tests.test_masn_data import count_rows, quiet, write_features, write_glove, write_tgif


@pytest.fixture
def count(tmp_path):
    """Count: train keys 100-109, test keys 110-113, three frames each."""
    write_tgif(tmp_path / "q", "Count", count_rows(10), count_rows(4, 10))
    d = write_features(tmp_path / "f", {100 + i: 3 for i in range(14)})
    write_glove(tmp_path / "v" / "glove.42B.300d.txt", ["how", "many", "times", "jump"])
    return tmp_path, d


def load(root, **kw):
    return load_tgif("Count", root / "q", root / "f", root / "v", log=quiet, **kw)


def replace(path, key, value):
    with h5py.File(path, "a") as f:
        del f[key]
        f[key] = value


def check_argv(root):
    return ["tgif-qa", "--task", "Count", "--csv_dir", str(root / "q"), "--feat_dir", str(root / "f"), "--json"]


def test_nonfinite_features_named_by_reader_and_check_data(count, capsys):
    root, d = count
    bad = np.ones((3, 10, 2048), np.float32)
    bad[2, 4, 7] = np.nan
    replace(d / "tgif_i3d_roialign_hw7_perclip_avgpool_obj10.hdf5", "112", bad)  # a test-split video
    data = load(root)  # shapes are fine: the build passes, the item does not
    with pytest.raises(FeatureError, match=r"obj10\.hdf5: video '112' \(i3d_roi\) holds NaN or inf"):
        data.splits["test"][2]
    assert check.main(check_argv(root)) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["features"]["nonfinite"] == 1 and "'112'" in report["features"]["nonfinite_examples"][0]


def test_nonfinite_glove_vector_names_the_word(tmp_path):
    glove = tmp_path / "g.txt"
    write_glove(glove, ["cat", "dog"])
    lines = glove.read_text().splitlines()
    lines[1] = "dog " + " ".join(["inf"] + ["0.1"] * 299)
    glove.write_text("\n".join(lines) + "\n")
    assert set(read_glove_vectors(glove, {"cat"})) == {"cat"}  # only the words asked for are read
    with pytest.raises(GloveError, match=r"g\.txt: line 2: the vector of 'dog' holds NaN or inf"):
        read_glove_vectors(glove, {"cat", "dog"})


@pytest.mark.parametrize("value, why", [
    (np.array([["a"] * 2048] * 3, dtype="S1"), "dtype |S1, expected floating point"),
    (np.ones((3, 2048), np.int64), "dtype int64, expected floating point"),
    (np.ones((3, 2048), np.complex64), "dtype complex64, expected floating point"),
])
def test_unusable_dtype_refused_before_training(count, value, why):
    root, d = count
    replace(d / "res152_avgpool.hdf5", "113", value)  # only the test split uses it
    with pytest.raises(FeatureError, match=rf"res152_avgpool\.hdf5: video '113' \(res_avg\) {why}"):
        load(root)


def test_group_instead_of_array_and_disagreeing_streams(count, capsys):
    root, d = count
    with h5py.File(d / "tgif_i3d_hw7_perclip_avgpool.hdf5", "a") as f:
        del f["111"]
        f.create_group("111")
    with pytest.raises(FeatureError, match=r"perclip_avgpool\.hdf5: video '111' \(i3d_avg\) is an HDF5 group"):
        load(root)
    replace(d / "tgif_i3d_hw7_perclip_avgpool.hdf5", "111", np.ones((3, 2048), np.float32))
    replace(d / "res152_avgpool.hdf5", "104", np.ones((5, 2048), np.float32))  # 5 frames, the others 3
    with pytest.raises(FeatureError, match=r"video '104': frame counts differ between the files \(res_avg 5, "
                                           r"i3d_avg 3"):
        load(root)
    assert check.main(check_argv(root)) == 1
    assert json.loads(capsys.readouterr().out)["features"]["unusable"] == 1


def test_corrupt_hdf5_internals_named(count):
    root, d = count
    path = d / "tgif_i3d_hw7_perclip_avgpool.hdf5"
    with h5py.File(path, "w") as f:
        f["100"] = np.ones((3, 2048), np.float32)
    raw = bytearray(path.read_bytes())
    raw[800:1000] = b"\xff" * 200  # the dataset's object header: the file opens, the video does not
    path.write_bytes(bytes(raw))
    feats = VideoFeatures(resolve_feature_files(root / "f", "tgif-qa"), "", 4)
    with pytest.raises(FeatureError, match=r"perclip_avgpool\.hdf5.*corrupt or truncated"):
        feats.read(100)


def test_labels_out_of_range_refused(tmp_path):
    rows = count_rows(4)
    rows[2]["answer"] = -5  # the original turns it into 1
    write_tgif(tmp_path, "Count", rows, count_rows(2, 4))
    with pytest.raises(tgif.DataError, match=r"Train_count_question\.csv: 1 'answer' value\(s\) outside >= 0 "
                                             r"\(line\(s\) \[4\], e\.g\. -5\)"):
        tgif.read_csv(tgif.csv_path(tmp_path, "Count", "train"), "Count")
    frame = [{"gif_name": "g", "question": "what is it ?", "answer": "cat", "type": t, "vid_id": f"F{i}", "key": i,
              "description": "x"} for i, t in enumerate([0, 3, 4])]
    write_tgif(tmp_path, "FrameQA", frame, frame[:1])
    with pytest.raises(tgif.DataError, match=r"'type' value\(s\) outside 0\.\.3"):
        tgif.read_csv(tgif.csv_path(tmp_path, "FrameQA", "train"), "FrameQA")


@pytest.mark.parametrize("ratio, side", [(1.0, "no training"), (0.0, "no validation"), (-0.2, "no validation")])
def test_val_ratio_that_empties_a_side_is_refused(ratio, side):
    with pytest.raises(tgif.DataError, match=f"--val_ratio {ratio} leaves {side} question"):
        random_val_split(100, ratio, 999)


def test_colliding_identifiers_refused(count, capsys):
    root, _ = count
    train, test = count_rows(10), count_rows(4, 10)
    test[1]["key"] = 103  # GIF g11 would read GIF g3's features
    write_tgif(root / "q", "Count", train, test)
    with pytest.raises(tgif.DataError, match=r"1 feature key\(s\) given to more than one gif_name, e\.g\. key '103' "
                                             r"at .*Train_count_question\.csv: line 5; .*Test_count_question\.csv: "
                                             r"line 3"):
        load(root)
    assert check.main(check_argv(root)) == 1
    assert any("gif_name" in p for p in json.loads(capsys.readouterr().out)["problems"])
    test[1]["key"], test[1]["gif_name"] = 103, "g3"  # the same GIF asked twice is fine ...
    test[2]["vid_id"] = "COUNT10"  # ... a question id used twice in a file is not
    write_tgif(root / "q", "Count", train, test)
    with pytest.raises(tgif.DataError, match=r"1 question id\(s\) \(vid_id\) used twice in a file, e\.g\. vid_id "
                                             r"'COUNT10' at .*Test_count_question\.csv: line 2; .*line 4"):
        load(root)


def test_masn_cli_exit_2_with_one_line(count, capsys):
    from masn.main import main

    root, d = count
    replace(d / "res152_avgpool.hdf5", "113", np.ones((3, 2048), np.int32))
    argv = ["--task", "Count", "--df_dir", str(root / "q"), "--feat_dir", str(root / "f"), "--vc_dir",
            str(root / "v"), "--run_dir", str(root / "run"), "--max_epoch", "1", "--num_workers", "0", "--quiet"]
    assert run_cli(main, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "video '113' (res_avg) dtype int32" in err[0]


def test_split_left_empty_is_refused(count):
    root, _ = count
    with pytest.raises(tgif.DataError, match=r"Train_count_question\.csv: the train split holds no question"):
        load(root, max_n_videos=0)
