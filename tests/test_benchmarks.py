"""Benchmark parsing and diagnostics on generated files: MUSIC-AVQA v2.0/R record variants, unknown-word
policies, answer-order files, head/tail, answer priors and known-file recognition."""
from __future__ import annotations

import json
import subprocess

import pytest

from avst.benchmarks import known_files
from avst.benchmarks.head_tail import head_answers, is_head
from avst.benchmarks.priors import mean_count_answers, prior_baselines
from avst.data.annotations import AnnotationError, QARecord, load_annotations, load_records, make_record
from avst.data.vocab import Vocab, VocabError, load_answer_order

AVC = '["Audio-Visual", "Counting"]'


def rec(qid, video, content, values, answer, qtype='["Audio", "Counting"]', **extra):
    return {**make_record(video, qid, *json.loads(qtype), content, values, answer), **extra}


def write(path, records):
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def v2_records() -> list:
    """Every variation the real v2.0 files hold, plus three unusable records."""
    no_id = rec(None, "tOcOiTFQYp4", "How many sounding <Object> in the video？", ["erhu"], "two", AVC)
    del no_id["question_id"]
    no_deleted = rec(5, "9G7EAFgjQyQ_flip", "Are there <Object> and <Object> sound? ", ["flute", "cello"], "no")
    del no_deleted["question_deleted"]
    list_values = rec(None, "sa00006547", "Is this sound from the instrument in the video?", [], "no",
                      '["Audio-Visual", "Existential"]', unmatch_audio="00008531", audio_instrument="pipa",
                      video_instrument="trumpet")
    list_values["templ_values"] = []          # a list, not a string holding one
    del list_values["question_id"]
    float_id = rec(47859.0, "6cjIJVzP6eI_#05_flip", "Is the <Object> louder than the <Object>?", ["erhu", "drum"],
                   "yes", '["Audio", "Comparative"]', question_deleted=0.0, person=None)
    null_id = rec(None, "Baz-4i7soZ0", "How many instruments are sounding in the video?", [], "ten", AVC,
                  person="True")
    rephrased = rec(9, "00000093", "Does the cello in the video play all the time?", ["cello"], "yes",
                    '["Audio-Visual", "Existential"]')
    bad_type = rec(10, "v", "Is there a voiceover?", [], "no", '["Audio", "Smell"]')
    bad_fill = rec(None, "v", "Is the <Object> louder than the <Object>?", ["piano"], "yes")
    del bad_fill["question_id"]
    return [no_id, no_deleted, list_values, float_id, bad_type, null_id, "not a record", rephrased, bad_fill]


def test_v2_variants_parse_and_every_unusable_record_is_listed(tmp_path):
    path = write(tmp_path / "test_balance.json", v2_records())
    ann = load_annotations(path)
    # file order kept; missing/null ids become -(1-based position)
    assert [r.question_id for r in ann.records] == [-1, 5, -3, 47859, -6, 9]
    assert [r.video_id for r in ann.records][:2] == ["tOcOiTFQYp4", "9G7EAFgjQyQ_flip"]
    assert ann.records[0].tokens == ("How", "many", "sounding", "erhu", "in", "the", "video")
    assert ann.records[1].tokens[-2:] == ("cello", "sound")          # trailing space stripped first
    assert ann.records[4].answer == "ten"
    assert ann.records[5].tokens == ("Does", "the", "cello", "in", "the", "video", "play", "all", "the", "time")
    assert ann.derived_ids == 3
    assert ann.extra_keys == {"audio_instrument": 1, "person": 2, "unmatch_audio": 1, "video_instrument": 1}
    assert len(ann.skipped) == 3
    assert "question_id 10: unknown question type" in ann.skipped[0]
    assert "record 7: record is not an object" in ann.skipped[1]
    assert "record 9: 2 placeholder(s)" in ann.skipped[2]
    with pytest.raises(AnnotationError, match="question_id 10: unknown question type"):
        load_records(path)                    # the strict reader stops at the first unusable record


def _vocab(tmp_path) -> Vocab:
    train = write(tmp_path / "train.json", [rec(1, "v", "Is there a <Object> sound?", ["piano"], "yes"),
                                            rec(2, "v", "How many instruments are sounding in the video?", [],
                                                "two", AVC)])
    return Vocab.build(train)


def test_unknown_word_policies(tmp_path):
    vocab = _vocab(tmp_path)   # words: <pad> Is there a piano sound How many instruments are sounding in the video
    long_q = "How many many many instruments are sounding in the the the video video video video?"
    test = load_records(write(tmp_path / "t.json", [rec(3, "v", "Is there a <Object> sound?", ["tuba"], "no"),
                                                      rec(4, "v", long_q, [], "two", AVC)]))
    with pytest.raises(VocabError, match="question_id 3: word 'tuba'.*--unknown_words"):
        vocab.encode_question(test[0])
    with pytest.raises(VocabError, match="question_id 4: question has 15 tokens, more than 14"):
        vocab.encode_question(test[1])
    assert vocab.with_oov("pad").encode_question(test[0]) == [1, 2, 3, 0, 5] + [0] * 9
    assert vocab.with_oov("drop").encode_question(test[0]) == [1, 2, 3, 5] + [0] * 10
    assert vocab.with_oov("pad").encode_question(test[1]) == [6, 7, 7, 7, 8, 9, 10, 11, 12, 12, 12, 13, 13, 13]
    assert vocab.unknown_words(test[0]) == ["tuba"]
    with pytest.raises(VocabError, match="policy 'unk'"):
        vocab.with_oov("unk")


def test_answer_order_file_replaces_first_appearance(tmp_path):
    vocab_json = tmp_path / "train.json"
    _vocab(tmp_path)
    answers = ["three", "no", "two", "yes", "ten"]
    (tmp_path / "a.json").write_text(json.dumps({"ans2ix": {a: i for i, a in enumerate(answers)},
                                                 "max_que_len": 24}))
    vocab = Vocab.build(vocab_json, tmp_path / "a.json")
    assert vocab.answers == tuple(answers)
    assert load_answer_order(write(tmp_path / "l.json", answers)) == tuple(answers)
    (tmp_path / "bad.json").write_text(json.dumps({"ans2ix": {"yes": 0, "no": 2}}))
    with pytest.raises(VocabError, match=r"bad\.json: expected"):
        load_answer_order(tmp_path / "bad.json")


def _r(answer, qtype="Counting", modality="Audio"):
    return QARecord("v", 0, modality, qtype, ("x",), answer)


def test_head_tail_by_music_avqa_r_rule():
    # Audio/Counting: yes 5, no 3, two 1, one 1 -> mean 2.5, 1.2 x mean = 3: only "yes" (5 > 3) is head;
    # "no" (3, not more than 3) is tail. Visual/Location: a single answer is never above 1.2 x itself.
    recs = [_r("yes")] * 5 + [_r("no")] * 3 + [_r("two"), _r("one")] + [_r("left", "Location", "Visual")] * 4
    assert head_answers(recs) == {("Audio", "Counting"): {"yes"}, ("Visual", "Location"): set()}
    assert is_head([_r("yes"), _r("no"), _r("yes", "Location", "Visual")], recs) == [True, False, False]


def test_priors_majority_and_mean_count():
    train = [_r("two"), _r("two"), _r("three"), _r("zero"), _r("more than ten", modality="Visual"),
             _r("one", modality="Visual"), _r("yes", "Comparative"), _r("yes", "Comparative"), _r("no", "Comparative")]
    # Audio/Counting mean (2+2+3+0)/4 = 1.75 -> "two"; Visual/Counting (11+1)/2 = 6 -> "six"
    assert mean_count_answers(train) == {("Audio", "Counting"): "two", ("Visual", "Counting"): "six"}
    test = [_r("two"), _r("three"), _r("yes", "Comparative"), _r("six", modality="Visual"),
            _r("one", modality="Visual")]
    out = prior_baselines(train, test)
    assert out["majority"]["Audio/Counting"] == 50.0           # majority "two": 1 of 2
    assert out["majority"]["Audio/Comparative"] == 100.0
    assert out["majority"]["Visual/Counting"] == 0.0           # majority "more than ten" (seen first): 0 of 2
    assert out["majority"]["All"] == 40.0                      # 2 of 5
    assert out["mean_count"]["Visual/Counting"] == 50.0        # "six": 1 of 2
    assert out["mean_count"]["Audio/Comparative"] is None


def test_mean_count_takes_numeric_answers_of_counting_types_only():
    # a Counting "yes" is no count; a Comparative "ten" is a count of no Counting type
    train = [_r("two"), _r("four"), _r("yes"), _r("ten", "Comparative"), _r("ten", "Comparative")]
    assert mean_count_answers(train) == {("Audio", "Counting"): "three"}


def test_git_blob_id_matches_git_and_known_files_are_recognised(tmp_path, monkeypatch):
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    assert known_files.git_blob_id(empty) == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"  # git's empty blob
    data = write(tmp_path / "avqa-test.json", [rec(1, "v", "Is there a voiceover?", [], "no")])
    git = subprocess.run(["git", "hash-object", str(data)], capture_output=True, text=True, check=True)
    blob = known_files.git_blob_id(data)
    assert blob == git.stdout.strip()
    # an unknown file named like a known one: warned, not recognised
    what, warnings = known_files.describe(data)
    assert what == "not a known file" and "named like json_update test" in warnings[1]
    fake = known_files.KnownFile("music-avqa-update/test", "json_update test", blob, data.stat().st_size, 1,
                                 ("x:avqa-test.json",))
    monkeypatch.setattr(known_files, "_BY_BLOB", {blob: fake})
    assert known_files.describe(data) == ("json_update test, 1 questions", [])
    ckpt = next(k for k in known_files.KNOWN_FILES if k.key == "ckpt/avst")
    assert "published on the MUSIC-AVQA original test, 9,185 questions" in known_files.pairing_warning(ckpt, fake)
    update = next(k for k in known_files.KNOWN_FILES if k.key == "ckpt/avst_update")
    assert known_files.pairing_warning(update, fake) is None


def _tgif(root, task, train, test):
    import pandas as pd

    from masn.data import tgif
    for split, rows in (("train", train), ("test", test)):
        pd.DataFrame(rows).to_csv(tgif.csv_path(root, task, split), sep="\t", index=False)


def test_masn_count_prior_is_the_rounded_mean(tmp_path):
    from masn.priors import prior

    row = {"question": "how many times does the man jump", "vid_id": "v", "key": 1}
    # train answers 0 -> 1: (1 + 2 + 4 + 6) / 4 = 3.25 -> constant 3; test 0 -> 1, 5 -> MSE (4 + 4) / 2 = 4
    _tgif(tmp_path, "Count", [dict(row, answer=a) for a in (0, 2, 4, 6)], [dict(row, answer=a) for a in (0, 5)])
    out = prior("Count", tmp_path)
    assert out["guess"] == 3 and out["mse"] == 4.0
    assert out["mse_unrounded_mean"] == pytest.approx(((1 - 3.25) ** 2 + (5 - 3.25) ** 2) / 2)


def test_masn_candidates_only_scorer(tmp_path):
    from masn.priors import main, prior

    def row(cands, answer):
        return {"question": "what does the man do", **dict(zip(("a1", "a2", "a3", "a4", "a5"), cands)),
                "answer": answer, "vid_id": "v", "key": 1}
    # train: "jump" right 2 of 2 shown -> 3/7; "run" 0 of 2 -> 1/7; unseen words 1/5
    train = [row(["jump", "run", "sit", "eat", "nod"], 0), row(["run", "jump", "x", "y", "z"], 1)]
    test = [row(["run", "jump", "new", "sit", "eat"], 1),      # jump 3/7 wins: right
            row(["run", "sit", "new", "eat", "nod"], 0)]       # unseen "new" 1/5 beats run/sit/eat/nod: wrong
    _tgif(tmp_path, "Action", train, test)
    out = prior("Action", tmp_path)
    assert out["accuracy"] == 50.0 and out["chance"] == 20.0
    assert main(["--task", "Action", "--df_dir", str(tmp_path)]) == 0


def test_published_table_matches_the_papers_correct_counts_and_the_docs():
    from pathlib import Path

    from avst.benchmarks.published import PUBLISHED, published_for

    # correct / count per type behind the exp1 and exp3 tables (6,569/9,185 and 6,535/9,129 in all)
    counts = {"music-avqa/test": ((799, 1022), (403, 601), (858, 1199), (938, 1228), (814, 995), (598, 927),
                                  (902, 1274), (736, 1115), (521, 824)),
              "music-avqa-update/test": ((791, 1017), (399, 594), (880, 1197), (922, 1225), (815, 988),
                                         (591, 920), (884, 1265), (712, 1101), (541, 822))}
    keys = ["Audio/Counting", "Audio/Comparative", "Visual/Counting", "Visual/Location", "Audio-Visual/Existential",
            "Audio-Visual/Location", "Audio-Visual/Counting", "Audio-Visual/Comparative", "Audio-Visual/Temporal"]
    for test, cells in counts.items():
        (paper,) = published_for(test)
        for key, (c, n) in zip(keys, cells):
            assert paper.types[key] == round(100 * c / n, 2), (test, key)
        assert paper.overall == round(100 * sum(c for c, _ in cells) / sum(n for _, n in cells), 2)
    page = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
    heading = "## The test sets and their published numbers"
    section = page.read_text(encoding="utf-8").split(heading, 1)[1].split("\n## ", 1)[0]
    for p in PUBLISHED:
        assert str(p.overall) in section, p


def test_check_data_reports_variants_skips_and_unknown_words(tmp_path, capsys):
    from avst.data.check import main as check_main

    path = write(tmp_path / "test_balance.json", v2_records())
    vocab_json = write(tmp_path / "train.json", [rec(1, "v", "How many sounding <Object> in the video？", ["erhu"],
                                                     "two", AVC)])
    assert check_main(["music-avqa", "--json_file", str(path), "--vocab_json", str(vocab_json), "--json",
                       "--unknown_words", "pad"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["questions"] == 6 and len(out["skipped"]) == 3 and out["derived_question_ids"] == 3
    assert out["known"] == "not a known file"
    assert "named like MUSIC-AVQA v2.0 balance test" in out["warnings"][0]
    # 5 of the 6 usable questions hold a word the one-question train file lacks; pad accepts them
    assert sum(out["unknown_word_questions"]["affected"].values()) == 5
    assert out["unknown_words"] == [] and len(out["problems"]) == 3 + len(out["unknown_answers"])
