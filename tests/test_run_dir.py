"""env.json's git commit: the checkout's HEAD (+dirty) inside git, "unknown" from an sdist or a copy.

The oracle is git itself (``git rev-parse HEAD`` of a repository made here), not engine.run.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.run import git_commit

ROOT = Path(__file__).resolve().parent.parent
GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git executable")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True,
                          text=True).stdout.strip()


def make_repo(path: Path) -> str:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q")
    (path / "a.txt").write_text("one\n")
    git(path, "add", "a.txt")
    git(path, "commit", "-q", "-m", "first")
    return git(path, "rev-parse", "HEAD")


def test_inside_git_the_head_and_dirty_flag(tmp_path):
    head = make_repo(tmp_path / "repo")
    assert len(head) == 40
    assert git_commit(tmp_path / "repo") == head
    (tmp_path / "repo" / "a.txt").write_text("two\n")
    assert git_commit(tmp_path / "repo") == head + "+dirty"


def test_outside_git_unknown(tmp_path):
    (tmp_path / "sdist").mkdir()
    assert git_commit(tmp_path / "sdist") == "unknown"
    # an sdist unpacked inside someone else's checkout must not report that checkout's commit
    make_repo(tmp_path / "home")
    (tmp_path / "home" / "avqa-repro-0.1").mkdir()
    assert git_commit(tmp_path / "home" / "avqa-repro-0.1") == "unknown"


@pytest.mark.slow
def test_env_json_from_a_copy_of_the_code_outside_git(tmp_path):
    """What an sdist does: the engine imported from a folder that is no git checkout writes "unknown"."""
    copy = tmp_path / "sdist"
    shutil.copytree(ROOT / "engine", copy / "engine", ignore=shutil.ignore_patterns("__pycache__"))
    code = ("import argparse, json; from engine.run import Run; "
            "run = Run(argparse.Namespace(run_dir='run', seed=3), 'x'); run.close(); "
            "print(json.load(open('run/env.json'))['git_commit'])")
    env = {**os.environ, "PYTHONPATH": str(copy)}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RUN_ID"):
        env.pop(var, None)
    out = subprocess.run([sys.executable, "-c", code], cwd=copy, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "unknown"


def test_run_as_context_manager_closes_its_writer_even_on_error(tmp_path):
    """The entry points write ``with Run(...) as run:``; TensorBoard's writer must be closed on the way out."""
    import argparse

    from engine.run import Run

    with pytest.raises(KeyError), Run(argparse.Namespace(run_dir=str(tmp_path / "r"), seed=1, quiet=True), "x") as run:
        assert run._writer is not None
        raise KeyError("inside the run")
    assert run._writer is None
