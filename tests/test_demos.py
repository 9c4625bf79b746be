"""The demos replace only what a demo wrote: a user's folder given as --out is refused, untouched."""
from __future__ import annotations

import subprocess
import sys

import pytest

from demos.folders import MARKER, fresh_folder
from engine.errors import UserError

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_a_new_or_empty_folder_is_made_and_marked(tmp_path):
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "new" / "deeper", tmp_path / "empty"):
        assert fresh_folder(folder, "--out") == folder
        assert (folder / MARKER).is_file() and len(list(folder.iterdir())) == 1


def test_a_folder_a_demo_wrote_is_replaced(tmp_path):
    fresh_folder(tmp_path / "out", "--out")
    (tmp_path / "out" / "old.txt").write_text("from the last demo")
    fresh_folder(tmp_path / "out", "--out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [MARKER]


@pytest.mark.parametrize("make", ["foreign folder", "file", "link to a marked folder"])
def test_anything_else_is_refused_and_left_as_it_was(tmp_path, make):
    target = tmp_path / "out"
    if make == "foreign folder":
        target.mkdir()
        (target / "thesis.tex").write_text("mine")
    elif make == "file":
        target.write_text("mine")
    else:
        fresh_folder(tmp_path / "marked", "--out")
        target.symlink_to(tmp_path / "marked")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(UserError, match="--out"):
        fresh_folder(target, "--out")
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("script, flag", [("scripts/demo_video.py", "--out"), ("scripts/demo.py", "--runs")])
def test_the_demo_scripts_refuse_a_users_folder_in_one_line(tmp_path, script, flag):
    mine = tmp_path / "mine"  # --out is the demo's folder; --runs holds the demo's masn/ and avst/ folders
    argv = [flag, str(mine)] + (["--data", str(tmp_path / "data"), "--only", "masn"] if flag == "--runs" else [])
    mine = mine / "masn" if flag == "--runs" else mine
    mine.mkdir(parents=True)
    (mine / "results.csv").write_text("precious")
    done = subprocess.run([sys.executable, script, *argv], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and flag in lines[0], done.stderr
    assert [p.name for p in mine.iterdir()] == ["results.csv"]
    assert not (tmp_path / "data").exists(), "data was written before the refusal"
