"""Under DDP (2 gloo processes on CPU) only rank 0 writes files, and the reports cover every sample.

* AVST ``--mode test``: the per-type report equals a single-process run's (evaluation gathers every
  prediction), and only rank 0 writes it.
* MASN ``--select test``: the original's threshold checkpoints ``<Task>_<metric>.pth`` come from rank 0.
Writes are observed by tests/ddp_writes.py, which logs each atomic write with its rank.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
WRAPPER = Path(__file__).with_name("ddp_writes.py")


def torchrun(script: str, args: list[str], log: Path) -> list[dict]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(WRAPPER),
           script, *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DDP_WRITES_LOG": str(log), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_avst_test_report_rank0_and_complete(tmp_path):
    from avst.data.synthetic import make_dataset
    from avst.data.vocab import Vocab
    from avst.main_avst import main
    from avst.model.checkpoint import AvstMeta, new_model
    from engine.checkpoint import save_checkpoint

    make_dataset(tmp_path, seed=1, n_videos=3, n_frame_videos=0, rounds=1)
    label = tmp_path / "json" / "avqa-test.json"
    vocab = Vocab.build(tmp_path / "json" / "avqa-train.json")
    meta = AvstMeta(vocab)
    save_checkpoint(tmp_path / "w.pt", {"model": new_model(meta).state_dict(), "meta": meta.to_dict()})
    args = ["--mode", "test", "--weights", str(tmp_path / "w.pt"), "--audio_dir", str(tmp_path / "feats/vggish"),
            "--video_res14x14_dir", str(tmp_path / "feats/res18_14x14"), "--label_test", str(label),
            "--vocab_json", str(tmp_path / "json/avqa-train.json"), "--num_workers", "0", "--quiet",
            "--eval_batch_size", "2", "--device", "cpu"]
    single = main([*args, "--run_dir", str(tmp_path / "one")])
    writes = torchrun("avst/main_avst.py", [*args, "--run_dir", str(tmp_path / "two")], tmp_path / "writes.jsonl")
    two, one = tmp_path / "two" / "test_avqa-test", tmp_path / "one" / "test_avqa-test"
    report = json.loads((two / "test_report.json").read_text())
    assert {k: v for k, v in report.items() if k != "weights"} == {k: v for k, v in single.items()
                                                                 if k not in ("weights", "files")}
    lines = (two / "test_predictions.tsv").read_text()
    assert lines == (one / "test_predictions.tsv").read_text()  # every question, in order, same prediction
    assert len(json.loads(label.read_text())) % 2 == 1  # an odd count: the shards differ in size
    reports = [w for w in writes if Path(w["path"]).name.startswith("test_")]
    assert {Path(w["path"]).name for w in reports} >= {"test_report.json", "test_report.md", "test_predictions.tsv"}
    assert {w["rank"] for w in writes} == {0}, [w for w in writes if w["rank"]]


def test_masn_threshold_checkpoints_rank0_only(tmp_path):
    from masn.data.synthetic import make_demo

    make_demo(tmp_path / "d", seed=1, n_train=10, n_test=3, frames=2)
    d = tmp_path / "d"
    writes = torchrun("masn/main.py", [
        "--task", "Count", "--select", "test", "--df_dir", str(d / "question"), "--feat_dir", str(d), "--vc_dir",
        str(d / "vocab"), "--v_max_length", "3", "--batch_size", "4", "--max_epoch", "1", "--num_workers", "0",
        "--quiet", "--device", "cpu", "--hidden_size", "16", "--run_dir", str(tmp_path / "run"),
        "--save_path", str(tmp_path / "saved")], tmp_path / "writes.jsonl")
    thresholds = [w for w in writes if Path(w["path"]).suffix == ".pth"]
    assert [Path(w["path"]).name.split("_")[0] for w in thresholds] == ["Count"]  # one file, written once
    assert {w["rank"] for w in writes} == {0}, [w for w in writes if w["rank"]]
