"""Ask a generated video a question, end to end with random weights: ffmpeg video -> features -> model.

Checkpoints are written in the format of avst/main_avst.py and masn/main.py (weights + vocabulary /
answer index in ``meta``); extractors run with ``--random-init`` and small MASN sampling settings.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from answering import AnswerError, StageTimer, unknown_words
from avst.data.annotations import make_record
from avst.data.vocab import Vocab
from avst.model.checkpoint import AvstMeta
from engine.checkpoint import save_checkpoint
from feat_script.synthetic_video import Shape, make_video
from masn.data.text import vocab_sha256

ROOT = Path(__file__).resolve().parents[1]
SHAPES = [Shape("red", 440, 20, 40), Shape("blue", 660, 70, 25)]
AVST_WORDS = ("<pad>", "Is", "the", "violin", "in", "video", "always", "playing", "How", "many", "instruments",
              "are", "sounding")
AVST_ANSWERS = ("yes", "no", "one", "two", "three", "six")
MASN_WORDS = ["what", "colour", "is", "the", "car", "\\?", "<EOS>", "does", "man", "do", "nod", "wave", "jump",
              "clap", "spin", "red", "blue"]
MASN_ANSWERS = ["red", "blue", "car", "man"]
SMALL = {"num_clips": 3, "clip_len": 8, "clip_stride": 1, "det_min_size": 96, "det_max_size": 128}


def write_checkpoints(d: Path) -> dict[str, Path]:
    """Tiny random AVST and MASN FrameQA checkpoints (AVST_WORDS, MASN_WORDS) in ``d``."""
    torch.manual_seed(0)
    from avst.model import AVST
    from masn.model import MASN

    vocab = Vocab(AVST_WORDS, AVST_ANSWERS, "test")
    avst = AVST(vocab_size=len(vocab.words), num_answers=len(vocab.answers))
    save_checkpoint(d / "avst.pt", {"model": avst.state_dict(), "meta": AvstMeta(vocab).to_dict()})
    n = len(MASN_WORDS) + 2
    masn = MASN(n, 1, np.random.RandomState(0).randn(n, 300).astype(np.float32), 2048, 2048, 512,
                dropout_p=0.3, gcn_layers=2, answer_vocab_size=len(MASN_ANSWERS), q_max_len=20, v_max_len=4)
    meta = {"model": "masn", "dataset": "tgif-qa", "task": "FrameQA", "vocab_words": MASN_WORDS,
            "vocab_sha256": vocab_sha256(MASN_WORDS), "q_max_length": 20, "v_max_length": 4,
            "answers": MASN_ANSWERS}
    save_checkpoint(d / "masn.pt", {"model": masn.state_dict(), "meta": meta})
    return {"avst": d / "avst.pt", "masn": d / "masn.pt"}


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("answer")
    return {"dir": d, **write_checkpoints(d),
            "mp4": make_video(d / "v.mp4", SHAPES, seconds=3),
            "silent": make_video(d / "silent.mp4", SHAPES, seconds=3, audio=False),
            "gif": make_video(d / "v.gif", SHAPES, seconds=2)}


def test_avst_cli_end_to_end_with_heatmaps(media):
    out_dir = media["dir"] / "heat"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts/answer.py"), "--model", "avst", "--checkpoint", str(media["avst"]),
         "--video", str(media["mp4"]), "--question", "Is the <Object> in the video always playing?",
         "--values", "violin", "--random-init", "--device", "cpu", "--json", "--verbose",
         "--heatmaps", str(out_dir)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "RANDOM weights" in proc.stderr
    lines = proc.stdout.strip().splitlines()
    for stage in ("VGGish", "ResNet-18 14x14", "AVST"):  # --verbose times each stage
        assert any(line.endswith(stage) and line.startswith("[") for line in lines)
    out = json.loads(lines[-1])
    assert out["random_init_extractors"] is True
    assert out["question_tokens"] == ["Is", "the", "violin", "in", "the", "video", "always", "playing"]
    probs = [row["prob"] for row in out["top5"]]
    assert len(probs) == 5 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
    assert out["answer"] == out["top5"][0]["answer"] and out["answer"] in AVST_ANSWERS
    assert out["seconds"] == list(range(0, 60, 6))
    for key in ("temporal_visual", "temporal_audio"):  # softmax over the 10 seconds, head-averaged
        assert len(out[key]) == 10 and abs(sum(out[key]) - 1) < 1e-4
    assert len(out["heatmaps"]) == 11
    for sec in range(0, 60, 6):
        assert Image.open(out_dir / f"t{sec:02d}.png").size == (224, 224)
    assert Image.open(out_dir / "temporal.png").size == (10 * 48, 2 * 48)


def test_avst_needs_audio_and_known_words(media):
    from avst.answer import ask

    q = "Is the <Object> in the video always playing?"
    with pytest.raises(AnswerError, match="no audio track.*AVST needs one"):
        ask(media["silent"], q, ["violin"], media["avst"], random_init=True)
    with pytest.raises(AnswerError, match=r"'violn' \(closest known: violin[,)]"):
        ask(media["mp4"], q, ["violn"], media["avst"], random_init=True)
    with pytest.raises(AnswerError, match="placeholder"):
        ask(media["mp4"], q, [], media["avst"], random_init=True)


def test_avst_authors_weights_only_checkpoint_with_vocab_json(media):
    """The authors' avst.pt: a bare DataParallel state_dict; the vocabulary comes from the train JSON."""
    from avst.answer import ask

    d = media["dir"]
    theirs = torch.load(media["avst"], weights_only=True)["model"]
    torch.save({f"module.{k}": v for k, v in theirs.items()}, d / "authors_avst.pt")
    records = [make_record("v", 1, "Audio-Visual", "Existential", "Is the <Object> in the video always playing?",
                           ["violin"], a) for a in ("yes", "no")]
    records += [make_record("v", 2 + i, "Audio-Visual", "Counting", "How many instruments are sounding in the video?",
                            [], a) for i, a in enumerate(("one", "two", "three", "six"))]
    (d / "train.json").write_text(json.dumps(records))
    assert Vocab.build(d / "train.json").words == AVST_WORDS, "the original rule rebuilds the same vocabulary"
    q = "Is the <Object> in the video always playing?"
    torch.manual_seed(3)  # the random-init extractors draw their weights from torch's RNG
    ours = ask(media["mp4"], q, ["violin"], media["avst"], random_init=True)
    with pytest.raises(AnswerError, match="--vocab_json"):
        ask(media["mp4"], q, ["violin"], d / "authors_avst.pt", random_init=True)
    torch.manual_seed(3)
    got = ask(media["mp4"], q, ["violin"], d / "authors_avst.pt", random_init=True, vocab_json=d / "train.json")
    assert got.top5 == ours.top5


def test_masn_end_to_end_on_silent_mp4_and_gif(media):
    from masn.answer import ExtractorWeights, FeatureSettings, MasnExtractors, ask

    settings = FeatureSettings(**SMALL)
    extractors = MasnExtractors(settings, ExtractorWeights(random_init=True), torch.device("cpu"))
    for video in (media["silent"], media["gif"]):
        result = ask(video, "what colour is the car?", media["masn"], settings=settings, extractors=extractors)
        probs = [row["prob"] for row in result.top5]
        assert len(probs) == 4 and probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-5
        assert result.answer == result.top5[0]["answer"] and result.answer in MASN_ANSWERS
        assert result.tokens == ["what", "colour", "is", "the", "car", "\\?"]
        assert result.boxes.shape == (3, 10, 6)
        assert {"ResNet-152 global", "Faster R-CNN boxes + ResNet-152 C5 RoIAlign", "I3D global", "I3D RoIAlign",
                "MASN"} <= set(result.timings)
    features = extractors(media["gif"], StageTimer())
    shapes = [f.shape for f in features]
    assert shapes == [(3, 2048), (3, 2048), (3, 10, 2048), (3, 10, 6), (3, 10, 2048)]
    boxes = features[3]
    assert (boxes[..., :4] >= 0).all() and (boxes[..., :4] <= 1).all()


def test_masn_question_errors(media):
    from masn.answer import LoadedMasn, Vocabulary, encode, load_masn

    loaded = load_masn(media["masn"], None, torch.device("cpu"))
    assert loaded.task == "FrameQA" and loaded.answers == MASN_ANSWERS
    with pytest.raises(AnswerError, match=r"'colur' \(closest known: colour[,)]"):
        encode(loaded, "what colur is the car?", None, "masn.pt")
    with pytest.raises(AnswerError, match="trained for task FrameQA"):
        load_masn(media["masn"], "Count", torch.device("cpu"))
    action = LoadedMasn(None, "Action", Vocabulary(MASN_WORDS), None, 20, 4)
    with pytest.raises(AnswerError, match="exactly 5"):
        encode(action, "what does the man do", ["nod", "wave"], "x")
    tokens, (ids, lengths, _, _) = encode(action, "what does the man do", ["nod", "wave", "jump", "clap", "spin"],
                                          "x")
    assert ids.shape == (1, 5, 20) and lengths.tolist() == [[6] * 5]
    index = {w: i for i, w in enumerate(MASN_WORDS, start=2)}  # 0 = pad, 1 = UNK (masn.data.text)
    assert ids[0, 2, :6].tolist() == [index[w] for w in ("what", "does", "the", "man", "do", "jump")]


def test_unknown_words_lists_every_word_once():
    with pytest.raises(AnswerError) as err:
        unknown_words(["a", "violn", "violn", "zzz"], ["a", "violin", "viola"], "ckpt")
    assert str(err.value).count("violn") == 1 and "'zzz' (closest known: none)" in str(err.value)

