"""MASN data layer on tiny generated files: tokenizer, vocabulary, GloVe cache, CSV/JSON parsing, HDF5 features,
answer index, data checks. Expected values come from the original's data_utils/ code, written out by hand."""
from __future__ import annotations

import json
import os
import pickle

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from masn import answer_index
from masn.data import check, tgif
from masn.data.build import load_msqa, load_tgif, random_val_split
from masn.data.features import FeatureError, VideoFeatures, resolve_feature_files
from masn.data.glove import GloveError, load_embedding
from masn.data.text import Vocabulary, clean_str, tokenize


def quiet(*_):
    pass


# --- text ----------------------------------------------------------------------------------------------

def test_tokenizer_keeps_the_backslash_quirk():
    # the original's clean_str (data_utils/data_util.py): ( ) ? become the literal tokens \( \) \?; . and - vanish;
    # clitics split off
    assert tokenize("What (is) the man's dog-toy doing?") == \
        ["what", "\\(", "is", "\\)", "the", "man", "'s", "dog", "toy", "doing", "\\?"]
    assert clean_str("Don't stop, now!") == "do n't stop , now !"


def test_vocabulary_order_eos_unk_pad():
    v = Vocabulary.build(["The cat sat", "the DOG sat ?"])
    assert v.words == ["the", "cat", "sat", "<EOS>", "dog", "\\?"]
    assert v.word2idx["#START#"] == 0 and v.word2idx["UNK"] == 1 and v.word2idx["the"] == 2
    assert len(v) == 8
    ids, n = v.encode("the zebra sat", 5)
    assert ids.tolist() == [2, 1, 4, 0, 0] and n == 3
    ids, n = v.encode("the cat sat the cat sat", 4)
    assert ids.tolist() == [2, 3, 4, 2] and n == 4


# --- tiny TGIF-QA --------------------------------------------------------------------------------------

def write_tgif(root, task, rows_train, rows_test):
    root.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", rows_train), ("test", rows_test)):
        pd.DataFrame(rows).to_csv(tgif.csv_path(root, task, split), sep="\t", index=False)


def write_features(feat_dir, lengths: dict[int, int], objects=10, subdir=True, readme_name=False, key_prefix=""):
    d = feat_dir / "feat_r6_vsync2" if subdir else feat_dir
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(0)
    local = ("tgif_i3d_roialign_hw7_perclip_avgpool.hdf5" if readme_name
             else "tgif_i3d_roialign_hw7_perclip_avgpool_obj10.hdf5")
    with h5py.File(d / "res152_avgpool.hdf5", "w") as a, h5py.File(d / "tgif_i3d_hw7_perclip_avgpool.hdf5", "w") \
            as b, h5py.File(d / "tgif_btup_f_obj10.hdf5", "w") as c, h5py.File(d / local, "w") as e:
        for key, t in lengths.items():
            k = f"{key_prefix}{key}"
            a[k] = rng.randn(t, 2048).astype(np.float32)
            b[k] = rng.randn(t, 2048).astype(np.float32)
            c[f"image_features/{k}"] = rng.randn(t, objects, 2048).astype(np.float32)
            c[f"spatial_features/{k}"] = rng.rand(t, objects, 6).astype(np.float32)
            e[k] = rng.randn(t, objects, 2048).astype(np.float32)
    return d


def write_glove(path, words, seed=3):
    rng = np.random.RandomState(seed)
    vecs = {w: rng.randn(300).round(4) for w in words}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(w + " " + " ".join(f"{x:.4f}" for x in v) + "\n" for w, v in vecs.items()))
    return vecs


def action_rows(n, start=0):
    return [{"gif_name": f"g{i}", "question": f"What does the man do {i} times ?", "a1": "jump", "a2": "wave hand",
             "a3": "spin", "a4": "clap (loudly)", "a5": "nod", "answer": i % 5, "vid_id": f"ACTION{i}",
             "key": 100 + i} for i in range(start, start + n)]


def count_rows(n, start=0):
    return [{"gif_name": f"g{i}", "question": "How many times does the man jump ?", "answer": i % 4,
             "vid_id": f"COUNT{i}", "key": 100 + i} for i in range(start, start + n)]


@pytest.fixture
def tgif_count(tmp_path):
    write_tgif(tmp_path / "q", "Count", count_rows(10), count_rows(4, 10))
    write_features(tmp_path / "f", {100 + i: 3 + i % 3 for i in range(14)})
    write_glove(tmp_path / "v" / "glove.42B.300d.txt", ["how", "many", "times", "jump"])
    return tmp_path


def test_count_answers_zero_to_one_and_val_split(tgif_count):
    data = load_tgif("Count", tgif_count / "q", tgif_count / "f", tgif_count / "v", log=quiet)
    assert len(data.vocab) == 2 + len(["how", "many", "times", "does", "the", "man", "jump", "\\?", "<EOS>"])
    # the original: torch.manual_seed(999) at import, then random_split(train, [N - int(.1N), int(.1N)])
    full = data.splits["train"].dataset
    torch.manual_seed(999)
    ref_train, ref_val = torch.utils.data.random_split(full, [9, 1])
    assert data.splits["train"].indices == list(ref_train.indices)
    assert data.splits["val"].indices == list(ref_val.indices)
    item = full[0]
    assert len(item) == 9 and item[8] == np.float32(1.0)  # answer 0 -> 1
    assert [full[i][8] for i in range(4)] == [1.0, 1.0, 2.0, 3.0]
    batch = torch.utils.data.default_collate([full[i] for i in range(3)])
    assert [tuple(x.shape) for x in batch] == [(3, 20, 2048), (3, 20, 2048), (3, 20, 10, 2048), (3, 20, 10, 6),
                                                (3, 20, 10, 2048), (3,), (3, 20), (3,), (3,)]
    assert [x.dtype for x in batch[5:]] == [torch.int64, torch.int64, torch.int64, torch.float32]
    # the original's random_split in main.py: Count 24,156 / 2,683
    assert random_val_split(26839, 0.1, 999)[1].__len__() == 2683


def test_action_candidates_encoding(tmp_path):
    write_tgif(tmp_path / "q", "Action", action_rows(6), action_rows(2, 6))
    write_features(tmp_path / "f", {100 + i: 2 for i in range(8)})
    write_glove(tmp_path / "v" / "glove.42B.300d.txt", ["jump"])
    data = load_tgif("Action", tgif.Path(tmp_path / "q"), tmp_path / "f", tmp_path / "v", q_max_length=9, log=quiet)
    item = data.splits["test"][1]
    cands, lens, answer, row_index = item[6:]
    v = data.vocab
    expect, n = v.encode("What does the man do 7 times ? clap (loudly)", 9)
    assert cands.shape == (5, 9) and (cands[3] == expect).all() and lens[3] == n == 9  # clipped to q_max
    assert lens.tolist()[:3] == [9, 9, 9] and answer == 7 % 5 and row_index == 2


def test_frameqa_answer_index_is_deterministic(tmp_path):
    rows = [{"gif_name": "g", "question": f"what is {a} ?", "answer": a, "type": t, "vid_id": f"FRAMEQA{i}",
             "key": i, "description": "a thing ."} for i, (a, t) in
            enumerate([("cat", 0), ("dog", 0), ("two", 1), ("dog", 0), ("red", 2), ("cat", 0), ("beach", 3)])]
    write_tgif(tmp_path / "q", "FrameQA", rows[:5], rows[5:])
    write_features(tmp_path / "f", {i: 2 for i in range(7)})
    write_glove(tmp_path / "v" / "glove.42B.300d.txt", ["what", "is"])
    data = load_tgif("FrameQA", tmp_path / "q", tmp_path / "f", tmp_path / "v", log=quiet)
    # most frequent first, ties by string; Total absent -> train + test answers
    assert data.answers == ["cat", "dog", "beach", "red", "two"]
    assert data.splits["test"][1][8] == 2 and data.splits["test"][1][9] == 3
    # a given order is used as is; answers outside it map to class 1 (the original's rule)
    data = load_tgif("FrameQA", tmp_path / "q", tmp_path / "f", tmp_path / "v", answers=["red", "cat"], log=quiet)
    assert [data.splits["test"][i][8] for i in range(2)] == [1, 1]



def test_check_data_reports_what_load_tgif_builds(tmp_path, capsys):
    """check_data runs masn/data/build.py's steps: the vocabulary and answer classes load_tgif builds, and
    load_tgif's refusal listed as a problem."""
    rows = [{"gif_name": "g", "question": f"what is {a} ?", "answer": a, "type": 0, "vid_id": f"FRAMEQA{i}",
             "key": i, "description": "a thing ."} for i, a in enumerate(["cat", "dog", "two", "dog", "red", "cat"])]
    write_tgif(tmp_path / "q", "FrameQA", rows[:5], rows[5:])
    write_features(tmp_path / "f", {i: 2 for i in range(6)})
    write_glove(tmp_path / "v" / "glove.42B.300d.txt", ["what", "is"])
    argv = ["tgif-qa", "--task", "FrameQA", "--csv-dir", str(tmp_path / "q"), "--json"]
    data = load_tgif("FrameQA", tmp_path / "q", tmp_path / "f", tmp_path / "v", log=quiet)
    assert check.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    # by hand: description, question and answer of each train row -> a thing <EOS> what is cat \? dog two red,
    # plus pad and UNK; answers cat dog two red (train) and cat (test)
    assert report["vocab_size"] == len(data.vocab) == 12
    assert report["answer_classes"] == len(data.answers) == 4
    rows[1]["question"] = "..."  # cleans to no tokens: load_tgif refuses the file
    write_tgif(tmp_path / "q", "FrameQA", rows[:5], rows[5:])
    with pytest.raises(tgif.DataError) as refused:
        load_tgif("FrameQA", tmp_path / "q", tmp_path / "f", tmp_path / "v", log=quiet)
    assert check.main(argv) == 1
    assert str(refused.value) in json.loads(capsys.readouterr().out)["problems"]

# --- GloVe ---------------------------------------------------------------------------------------------

def test_glove_matrix_matches_original_recipe_and_is_cached(tmp_path):
    glove = tmp_path / "glove.txt"
    vecs = write_glove(glove, ["cat", "dog"])
    vocab = Vocabulary(["dog", "zebra", "cat"])
    m = load_embedding(vocab, glove, "cache_x", log=quiet, cache_dir=tmp_path / "cache")
    rng = np.random.RandomState(999)  # the original: np.random.seed(999), normal((V, 300)), then per missing word
    ref = rng.normal(size=[5, 300])
    ref[2], ref[4] = vecs["dog"], vecs["cat"]
    ref[3] = rng.normal(size=300)
    np.testing.assert_allclose(m, ref, atol=1e-12)
    [meta] = (tmp_path / "cache").glob("cache_x-*.json")
    assert meta.with_suffix(".npz").is_file() and json.loads(meta.read_text())["words"] == vocab.words
    glove.unlink()  # the cache serves the same vocabulary without the big text file
    np.testing.assert_array_equal(load_embedding(vocab, glove, "cache_x", log=quiet, cache_dir=tmp_path / "cache"), m)
    with pytest.raises(GloveError, match="glove.txt"):
        load_embedding(Vocabulary(["other"]), glove, "cache_x", log=quiet, cache_dir=tmp_path / "cache")


def test_malformed_glove_is_named(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("cat 0.1 0.2\n")
    with pytest.raises(GloveError, match="bad.txt: line 1 has 2 values"):
        load_embedding(Vocabulary(["cat"]), bad, "c", log=quiet)


# --- features ------------------------------------------------------------------------------------------

def test_feature_reader_pads_truncates_and_accepts_layouts(tmp_path):
    d = write_features(tmp_path, {1: 7, 2: 3}, objects=4, subdir=False, readme_name=True)
    paths = resolve_feature_files(tmp_path, "tgif-qa")
    assert paths["i3d_roi"].name == "tgif_i3d_roialign_hw7_perclip_avgpool.hdf5" and paths["res_avg"].parent == d
    feats = VideoFeatures(paths, "", 5)
    res, i3d, obj, box, i3d_obj, n = feats.read(1)
    with h5py.File(d / "res152_avgpool.hdf5") as f:
        np.testing.assert_array_equal(res, f["1"][:5])  # first T_max frames
    assert n == 5 and obj.shape == (5, 10, 2048) and (obj[:, 4:] == 0).all()
    res, i3d, obj, box, i3d_obj, n = feats.read(2)
    assert n == 3 and (res[3:] == 0).all() and (res[:3] != 0).all() and box.shape == (5, 10, 6)


def test_missing_and_broken_features(tmp_path):
    write_features(tmp_path, {1: 2})
    feats = VideoFeatures(resolve_feature_files(tmp_path, "tgif-qa"), "", 4)
    with pytest.raises(FeatureError, match="'9' is missing"):
        feats.read(9)
    assert all(keys == ["9"] for keys in feats.missing([1, 9]).values()) and len(feats.missing([9])) == 5
    lenient = VideoFeatures(feats.paths, "", 4, allow_missing=True)
    res, *_, n = lenient.read(9)
    assert n == 1 and res.shape == (4, 2048) and not res.any()
    write_features(tmp_path / "t", {1: 2})
    paths = resolve_feature_files(tmp_path / "t", "tgif-qa")
    paths["i3d_avg"].write_bytes(paths["i3d_avg"].read_bytes()[:-100])  # truncated download
    with pytest.raises(FeatureError, match="tgif_i3d_hw7_perclip_avgpool.hdf5: cannot be read"):
        VideoFeatures(paths, "", 4).read(1)
    with pytest.raises(FeatureError, match="looked for"):
        resolve_feature_files(tmp_path / "nowhere", "tgif-qa")


def test_wrong_feature_shape_is_named(tmp_path):
    d = write_features(tmp_path, {1: 2})
    with h5py.File(d / "res152_avgpool.hdf5", "a") as f:
        del f["1"]
        f["1"] = np.zeros((2, 1024), np.float32)
    with pytest.raises(FeatureError, match="res152_avgpool.hdf5: video '1'.*last dimension 1024"):
        VideoFeatures(resolve_feature_files(tmp_path, "tgif-qa"), "", 4).read(1)


# --- bad annotation input ------------------------------------------------------------------------------

def test_bad_csvs_give_one_clear_error(tmp_path):
    rows = count_rows(3)
    for r in rows:
        del r["key"]
    write_tgif(tmp_path, "Count", rows, rows)
    with pytest.raises(tgif.DataError, match="Train_count_question.csv: missing column.*key"):
        tgif.read_csv(tgif.csv_path(tmp_path, "Count", "train"), "Count")
    rows = count_rows(3)
    rows[1]["question"] = ""
    write_tgif(tmp_path, "Count", rows, rows)
    with pytest.raises(tgif.DataError, match="1 empty question"):
        tgif.read_csv(tgif.csv_path(tmp_path, "Count", "train"), "Count")
    with pytest.raises(tgif.DataError, match="unknown TGIF-QA task 'Counting'"):
        load_tgif("Counting", tmp_path, tmp_path, tmp_path, log=quiet)
    rows = count_rows(2)
    rows[0]["question"] = "..."  # cleans to no tokens
    write_tgif(tmp_path / "q", "Count", rows, count_rows(1))
    write_features(tmp_path / "f", {100: 1, 101: 1})
    write_glove(tmp_path / "v" / "glove.42B.300d.txt", ["jump"])
    with pytest.raises(tgif.DataError, match="1 question\\(s\\) have no tokens.*COUNT0"):
        load_tgif("Count", tmp_path / "q", tmp_path / "f", tmp_path / "v", log=quiet)


def test_missing_videos_listed_unless_allowed(tgif_count):
    with h5py.File(tgif_count / "f" / "feat_r6_vsync2" / "res152_avgpool.hdf5", "a") as f:
        del f["103"], f["111"]
    with pytest.raises(FeatureError, match="2 of 14 videos have no features.*103, 111"):
        load_tgif("Count", tgif_count / "q", tgif_count / "f", tgif_count / "v", log=quiet)
    logged = []
    data = load_tgif("Count", tgif_count / "q", tgif_count / "f", tgif_count / "v", allow_missing=True,
                     log=logged.append)
    assert "2 videos have no features" in logged[-1] and data.missing_videos


# --- MSVD / MSRVTT -------------------------------------------------------------------------------------

def test_msvd_top_k_answers_and_oov(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("masn.data.msqa", fromlist=["TOP_K"]).TOP_K, "msvd-qa", 2)
    q = tmp_path / "q"
    q.mkdir()
    train = [{"question": "what is it ?", "answer": a, "video_id": i % 3, "id": i}
             for i, a in enumerate(["man", "dog", "dog", "man", "cat", "dog"])]
    for split, recs in (("train", train), ("val", train[:2]), ("test", [{"question": "who is it ?", "answer": "cat",
                                                                          "video_id": 1, "id": 9}])):
        (q / f"{split}_qa.json").write_text(json.dumps(recs))
    d = tmp_path / "f" / "vfeat"
    d.mkdir(parents=True)
    for name in ("msvd_res152_avgpool", "msvd_i3d_avgpool_perclip", "msvd_i3d_roialign_perclip_obj10"):
        with h5py.File(d / f"{name}.hdf5", "w") as f:
            for i in range(3):
                f[f"vid{i}"] = np.ones((2, 10, 2048) if "roi" in name else (2, 2048), np.float32)
    with h5py.File(d / "msvd_btup_f_obj10.hdf5", "w") as f:
        for i in range(3):
            f[f"image_features/vid{i}"] = np.ones((2, 10, 2048), np.float32)
            f[f"spatial_features/vid{i}"] = np.ones((2, 10, 6), np.float32)
    write_glove(tmp_path / "v" / "glove.42B.300d.txt", ["what"])
    data = load_msqa("msvd-qa", q, tmp_path / "f", tmp_path / "v", log=quiet)
    assert data.answers == ["dog", "man"]  # value_counts order, top 2
    assert data.vocab.words == ["what", "is", "it", "\\?", "<EOS>"]  # train questions only
    test_item = data.splits["test"][0]
    assert len(test_item) == 9 and test_item[5] == 2 and test_item[8] == 1  # OOV answer -> class 1
    assert test_item[6].tolist()[:4] == [1, 3, 4, 5]  # 'who' unknown -> UNK


# --- answer index --------------------------------------------------------------------------------------

def test_answer_index_json_and_pickle_converter(tmp_path, capsys):
    answer_index.save_answer_index(tmp_path / "a.json", ["b", "a"])
    assert answer_index.load_answer_index(tmp_path / "a.json") == ["b", "a"]
    (tmp_path / "bad.json").write_text('{"answers": ["x", "x"]}')
    with pytest.raises(answer_index.AnswerIndexError, match="duplicates"):
        answer_index.load_answer_index(tmp_path / "bad.json")
    with open(tmp_path / "ans_to_index_FrameQA.pkl", "wb") as f:
        pickle.dump({"cat": 1, "dog": 0, "red": 2}, f)
    out = tmp_path / "converted.json"
    assert answer_index.main([str(tmp_path / "ans_to_index_FrameQA.pkl"), str(out)]) == 0
    assert answer_index.load_answer_index(out) == ["dog", "cat", "red"]


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch ran",))


def test_answer_index_pickle_that_would_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"cat": _Payload()}))
    out = tmp_path / "converted.json"
    with pytest.raises(answer_index.AnswerIndexError, match="refusing to load"):
        answer_index.main([str(tmp_path / "evil.pkl"), str(out)])
    assert not (tmp_path / "ran").exists() and not out.exists()


# --- check_data ----------------------------------------------------------------------------------------

def test_check_data_report_and_exit_status(tgif_count, capsys):
    argv = ["tgif-qa", "--task", "Count", "--csv_dir", str(tgif_count / "q"), "--feat_dir", str(tgif_count / "f"),
            "--json"]
    assert check.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "Count" and report["vocab_size"] == 11
    assert report["splits"]["train"]["questions"] == 10 and report["splits"]["test"]["questions"] == 4
    with h5py.File(tgif_count / "f" / "feat_r6_vsync2" / "tgif_btup_f_obj10.hdf5", "a") as f:
        del f["spatial_features/105"]
    tgif.csv_path(tgif_count / "q", "Count", "test").unlink()
    assert check.main(argv) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["splits"]["test"]["absent"] is True
    label = next(k for k in report["features"]["files"] if k.endswith(":spatial_features"))
    assert report["features"]["files"][label]["missing_examples"] == ["105"]


def test_check_data_checks_a_packed_store_as_the_hdf5_files(tgif_count, capsys):
    """--packed: the store's videos against the questions, and every row scanned even in a store marked checked."""
    from masn.data.pack import convert

    store = tgif_count / "packed"
    convert(tgif_count / "f", "tgif-qa", store, "float32")
    argv = ["tgif-qa", "--task", "Count", "--csv_dir", str(tgif_count / "q"), "--packed", str(store), "--json"]
    assert check.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["features"]["videos"] == 14 and report["features"]["nonfinite"] == 0
    index = json.loads((store / "bbox.index.json").read_text())
    del index["videos"]["112"]  # a test-split video the store lacks
    (store / "bbox.index.json").write_text(json.dumps(index))
    rows = np.load(store / "res_roi.npy", mmap_mode="r+")
    rows[3 + 4 + 5 + 3 + 4, 9, 2047] = np.inf  # video 105's first frame, its last object and value
    rows.flush()
    assert check.main(argv) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["features"]["files"] == {str(store / "bbox.npy"): {"missing": 1, "missing_examples": ["112"]}}
    assert report["features"]["nonfinite_examples"] == [f"{store / 'res_roi.npy'}: video '105' (res_roi) holds "
                                                        "NaN or inf values"]
