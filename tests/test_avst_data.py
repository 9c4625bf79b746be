"""MUSIC-AVQA data layer: tokenisation, vocabularies, feature readers, negatives, checks, report."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from avst.data.annotations import AnnotationError, load_records, make_record, question_tokens
from avst.data.check import main as check_main
from avst.data.dataset import AVQADataset
from avst.data.features import FeatureError, NpyFeatures, PackedFeatures
from avst.data.packing import pack
from avst.data.vocab import Vocab, VocabError
from avst.report import per_type_report, to_markdown


def rec(qid, video, content, values, answer, typ=("Audio", "Counting")):
    return make_record(video, qid, *typ, content, values, answer)


def write_json(path: Path, records: list[dict]) -> Path:
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def test_tokens_follow_the_original_rules():
    # last character of the last token goes, whichever question mark it is; trailing spaces first
    assert question_tokens("How many sounding <Object> in the video？", ["flute"], "x") == \
        ["How", "many", "sounding", "flute", "in", "the", "video"]
    assert question_tokens("What kind of instrument is the <LRer> instrument? ", ["leftest"], "x")[-2:] == \
        ["leftest", "instrument"]
    # a placeholder glued to the '?' is still a placeholder
    assert question_tokens("Is there a <Object>?", ["cello"], "x") == ["Is", "there", "a", "cello"]


def test_record_errors_name_the_file_and_question(tmp_path):
    content = "Is the <Object> louder than the <Object>?"
    bad = write_json(tmp_path / "a.json", [rec(7, "v", content, ["piano"], "yes")])
    with pytest.raises(AnnotationError, match=r"a\.json: question_id 7: 2 placeholder"):
        load_records(bad)
    raw = rec(8, "v", "Is there a voiceover?", [], "no")
    del raw["anser"]
    with pytest.raises(AnnotationError, match=r"question_id 8: record lacks key\(s\) \['anser'\]"):
        load_records(write_json(tmp_path / "b.json", [raw]))


def test_vocab_first_appearance_and_padding(tmp_path):
    train = write_json(tmp_path / "train.json", [
        rec(1, "v1", "Is there a <Object> sound?", ["piano"], "yes"),
        rec(2, "v2", "How many instruments are sounding in the video?", [], "two"),
        rec(3, "v1", "Is there a <Object> sound?", ["flute"], "no"),
    ])
    vocab = Vocab.build(train)
    assert vocab.words == ("<pad>", "Is", "there", "a", "piano", "sound", "How", "many", "instruments", "are",
                           "sounding", "in", "the", "video", "flute")
    assert vocab.answers == ("yes", "two", "no")
    records = load_records(train)
    assert vocab.encode_question(records[2]) == [1, 2, 3, 14, 5] + [0] * 9
    assert Vocab.from_dict(json.loads(json.dumps(vocab.to_dict()))).sha256() == vocab.sha256()
    content = "Is there a <Object> sound?"
    other = load_records(write_json(tmp_path / "t.json", [rec(42, "v", content, ["tuba"], "yes"),
                                                          rec(43, "v", content, ["piano"], "ten")]))
    with pytest.raises(VocabError, match="question_id 42: word 'tuba'"):
        vocab.encode_question(other[0])
    with pytest.raises(VocabError, match="question_id 43: answer 'ten'"):
        vocab.answer_index(other[1])
    with pytest.raises(VocabError, match="93 word rows and 42 answers"):
        vocab.check_sizes(93, 42, "ckpt.pt")


@pytest.fixture
def features(tmp_path):
    """Three videos whose every value encodes (video, row): row r of video k is k*100 + r."""
    audio, visual = tmp_path / "audio", tmp_path / "visual"
    audio.mkdir()
    visual.mkdir()
    for k, rows in ((1, 60), (2, 60), (3, 45)):
        vals = (k * 100 + np.arange(rows, dtype=np.float32))
        np.save(audio / f"v{k}.npy", np.broadcast_to(vals[:, None], (rows, 128)).copy())
        np.save(visual / f"v{k}.npy", np.broadcast_to(vals[:, None, None, None], (rows, 512, 14, 14)).copy())
    train = write_json(tmp_path / "train.json", [rec(i, f"v{1 + i % 3}", "Is there a <Object> sound?",
                                                     ["piano"], "yes") for i in range(6)])
    return tmp_path, train


def test_npy_reader_reads_rows_and_pads_short_videos(features):
    root, _ = features
    src = NpyFeatures(root / "visual", "visual")
    out = src.read("v3", np.array([0, 6, 44, 54]))
    assert out.shape == (4, 512, 14, 14)
    assert out[:, 0, 0, 0].tolist() == [300, 306, 344, 344]  # 45 rows: past the end repeats row 44
    assert src.bytes_read == 4 * 512 * 14 * 14 * 4
    assert src.num_rows("v3") == 45


def test_bad_feature_files_are_named(features):
    root, _ = features
    np.save(root / "audio" / "wrong.npy", np.zeros((60, 64), np.float32))
    with pytest.raises(FeatureError, match=r"wrong\.npy: shape \[60, 64\]"):
        NpyFeatures(root / "audio", "audio").read("wrong", np.array([0]))
    data = (root / "audio" / "v1.npy").read_bytes()
    (root / "audio" / "cut.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(FeatureError, match=r"cut\.npy"):
        NpyFeatures(root / "audio", "audio").read("cut", np.array([0]))
    with pytest.raises(FeatureError, match=r"feature file not found: .*nothere\.npy"):
        NpyFeatures(root / "audio", "audio").read("nothere", np.array([0]))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_packed_store_matches_per_video_files(features, dtype):
    root, _ = features
    sources = {k: NpyFeatures(root / k, k) for k in ("audio", "visual")}
    short = pack(["v1", "v2", "v3"], sources, root / "packed", dtype)
    assert short == {"v3": 45}
    for kind in ("audio", "visual"):
        packed = PackedFeatures(root / "packed", kind)
        pairs = [("v3", 50), ("v1", 7), ("v2", 59)]
        got = packed.read_pairs(pairs)
        assert got.dtype == dtype
        np.testing.assert_array_equal(got.astype(np.float32), sources[kind].read_pairs(pairs))
    assert PackedFeatures(root / "packed", "visual").num_rows("v3") == 45


def test_dataset_items_and_seeded_negatives(features):
    root, train = features
    records = load_records(train)
    ds = AVQADataset(records, Vocab.build(train), NpyFeatures(root / "audio", "audio"),
                     NpyFeatures(root / "visual", "visual"), seed=3)
    item = ds[4]  # video v2
    assert item["audio"][:, 0].tolist() == [200 + r for r in range(0, 60, 6)]
    assert item["visual_posi"][:, 0, 0, 0].tolist() == [200 + r for r in range(0, 60, 6)]
    nega = item["visual_nega"][:, 5, 3, 3]
    assert all(v // 100 in (1, 3) for v in nega.tolist())  # never its own video
    draws = set()
    for epoch in range(5):
        ds.set_epoch(epoch)
        draws |= {f for i in range(len(ds)) for _, f in ds.negative_frames(i)}
    assert draws <= set(range(60)) and len(draws) > 40  # any of the 60 frames, not only the sampled ten
    ds.set_epoch(0)
    first = ds[4]["visual_nega"]
    assert np.array_equal(first, ds[4]["visual_nega"])
    ds.set_epoch(1)
    assert not np.array_equal(first, ds[4]["visual_nega"])
    assert ds.short_videos() == {"audio": {"v3": 45}, "visual": {"v3": 45}}


def test_check_data_json_and_exit_status(features, capsys):
    root, train = features
    args = ["music-avqa", "--json_file", str(train), "--vocab_json", str(train),
            "--audio_dir", str(root / "audio"), "--video_res14x14_dir", str(root / "visual"), "--json"]
    assert check_main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["questions"] == 6 and out["types"]["Audio"]["Counting"] == 6 and out["vocab_size"] == 6
    assert out["answers"] == 1 and out["short_videos"] == {"audio": 1, "visual": 1}
    (root / "visual" / "v2.npy").unlink()
    assert check_main(args) == 1
    assert "v2.npy" in json.loads(capsys.readouterr().out)["missing_files"][0]


def test_report_reproduces_the_papers_exp1_table():
    """The original's figs/exp1.png correct counts (AVST, 9,185 questions) must give the paper's figures."""
    cells = {("Audio", "Counting"): (799, 1022), ("Audio", "Comparative"): (403, 601),
             ("Visual", "Counting"): (858, 1199), ("Visual", "Location"): (938, 1228),
             ("Audio-Visual", "Existential"): (814, 995), ("Audio-Visual", "Location"): (598, 927),
             ("Audio-Visual", "Counting"): (902, 1274), ("Audio-Visual", "Comparative"): (736, 1115),
             ("Audio-Visual", "Temporal"): (521, 824)}
    from avst.data.annotations import QARecord

    records, preds = [], []
    for (m, t), (c, n) in cells.items():
        records += [QARecord("v", len(records) + i, m, t, ("a",), "yes") for i in range(n)]
        preds += [0] * c + [1] * (n - c)
    report = per_type_report(records, preds, [0] * len(preds), "avqa-test.json")
    assert report["overall"] == {"correct": 6569, "count": 9185, "accuracy": 71.52}
    groups = [report["groups"][m]["accuracy"] for m in ("Audio", "Visual", "Audio-Visual")]
    assert groups == [74.06, 74.0, 69.54]
    assert report["types"]["Audio/Counting"]["accuracy"] == 78.18
    assert report["types"]["Audio-Visual/Location"]["accuracy"] == 64.51
    assert "| All | 6569 | 9185 | 71.52 |" in to_markdown(report)
