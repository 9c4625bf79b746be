"""Outputs named from inputs never collide: test files or videos with one stem from different folders
each get their own output folder."""
from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from avst.main_avst import main as avst_main
from engine.files import distinct_names
from tests.test_benchmarks_eval import args, demo  # noqa: F401 - the fixture

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("paths", "want"), [
    (["t.json"], ["t"]),
    (["a/t.json", "b/t.json"], ["a_t", "b_t"]),
    (["a/x/t.json", "b/x/t.json"], ["a_x_t", "b_x_t"]),  # the folder alone does not tell them apart
    (["a/t.json", "b/t.json", "a_t.json"], ["1_a_t", "2_b_t", "3_a_t"]),  # no folder tells a/t from a_t
    (["/r/a/t.json", "/r/b/t.json", "u.json"], ["a_t", "b_t", "u"]),
    (["t.json", "t.json"], ["1_t", "2_t"]),  # one file twice: by position
    (["../t.json", "t.json"], [".._t", "t"]),
])
def test_distinct_names(paths, want):
    assert distinct_names(paths) == want


def test_distinct_names_are_unique_and_plain_for_random_paths():
    rng = random.Random(0)
    for _ in range(200):
        paths = ["/".join(rng.choice("ab") for _ in range(rng.randint(0, 3))) + f"/{rng.choice('xy')}.json"
                 for _ in range(rng.randint(1, 6))]
        names = distinct_names(paths)
        assert len(set(names)) == len(names) and not any("/" in n for n in names), (paths, names)


def test_two_avst_test_files_with_one_stem_get_one_report_each(demo, tmp_path):  # noqa: F811 - the fixture
    files = []
    for folder in ("a", "b"):
        (tmp_path / folder / "x").mkdir(parents=True)
        files.append(shutil.copy(demo / "json/avqa-test.json", tmp_path / folder / "x" / "avqa-test.json"))
    records = json.loads(Path(files[1]).read_text())
    Path(files[1]).write_text(json.dumps(records[:2]))  # b's report must not be a's
    avst_main(args(demo, *files, run=tmp_path / "run"))
    run = tmp_path / "run" / "test_multi"
    counts = {name: sum(v["count"] for v in json.loads((run / name / "test_report.json").read_text())["types"].values())
              for name in ("a_x_avqa-test", "b_x_avqa-test")}
    assert counts == {"a_x_avqa-test": len(records), "b_x_avqa-test": 2}


@pytest.mark.slow
def test_two_videos_with_one_stem_get_heat_maps_of_their_own(tmp_path):
    from benchkit.tiny_checkpoints import SHAPES, write_checkpoints
    from feat_script.synthetic_video import make_video

    videos = []
    for folder, shapes in (("a", SHAPES[:1]), ("b", SHAPES)):
        (tmp_path / folder).mkdir()
        videos.append(make_video(tmp_path / folder / "clip.mp4", shapes, seconds=2))
    heat = tmp_path / "heat"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts/answer.py"), "--model", "avst", "--checkpoint",
         str(write_checkpoints(tmp_path)["avst"]), "--video", *map(str, videos), "--question",
         "Is the <Object> in the video always playing?", "--values", "violin", "--random-init", "--device", "cpu",
         "--json", "--heatmaps", str(heat)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    outs = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    folders = [{str(Path(p).parent) for p in out["heatmaps"]} for out in outs]
    assert folders == [{str(heat / "a_clip" / "0")}, {str(heat / "b_clip" / "0")}]
