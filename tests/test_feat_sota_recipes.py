"""``python -m feat_script recipe {qa-tiger,tspm}``: the files QA-TIGER's and TSPM's loaders read, under
their folder names, with the table's shapes and dtypes and one T across streams (small networks, random
weights, generated videos); TSPM's question text, prompts and keys, its --tspm-compat quirks, records
without a question_id, questions matching no template, and refusals before anything is written."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from sota_tiny import needs_clip_extra

from benchkit.small_sota import TINY_TOME, tiny_clip_arch
from feat_script import avqa_questions as qs
from feat_script.manifest import read_failures, read_manifest

pytestmark = needs_clip_extra

TEMPLATES = {  # a small made-up table in the --prompts format (TSPM's own is not shipped)
    "Is the <Object> in the video always playing?": "The {0} is not playing in this video.",
    "How many sounding <Object> in the video?": "The {0} is playing in this video.",
    "Are there <Object> and <Object> sound?": "There are sounds other than the {0} or the {-1}.",
}
RECORDS = [
    {"video_id": "00000001", "question_id": 7, "question_content": "Is the <Object> in the video always playing?",
     "templ_values": '["cello"]', "anser": "yes"},
    {"video_id": "00000002", "question_content": "How many sounding <Object> in the video？",  # v2.0: no id
     "templ_values": '["erhu"]', "anser": "two"},
    {"video_id": "00000002", "question_id": 9, "question_content": "Who painted the <Object>?",  # no template
     "templ_values": '["piano"]', "anser": "one"},
    {"video_id": "00000001", "question_id": 11, "question_content": "Are there <Object> and <Object> sound? ",
     "templ_values": '["acoustic guitar", "violin"]', "anser": "no"},
]


def nq_key(record: dict) -> str:
    """The documented stable id, computed here independently."""
    text = json.dumps([record["video_id"], record["question_content"], record["templ_values"]], ensure_ascii=False)
    return "nq-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def recipe_args(recipe: str, videos: Path, out: Path, *extra: str) -> argparse.Namespace:
    from feat_script.run_recipe import build_parser

    return build_parser().parse_args([recipe, "--videos", str(videos), "--out", str(out), "--random-init",
                                      "--device", "cpu", "--workers", "0", "--quiet", *extra])


def small() -> dict:
    """The recipe's extra settings for the small networks."""
    return {"clip": {"arch": tiny_clip_arch()}, "vit-tome": TINY_TOME}


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    from feat_script.synthetic_video import make_pattern_video

    folder = tmp_path_factory.mktemp("videos")
    make_pattern_video(folder / "00000001.mp4", size="96x64", seconds=3)
    make_pattern_video(folder / "00000002.mp4", size="64x96", seconds=2.4)
    return folder


@pytest.fixture(scope="module")
def tspm_root(videos, tmp_path_factory) -> Path:
    from feat_script.run_recipe import run_recipe

    work = tmp_path_factory.mktemp("tspm")
    (work / "music_avqa_test.json").write_text(json.dumps(RECORDS, ensure_ascii=False))
    (work / "prompts.json").write_text(json.dumps(TEMPLATES))
    args = recipe_args("tspm", videos, work / "root", "--annotations", str(work / "music_avqa_test.json"),
                       "--prompts", str(work / "prompts.json"))
    assert run_recipe(args, small()) == 0
    return work / "root"


@pytest.mark.slow
def test_tspm_files_are_what_its_loader_reads(tspm_root):
    from feat_script.extract_clip import Clip, ClipConfig

    for vid in ("00000001", "00000002"):  # TSPM dataloader.py: np.load(os.path.join(dir, name + '.npy'))
        audio = np.load(os.path.join(tspm_root / "vggish", vid + ".npy"))
        frames = np.load(os.path.join(tspm_root / "clip_feats/frame_1fps_ViT-L14@336px", vid + ".npy"))
        patches = np.load(os.path.join(tspm_root / "ToMe_feat/tome14", vid + ".npy"))
        assert (audio.shape, frames.shape, patches.shape) == ((60, 128), (60, 24), (60, 8, 32))  # small nets
        assert audio.dtype == frames.dtype == patches.dtype == np.float32
    clip = Clip(ClipConfig(random_init=True, device="cpu", arch=tiny_clip_arch()))
    texts = {"7": ("Is the cello in the video always playing?", "The cello is not playing in this video."),
             nq_key(RECORDS[1]): ("How many sounding erhu in the video?", "The erhu is playing in this video."),
             "11": ("Are there acoustic guitar and violin sound?",
                    "There are sounds other than the acoustic guitar or the violin.")}
    for key, (question, prompt) in texts.items():
        got = [np.load(tspm_root / folder / f"{key}.npy") for folder in
               ("clip_feats/qst_ViT-L14@336px", "clip_feats/qaPrompt_ViT-L14@336px")]
        assert all(a.shape == (1, 24) and a.dtype == np.float32 for a in got)
        np.testing.assert_allclose(np.concatenate(got), clip.encode_texts([question, prompt]), rtol=0, atol=1e-5)


@pytest.mark.slow
def test_records_without_question_id_are_keyed_stably_and_listed(tspm_root):
    manifest = read_manifest(tspm_root / "clip_feats/qst_ViT-L14@336px")
    assert manifest["keyed_without_question_id"] == [
        {"key": nq_key(RECORDS[1]), "record": f"{tspm_root.parent / 'music_avqa_test.json'}#1", "video_id": "00000002"}]
    assert qs.question_key(RECORDS[1]) == (nq_key(RECORDS[1]), False) and qs.question_key(RECORDS[0]) == ("7", True)


@pytest.mark.slow
def test_a_question_matching_no_template_is_a_listed_failure(tspm_root):
    for folder in ("clip_feats/qst_ViT-L14@336px", "clip_feats/qaPrompt_ViT-L14@336px"):
        [failure] = read_failures(tspm_root / folder)
        assert failure["video_id"] == "9" and "matches no entry of --prompts" in failure["reason"]
        assert not (tspm_root / folder / "9.npy").exists()
        assert read_manifest(tspm_root / folder)["counts"]["failed"] == 1


@pytest.mark.slow
def test_qa_tiger_files_are_what_its_loader_reads(videos, tmp_path):
    from feat_script.run_recipe import run_recipe

    root = tmp_path / "feats"
    assert run_recipe(recipe_args("qa-tiger", videos, root, "--tome-preprocess", "qa-tiger"), small()) == 0
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["frame_ViT-L14@336px", "vggish", "visual_tome14"]
    for vid in ("00000001", "00000002"):  # QA-TIGER src/dataset.py: np.load(Path(feat) / f'{name}.npy')[::1]
        streams = [np.load(root / folder / f"{vid}.npy")[::1]
                   for folder in ("vggish", "frame_ViT-L14@336px", "visual_tome14")]
        assert [s.shape for s in streams] == [(60, 128), (60, 24), (60, 8, 32)]
        assert {s.dtype for s in streams} == {np.dtype(np.float32)}
    assert read_manifest(root / "visual_tome14")["sampling"]["preprocess"] == "qa-tiger"


def test_the_full_configurations_give_the_table_s_shapes():
    from feat_script.extract_clip import Clip
    from feat_script.extract_vit_tome import VitTome
    from feat_script.recipes import build
    from feat_script.recipes_sota import QA_TIGER, TSPM

    assert [s.output for s in QA_TIGER.streams.values()] == ["vggish", "frame_ViT-L14@336px", "visual_tome14"]
    assert [s.output for s in TSPM.streams.values()] == ["vggish", "clip_feats/frame_1fps_ViT-L14@336px",
                                                       "ToMe_feat/tome14"]
    assert Clip().row_shapes() == {"": (768,)} and VitTome().row_shapes() == {"": (14, 1024)}
    for recipe in (QA_TIGER, TSPM):
        rows = {name: build(s).config.num_secs if name == "audio" else build(s).config.seconds
                for name, s in recipe.streams.items()}
        assert rows == {"audio": 60, "frames": 60, "patches": 60}


def test_question_text_prompt_and_tspm_compat_quirks():
    table = TEMPLATES
    assert qs.question_text(RECORDS[0]) == "Is the cello in the video always playing?"
    assert qs.question_text(RECORDS[0], compat=True) == "Is the [ in the video always playing?"
    assert qs.question_text(RECORDS[3], compat=True) == 'Are there [ and " sound?'
    assert qs.prompt_text(RECORDS[3], table) == "There are sounds other than the acoustic guitar or the violin."
    assert qs.prompt_text(RECORDS[3], table, compat=True) == "e"  # trailing space: TSPM matches nothing
    assert qs.prompt_text(RECORDS[1], table, compat=True) == "e"  # full-width question mark
    spaced = {**RECORDS[3], "question_content": RECORDS[3]["question_content"].strip()}
    assert qs.prompt_text(spaced, table, compat=True) == "There are sounds other than the acousticguitar or the violin."
    with pytest.raises(qs.QuestionError, match="matches no entry"):
        qs.prompt_text(RECORDS[2], table)
    assert qs.prompt_text(RECORDS[2], table, compat=True) == "e"
    with pytest.raises(qs.QuestionError, match="more slots"):
        qs.question_text({**RECORDS[3], "templ_values": '["piano"]'})
    with pytest.raises(qs.QuestionError, match="names value 1"):
        qs.prompt_text(RECORDS[0], {RECORDS[0]["question_content"]: "{0} and {1}"})
    assert qs.question_text({**RECORDS[0], "templ_values": ["cello"]}) == RECORDS[0]["question_content"].replace(
        "<Object>", "cello")  # a list, as in some files, works too


def test_tspm_compat_reaches_the_patch_frames_and_the_tome_preprocess_option_too(tmp_path):
    from feat_script.recipes_sota import TSPM
    from feat_script.run_recipe import stream_overrides

    args = recipe_args("tspm", tmp_path, tmp_path, "--tspm-compat", "--tome-preprocess", "qa-tiger")
    assert stream_overrides(TSPM.streams["patches"], args) | {"tspm_compat": True, "preprocess": "qa-tiger"} \
        == stream_overrides(TSPM.streams["patches"], args)
    assert "tspm_compat" not in stream_overrides(TSPM.streams["frames"], args)


@pytest.mark.parametrize("extra, culprit", [
    ((), "recipe tspm needs --annotations"),
    (("--annotations", "a.json"), "recipe tspm needs --annotations"),
])
def test_tspm_without_its_question_files_is_refused_before_writing(videos, tmp_path, capsys, extra, culprit):
    from feat_script.run_recipe import cli

    assert cli(["tspm", "--videos", str(videos), "--out", str(tmp_path / "root"), "--random-init", *extra]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error:") and culprit in line and not (tmp_path / "root").exists()


def test_recipe_shard_comes_from_the_launcher(videos, tmp_path, monkeypatch):
    """Under a Slurm array (or torchrun) each task takes its own share of the videos and questions."""
    from feat_script import run_recipe as recipe

    seen = []
    monkeypatch.setattr(recipe, "run", lambda extractor, args: seen.append(args.shard))
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "4")
    args = recipe.build_parser().parse_command(["qa-tiger", "--videos", str(videos), "--out", str(tmp_path / "r"),
                                                "--random-init"])
    recipe.run_recipe(args)
    assert seen and set(seen) == {"3/4"}
    seen.clear()
    args = recipe.build_parser().parse_command(["qa-tiger", "--videos", str(videos), "--out", str(tmp_path / "r"),
                                                "--random-init", "--shard", "1/2"])
    recipe.run_recipe(args)
    assert set(seen) == {"1/2"}  # --shard overrides the environment


def test_bad_recipe_flags_are_refused_before_writing(videos, tmp_path, capsys):
    from feat_script.run_recipe import cli

    (tmp_path / "p.json").write_text("{}")
    cases = [(["qa-tiger", "--random-init", "--prompts", str(tmp_path / "p.json")], "--prompts: no effect"),
             (["qa-tiger", "--random-init", "--shard", "2/2"], "--shard '2/2': need 0 <= i < n"),
             (["qa-tiger", "--random-init", "--batch-size", "0"], "--batch-size: 0 is out of range"),
             (["qa-tiger", "--clip-weights", str(tmp_path / "none.pt"), "--random-init"], "--clip-weights"),
             (["qa-tiger", "--vggish-weights", str(tmp_path / "none.pt")], "--vggish-weights"),
             (["tspm", "--random-init", "--annotations", str(tmp_path / "p.json"), "--prompts",
               str(tmp_path / "p.json")], "holds a JSON dict, expected a list")]
    for argv, culprit in cases:
        out = tmp_path / "root"
        try:
            status = cli([*argv, "--videos", str(videos), "--out", str(out)])
        except SystemExit as exit_info:  # refused by the parser
            status = exit_info.code
        assert status == 2, argv
        [line] = capsys.readouterr().err.strip().splitlines()
        assert culprit in line and not out.exists(), (argv, line)


@pytest.mark.slow
def test_a_second_run_resumes_and_another_prompt_table_is_refused(tspm_root, videos):
    from feat_script.base import ConfigError
    from feat_script.run_recipe import run_recipe

    work = tspm_root.parent
    files = {p: p.stat().st_mtime_ns for p in tspm_root.rglob("*.npy")}
    argv = ["--annotations", str(work / "music_avqa_test.json"), "--prompts", str(work / "prompts.json")]
    assert run_recipe(recipe_args("tspm", videos, tspm_root, *argv), small()) == 0
    assert {p: p.stat().st_mtime_ns for p in tspm_root.rglob("*.npy")} == files
    assert read_manifest(tspm_root / "clip_feats/qst_ViT-L14@336px")["counts"]["to_write"] == 0
    assert read_manifest(tspm_root / "ToMe_feat/tome14")["counts"]["already_done"] == 2
    (work / "prompts.json").write_text(json.dumps({**TEMPLATES, "Where is the performance?": "On a stage."}))
    with pytest.raises(ConfigError, match=r"qaPrompt_ViT-L14@336px was written with other settings \(prompts_sha256"):
        run_recipe(recipe_args("tspm", videos, tspm_root, *argv), small())
    assert {p: p.stat().st_mtime_ns for p in tspm_root.rglob("*.npy")} == files
