"""Extraction scale-out: the shard from --shard or the launcher's environment (torchrun, a Slurm array,
both), and four concurrent shards writing one HDF5 output that ends up with every video once."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from engine.errors import UserError
from feat_script.base import parse_shard, take_shard
from feat_script.shards import shard_spec

HELPER = Path(__file__).with_name("shard_extractor.py")


@pytest.mark.parametrize("env, expected", [
    ({}, "0/1"),
    ({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "3"}, "3/8"),
    ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "100"}, "0/100"),
    ({"SLURM_ARRAY_TASK_ID": "99", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "100"}, "99/100"),
    ({"SLURM_ARRAY_TASK_ID": "100", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "100"}, "99/100"),
    ({"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_STEP": "2",
      "SLURM_ARRAY_TASK_COUNT": "5"}, "3/5"),
    ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "100", "RANK": "5", "WORLD_SIZE": "8"}, "21/800"),
])
def test_the_shard_comes_from_the_launcher(env, expected):
    assert shard_spec(None, env) == expected
    assert shard_spec("1/2", env) == "1/2"  # --shard overrides
    parse_shard(shard_spec(None, env))


@pytest.mark.parametrize("env, culprit", [
    ({"RANK": "8", "WORLD_SIZE": "8"}, "RANK=8"),
    ({"RANK": "-1", "WORLD_SIZE": "8"}, "RANK=-1"),
    ({"RANK": "0"}, "WORLD_SIZE=None"),
    ({"RANK": "x", "WORLD_SIZE": "2"}, "RANK='x'"),
    ({"SLURM_ARRAY_TASK_ID": "100", "SLURM_ARRAY_TASK_COUNT": "100"}, "SLURM_ARRAY_TASK_ID=100"),
    ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "4"},
     "SLURM_ARRAY_TASK_ID=0"),
    ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_STEP": "2", "SLURM_ARRAY_TASK_COUNT": "1"},
     "SLURM_ARRAY_TASK_ID=2"),
    ({"SLURM_ARRAY_TASK_ID": "3"}, "SLURM_ARRAY_TASK_COUNT=None"),
])
def test_an_environment_that_names_no_shard_is_refused(env, culprit):
    with pytest.raises(UserError, match=culprit.replace("(", r"\(")):
        shard_spec(None, env)


def test_launcher_shards_cover_every_video_once():
    items = list(range(23))
    parts = [take_shard(items, parse_shard(shard_spec(None, {"SLURM_ARRAY_TASK_ID": str(t),
                                                             "SLURM_ARRAY_TASK_COUNT": "3", "RANK": str(r),
                                                             "WORLD_SIZE": "2"})))
             for t in range(3) for r in range(2)]
    assert sorted(x for p in parts for x in p) == items


@pytest.mark.slow
def test_four_concurrent_shards_merge_into_one_output(tmp_path):
    """torchrun starts four shards at once (each takes its shard from RANK / WORLD_SIZE); they write one
    HDF5 file, merging as they finish: every video is there once with its own rows, each shard reported,
    and a final summary counts all 18 videos once."""
    videos = tmp_path / "videos"
    videos.mkdir()
    for k in range(18):
        (videos / f"v{k}.mp4").write_bytes(b"not decoded")
    out = tmp_path / "features.h5"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "4", str(HELPER),
           "--videos", str(videos), "--out", str(out), "--quiet", "--device", "cpu", "--workers", "1"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    with h5py.File(out) as f:
        assert sorted(f) == sorted(f"v{k}" for k in range(18))
        for k in range(18):
            np.testing.assert_array_equal(f[f"v{k}"][()], np.full((3, 4), k, np.float32))
    log = out.with_name(out.name + ".shards.jsonl").read_text().splitlines()
    assert sorted(line.split('"shard": "')[1][:3] for line in log) == ["0/4", "1/4", "2/4", "3/4"]
    assert "all 4 shards finished: 18 videos, 18 written, 0 failed, 0 done before" in done.stdout
    for shard in range(4):
        assert f"shard {shard}/4: " in done.stdout
