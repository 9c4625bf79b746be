"""``--mode test`` on several generated test files (v2.0-style variants, unknown words), ablations and
priors checked against independent recomputation, and v2.0-style training with an answer-order file."""
from __future__ import annotations

import ast
import json
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from avst.data.annotations import load_records
from avst.data.synthetic import make_dataset
from avst.data.vocab import Vocab, VocabError
from avst.main_avst import main
from avst.model import AVST
from engine.checkpoint import save_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    make_dataset(root, seed=2, n_videos=3, n_frame_videos=0, rounds=1)
    raw = json.loads((root / "json/avqa-test.json").read_text())
    v2 = []
    for i, r in enumerate(raw):   # the same questions, written the v2.0 way
        r = dict(r, person=None, audio_instrument=None)
        if i % 2:
            del r["question_id"]
            del r["question_deleted"]
        r["templ_values"] = ast.literal_eval(r["templ_values"])
        v2.append(r)
    (root / "v2.json").write_text(json.dumps(v2))
    oov = [dict(r, question_content="Hey " + r["question_content"]) if i == 0 else r for i, r in enumerate(raw)]
    (root / "oov.json").write_text(json.dumps(oov))
    vocab = Vocab.build(root / "json/avqa-train.json")
    torch.manual_seed(3)
    model = AVST(vocab_size=len(vocab.words), num_answers=len(vocab.answers))
    save_checkpoint(root / "avst.pt", {"model": model.state_dict(),
                                       "meta": {"vocab": vocab.to_dict(), "vocab_sha256": vocab.sha256()}})
    return root


def args(root, *tests, run):
    return ["--mode", "test", "--audio_dir", str(root / "feats/vggish"), "--video_res14x14_dir",
            str(root / "feats/res18_14x14"), "--label_train", str(root / "json/avqa-train.json"),
            "--vocab_json", str(root / "json/avqa-train.json"), "--num_workers", "0", "--quiet",
            "--weights", str(root / "avst.pt"), "--run_dir", str(run), "--label_test", *map(str, tests)]


@torch.no_grad()
def direct_predictions(root, records, zero_audio: bool, zero_visual: bool) -> list[str]:
    """Answers of the checkpoint run by hand on the feature files (rows 0, 6, ..., 54)."""
    vocab = Vocab.build(root / "json/avqa-train.json")
    model = AVST(vocab_size=len(vocab.words), num_answers=len(vocab.answers))
    model.load_state_dict(torch.load(root / "avst.pt", weights_only=True)["model"])
    model.eval()
    out = []
    for r in records:
        a = torch.from_numpy(np.load(root / "feats/vggish" / f"{r.video_id}.npy")[0:60:6]).float()[None]
        v = torch.from_numpy(np.load(root / "feats/res18_14x14" / f"{r.video_id}.npy")[0:60:6]).float()[None]
        a, v = (a * 0 if zero_audio else a), (v * 0 if zero_visual else v)
        q = torch.tensor([vocab.encode_question(r)])
        out.append(vocab.answers[int(model(a, v, None, q)[0].argmax())])
    return out


def test_several_files_one_report_each_with_ablations_and_priors(demo, tmp_path):
    test_json = demo / "json/avqa-test.json"
    out = main([*args(demo, test_json, demo / "v2.json", demo / "oov.json", run=tmp_path),
                "--ablate", "audio", "both", "--unknown_words", "pad"])
    run = tmp_path / "test_multi"
    raw = json.loads(test_json.read_text())
    expected = Counter("/".join(ast.literal_eval(r["type"])) for r in raw)
    reports = {}
    for name in ("avqa-test", "v2", "oov"):
        report = json.loads((run / name / "test_report.json").read_text())
        reports[name] = report
        assert {k: v["count"] for k, v in report["types"].items() if v["count"]} == dict(expected)
        assert Image.open(run / name / "test_report.png").size == (1200, 480)
        assert len((run / name / "test_predictions.tsv").read_text().splitlines()) == len(raw) + 1
        assert "unknown words: policy `pad`" in (run / name / "test_report.md").read_text()
    assert [f["test_file"] for f in out["files"]] == [str(test_json), str(demo / "v2.json"), str(demo / "oov.json")]
    # the v2.0 spelling of the same questions gives the same predictions; ids absent -> -position
    assert reports["v2"]["types"] == reports["avqa-test"]["types"]
    assert reports["v2"]["derived_ids"] == len(raw) // 2
    ids = [line.split("\t")[0] for line in (run / "v2/test_predictions.tsv").read_text().splitlines()[1:]]
    assert ids[:2] == [str(raw[0]["question_id"]), "-2"]
    # the one question with an unknown word is counted under its type
    first = "/".join(ast.literal_eval(raw[0]["type"]))
    assert reports["oov"]["unknown_words"]["affected"] == {k: int(k == first) for k in reports["oov"]["types"]}
    # model and ablations against the checkpoint run by hand
    records = load_records(test_json)
    rows = [line.split("\t") for line in (run / "avqa-test/test_predictions.tsv").read_text().splitlines()]
    columns = {name: [row[i] for row in rows[1:]] for i, name in enumerate(rows[0])}
    assert columns["prediction"] == direct_predictions(demo, records, False, False)
    assert columns["prediction_no_both"] == direct_predictions(demo, records, True, True)
    assert columns["prediction_no_audio"] == direct_predictions(demo, records, True, False)
    hits = sum(p == r.answer for p, r in zip(columns["prediction_no_both"], records))
    assert reports["avqa-test"]["ablations"]["both"]["All"] == round(100 * hits / len(records), 2)
    # majority prior recomputed from the raw train JSON
    train = json.loads((demo / "json/avqa-train.json").read_text())
    by_type: dict[str, Counter] = {}
    for r in train:
        by_type.setdefault(r["type"], Counter())[r["anser"]] += 1
    hits = sum(r["anser"] == by_type[r["type"]].most_common(1)[0][0] for r in raw if r["type"] in by_type)
    assert reports["avqa-test"]["priors"]["majority"]["All"] == round(100 * hits / len(raw), 2)
    head, tail = reports["avqa-test"]["head_tail"]["head"], reports["avqa-test"]["head_tail"]["tail"]
    assert head["questions"] + tail["questions"] == len(raw)
    summary = (run / "summary.md").read_text().splitlines()
    assert len(summary) == 2 + 3 and "no both %" in summary[0]


def test_unknown_words_error_by_default(demo, tmp_path):
    with pytest.raises(VocabError, match="word 'Hey'"):
        main(args(demo, demo / "oov.json", run=tmp_path))


def test_v2_style_training_with_an_answer_order_file(demo, tmp_path):
    """Train JSON without question ids and with list fillers; 42-style answer file with 'ten' and answers
    absent from train: the model gets one output per file answer, in the file's order."""
    train = json.loads((demo / "json/avqa-train.json").read_text())
    for r in train[::2]:
        del r["question_id"]
    (tmp_path / "train.json").write_text(json.dumps(train))
    answers = ["ten", *sorted({r["anser"] for r in train}), "more than ten"]
    (tmp_path / "answer2idx.json").write_text(json.dumps({"ans2ix": {a: i for i, a in enumerate(answers)}}))
    common = ["--audio_dir", str(demo / "feats/vggish"), "--video_res14x14_dir", str(demo / "feats/res18_14x14"),
              "--vocab_json", str(tmp_path / "train.json"), "--answer_file", str(tmp_path / "answer2idx.json"),
              "--label_train", str(tmp_path / "train.json"), "--num_workers", "0", "--quiet"]
    main(["--mode", "train", *common, "--label_val", str(demo / "json/avqa-val.json"), "--epochs", "1",
          "--batch-size", "8", "--no_grounding_init", "--run_dir", str(tmp_path / "run")])
    payload = torch.load(tmp_path / "run/checkpoints/best.pt", weights_only=True)
    assert payload["meta"]["vocab"]["answers"] == answers
    assert payload["model"]["fc_ans.weight"].shape[0] == len(answers)
    report = main(["--mode", "test", *common, "--run_dir", str(tmp_path / "run"), "--label_test",
                   str(demo / "json/avqa-test.json")])
    assert report["questions"] == len(json.loads((demo / "json/avqa-test.json").read_text()))
