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

from avst.data.annotations import make_record
from avst.data.vocab import Vocab
from avst.model.checkpoint import AvstMeta
from benchkit.tiny_checkpoints import (
    AVST_ANSWERS,
    AVST_WORDS,
    MASN_ANSWERS,
    MASN_WORDS,
    SHAPES,
    SMALL,
    write_checkpoints,
)
from engine.checkpoint import save_checkpoint
from engine.errors import UserError
from feat_script.answerer import AnswerError, unknown_words
from feat_script.synthetic_video import make_video

ROOT = Path(__file__).resolve().parents[1]


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
    from masn.answer import ExtractorWeights, FeatureSettings, MasnAnswerer

    answerer = MasnAnswerer(media["masn"], settings=FeatureSettings(**SMALL),
                            weights=ExtractorWeights(random_init=True))
    for video in (media["silent"], media["gif"]):
        result = answerer.ask(video, "what colour is the car?")
        probs = [row["prob"] for row in result.top5]
        assert len(probs) == 4 and probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-5
        assert result.answer == result.top5[0]["answer"] and result.answer in MASN_ANSWERS
        assert result.tokens == ["what", "colour", "is", "the", "car", "\\?"]
        assert result.boxes.shape == (3, 10, 6)
        assert {"decode", "ResNet-152 global", "Faster R-CNN boxes + ResNet-152 C5 RoIAlign", "I3D global + RoIAlign",
                "MASN"} <= set(result.timings)
    features = answerer.features(media["gif"])
    assert features.source == "cached"
    shapes = {k: a.shape for k, a in features.arrays.items()}
    assert shapes == {"res_avg": (3, 2048), "i3d_avg": (3, 2048), "res_roi": (3, 10, 2048), "boxes": (3, 10, 6),
                      "i3d_roi": (3, 10, 2048)}
    boxes = features.arrays["boxes"]
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



@pytest.fixture(scope="module")
def masn_answerer(media):
    from masn.answer import ExtractorWeights, FeatureSettings, MasnAnswerer

    return MasnAnswerer(media["masn"], settings=FeatureSettings(**SMALL), weights=ExtractorWeights(random_init=True))


def fresh_copy(src: Path, dst: Path) -> Path:
    """A new file with ``src``'s bytes: nothing about it is known yet (the probe memory is per file)."""
    dst.write_bytes(src.read_bytes())
    return dst


def test_masn_answerer_decodes_once_builds_once_and_answers_from_the_cache(media, masn_answerer, tmp_path):
    from benchkit.processes import Builds, Launches

    video = fresh_copy(media["mp4"], tmp_path / "copy.mp4")
    with Launches() as launches, Builds() as builds:
        first = masn_answerer.ask(video, "what colour is the car?")
    assert launches.ffmpeg == 2, launches.commands  # frame count (with the probe's facts), one decode
    assert first.features == "computed" and builds.count <= 3  # ResNet-152, Faster R-CNN + C5, I3D once
    networks = [ex.ready()[0] for ex in (masn_answerer.networks.resnet, masn_answerer.networks.i3d)]
    with Launches() as launches, Builds() as builds:
        again = masn_answerer.ask_many(video, [{"question": "what is the car?"},
                                               {"question": "what colour is the car?"}])
    assert launches.ffmpeg == 0 and builds.count == 0
    assert [a.features for a in again] == ["cached", "cached"] and again[1].top5 == first.top5
    assert "decode" not in again[0].timings and "MASN" in again[0].timings
    assert [ex.ready()[0] for ex in (masn_answerer.networks.resnet, masn_answerer.networks.i3d)] == networks
    with pytest.raises(AnswerError, match="colur"):  # a bad question is refused before any decoding
        masn_answerer.ask_many(fresh_copy(media["mp4"], tmp_path / "other.mp4"), [{"question": "what colur?"}])


def test_one_shot_frees_each_network_after_its_use(media, tmp_path):
    from avst.answer import AvstAnswerer
    from feat_script.answerer import FeatureCache

    kept = AvstAnswerer(media["avst"], random_init=True, cache=FeatureCache(0))
    freed = AvstAnswerer(media["avst"], random_init=True, cache=FeatureCache(0), one_shot=True)
    networks = {}
    for answerer in (kept, freed):
        networks[answerer] = answerer.networks.visual.ready()[0]
        answerer.features(media["mp4"])
    assert kept.networks.visual.ready()[0] is networks[kept]
    assert freed.networks.visual.ready()[0] is not networks[freed]  # released after use, built again
    assert kept.ask(media["mp4"], "How many instruments are sounding in the video?").top5 == \
        freed.ask(media["mp4"], "How many instruments are sounding in the video?").top5


def test_feature_cache_lru_and_disk(media, tmp_path):
    from avst.answer import AvstAnswerer
    from benchkit.processes import Launches
    from feat_script.answerer import FeatureCache, VideoFile

    with pytest.raises(ValueError):
        FeatureCache(-1)
    cache = FeatureCache(2)
    keys = [(f"sha{i}", "avst:recipe") for i in range(3)]
    for key in keys:
        cache.put(key, {"a": np.zeros(1)})
    assert cache.get(keys[0]) == (None, "") and cache.get(keys[1])[1] == "cached"  # size 2: the oldest left
    cache.put(keys[0], {"a": np.ones(1)})  # keys[1] was used last: keys[2] goes
    assert cache.get(keys[2]) == (None, "") and cache.get(keys[1])[1] == "cached"
    assert FeatureCache(0).get(keys[0]) == (None, "")

    folder = tmp_path / "features"
    video = VideoFile.of(fresh_copy(media["mp4"], tmp_path / "copy.mp4"))
    first = AvstAnswerer(media["avst"], random_init=True, cache=FeatureCache(folder=folder)).features(video)
    assert first.source == "computed" and len(list(folder.glob("avst-*.npz"))) == 1
    with Launches() as launches:
        second = AvstAnswerer(media["avst"], random_init=True, cache=FeatureCache(folder=folder)).features(video)
    assert second.source == "disk" and launches.ffmpeg == 0
    for name, array in first.arrays.items():
        np.testing.assert_array_equal(second.arrays[name], array)
    other = AvstAnswerer(media["avst"], random_init=True, amp="bf16", cache=FeatureCache(folder=folder))
    assert other.recipe_key() != AvstAnswerer(media["avst"], random_init=True).recipe_key()


def test_web_service_six_questions_four_ffmpeg_processes(media, tmp_path):
    """Three AVST and three MASN questions about one upload: the upload's probe, MASN's one decode and
    AVST's two (audio, frames); the second and third question of each model answer from the cache."""
    import time

    from benchkit.processes import Launches
    from masn.answer import ExtractorWeights, FeatureSettings
    from webdemo.service import Limits, Recipe, Service, load_models

    recipe = Recipe(masn_weights=ExtractorWeights(random_init=True), settings=FeatureSettings(**SMALL),
                    random_init=True)
    models = load_models(media["avst"], [media["masn"]], recipe, None, torch.device("cpu"))
    service = Service(models, recipe, Limits(1 << 30, 60), torch.device("cpu"))
    try:
        with Launches() as launches:
            upload = fresh_copy(media["mp4"], tmp_path / "v.mp4")
            with open(upload, "rb") as f:
                video = service.add_upload("v.mp4", f, upload.stat().st_size)
            asked = [("avst", "Is the <Object> in the video always playing?", ["violin"]),
                     ("masn0", "what colour is the car?", [])] * 3
            jobs = [service.submit({"video": video.id, "model": m, "question": q, "values": v}) for m, q, v in asked]
            deadline = time.monotonic() + 300
            while any(j.state in ("queued", "running") for j in jobs) and time.monotonic() < deadline:
                time.sleep(0.2)
        assert [j.state for j in jobs] == ["done"] * 6, [j.error for j in jobs]
        assert launches.ffmpeg <= 4, launches.commands
        assert [j.features for j in jobs] == ["computed"] * 2 + ["cached"] * 4
        assert {s for s, _ in jobs[2].stages} == {"AVST"} and {s for s, _ in jobs[3].stages} == {"MASN"}
    finally:
        service.close()


def test_answer_cli_several_questions_and_question_files(media, tmp_path):
    questions = tmp_path / "q.json"
    questions.write_text(json.dumps([{"question": "How many instruments are sounding in the video?"}]))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts/answer.py"), "--model", "avst", "--checkpoint", str(media["avst"]),
         "--video", str(media["mp4"]), "--question", "Is the <Object> in the video always playing?",
         "--values", "violin", "--questions", str(questions), "--random-init", "--device", "cpu", "--json"],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["features"] for r in rows] == ["computed", "cached"]
    assert [r["question"] for r in rows] == ["Is the <Object> in the video always playing?",
                                            "How many instruments are sounding in the video?"]
    bad = tmp_path / "bad.csv"
    bad.write_text("question,values\n,violin\n")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts/answer.py"), "--model", "avst", "--checkpoint", str(media["avst"]),
         "--video", str(media["mp4"]), "--questions", str(bad), "--random-init"],
        capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and f"--questions {bad}" in proc.stderr
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts/answer.py"), "--model", "avst", "--checkpoint", str(media["avst"]),
         "--video", str(media["mp4"]), "--questions", str(questions), "--values", "violin", "--random-init"],
        capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: --values / --candidates: they fill --question")


def test_read_questions_json_and_csv(tmp_path):
    import importlib.util  # scripts/ is not a package: answer.py is loaded by its path

    spec = importlib.util.spec_from_file_location("answer_cli", ROOT / "scripts/answer.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    csv_file = tmp_path / "q.csv"
    csv_file.write_text("question,values,candidates\nwhat does the man do,,nod wave jump clap spin\n"
                        "Is the <Object> playing,violin,\n")
    assert cli.read_questions(csv_file) == [
        {"question": "what does the man do", "values": [], "candidates": ["nod", "wave", "jump", "clap", "spin"]},
        {"question": "Is the <Object> playing", "values": ["violin"], "candidates": None}]
    for text in ("{}", "[{\"values\": []}]", "[{\"question\": \"  \"}]", "not json"):
        (tmp_path / "q.json").write_text(text)
        with pytest.raises(UserError, match="--questions"):
            cli.read_questions(tmp_path / "q.json")


def test_extractor_ready_leaves_the_global_generator_and_kernels_alone():
    from feat_script.extract_resnet import ResNetGlobal

    benchmark = torch.backends.cudnn.benchmark
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    first = ResNetGlobal(ResNetGlobal.Config(random_init=True, device="cpu")).ready()[0]
    assert torch.equal(torch.rand(3), expected)
    assert torch.backends.cudnn.benchmark == benchmark
    second = ResNetGlobal(ResNetGlobal.Config(random_init=True, device="cpu")).ready()[0]
    assert torch.equal(first.conv1.weight, second.conv1.weight)  # drawn from the seed, not the caller's state


def test_avst_variants_registry_baseline_checkpoint_answers(media, tmp_path):
    from avst.answer import AvstAnswerer, write_heatmaps
    from avst.main_avst import build_parser
    from avst.model.checkpoint import new_model
    from avst.variants import VARIANTS, variant

    assert build_parser().parse_args(["--model", "baseline"]).model == "baseline"
    with pytest.raises(UserError, match="unknown AVST model 'nope'"):
        variant("nope")
    meta = AvstMeta(Vocab(AVST_WORDS, AVST_ANSWERS, "test"), "baseline")
    save_checkpoint(tmp_path / "baseline.pt", {"model": new_model(meta).state_dict(), "meta": meta.to_dict()})
    answerer = AvstAnswerer(tmp_path / "baseline.pt", random_init=True)
    result = answerer.ask(media["mp4"], "Is the <Object> in the video always playing?", ["violin"])
    assert result.model == "baseline" and result.spatial is None and "BASELINE" in result.timings
    assert [p.name for p in write_heatmaps(result, tmp_path / "heat")] == ["temporal.png"]
    assert set(VARIANTS) == {"avst", "baseline"}
