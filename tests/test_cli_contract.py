"""Every entry point keeps the CLI contract: a user error is one line on stderr and exit status 2.

Each command is run as a user runs it (a subprocess from the repository root) with an input that is
wrong in an ordinary way: a file that is not there.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
MISSING = "/nonexistent/input"

COMMANDS = {
    "answer.py": ["scripts/answer.py", "--model", "avst", "--checkpoint", MISSING + ".pt", "--video", MISSING,
                  "--question", "Is it?"],
    "masn/main.py": ["masn/main.py", "--task", "Count", "--df_dir", MISSING, "--feat_dir", MISSING,
                     "--vc_dir", MISSING, "--max_epoch", "1"],
    "masn/main_msvd.py": ["masn/main_msvd.py", "--df_dir", MISSING, "--feat_dir", MISSING, "--vc_dir", MISSING],
    "masn/convert_checkpoint.py": ["masn/convert_checkpoint.py", MISSING + ".pth", "OUT.pt"],
    "masn.answer_index": ["-m", "masn.answer_index", MISSING + ".pkl", "OUT.json"],
    "avst/main_avst.py": ["avst/main_avst.py", "--mode", "test", "--label_test", MISSING + ".json",
                          "--vocab_json", MISSING + ".json"],
    "avst/main_baseline.py": ["avst/main_baseline.py", "--mode", "train", "--label_train", MISSING + ".json",
                              "--vocab_json", MISSING + ".json"],
    "grounding_gen/main_grd_gen.py": ["grounding_gen/main_grd_gen.py", "--audio_dir", MISSING, "--video_dir",
                                      MISSING, "--label_train", MISSING + ".json"],
    "grounding_gen/main_grd_gen_vis.py": ["grounding_gen/main_grd_gen_vis.py", "--checkpoint", MISSING + ".pt",
                                          "--audio_dir", MISSING, "--video_dir", MISSING, "--videos", "v"],
    "check_data.py tgif-qa": ["scripts/check_data.py", "tgif-qa", "--task", "Count", "--csv_dir", MISSING,
                              "--feat_dir", MISSING],
    "check_data.py music-avqa": ["scripts/check_data.py", "music-avqa", "--json_file", MISSING + ".json"],
    "extractor": ["-m", "feat_script", "vggish", "--videos", MISSING, "--out", "OUT"],
    "extract_*.py": ["feat_script/extract_frames.py", "--videos", MISSING, "--out", "OUT"],
    "convert_butd_tsv": ["feat_script/convert_butd_tsv.py", MISSING + ".tsv", "--out", "OUT.h5"],
    "vggish.convert": ["feat_script/vggish/convert.py", MISSING + ".ckpt", "--out", "OUT.pt"],
    "pack_avst_features.py": ["scripts/pack_avst_features.py", "--label_json", MISSING + ".json",
                              "--audio_dir", MISSING, "--video_res14x14_dir", MISSING, "--out", "OUT"],
    "webdemo": ["-m", "webdemo", "--avst-checkpoint", MISSING + ".pt", "--port", "0"],
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_user_error_is_one_line_and_exit_2(name, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    args = [a.replace("OUT", str(tmp_path / "out")) for a in COMMANDS[name]]
    args = [str(ROOT / a) if a.endswith(".py") and not a.startswith("-") and (ROOT / a).is_file() else a
            for a in args]
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith(("error: ", "usage: ")) is True, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir()), "a refused command wrote something"
