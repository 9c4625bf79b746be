"""scripts/bench_memory.py: each run's own peak (not the largest so far, not the parent's), and its
quick mode end to end on two extractors."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "bench_memory.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_memory", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_memory"] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules["bench_memory"]


def _allocating(mb: int) -> list[str]:
    return [sys.executable, "-c", f"b = bytearray({mb} << 20); b[::4096] = b'x' * len(b[::4096])"]


def test_each_child_gets_its_own_peak(tmp_path):
    """Measured from a small process, as the script measures (Linux counts the starting process's peak)."""
    code = ("import importlib.util, json, sys\n"  # a process that imports no torch
            f"spec = importlib.util.spec_from_file_location('bench_memory', {str(SCRIPT)!r})\n"
            "m = importlib.util.module_from_spec(spec); sys.modules['bench_memory'] = m; spec.loader.exec_module(m)\n"
            f"runs = [m.measure(n, '-', a, 120) for n, a in {[('big', _allocating(300)), ('small', _allocating(40))]}]"
            "\n"
            "print(json.dumps([[r.status, r.peak_mb] for r in runs]))\n")
    big, small = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                           check=True).stdout)
    assert big[0] == small[0] == 0
    assert 300 <= big[1] < 300 + 100
    assert 40 <= small[1] < 40 + 100  # not the 300 MB of the child before it


def test_failures_and_peaks_over_the_limit_are_the_verdict(bench):
    failed = bench.measure("fails", "-", [sys.executable, "-c", "raise SystemExit(3)"], 60)
    assert failed.status == 3
    rows = bench.table([failed, bench.Result("fat", "video", 1.0, 2049.0, 0), bench.Result("lean", "audio", 1.0,
                                                                                          2048.0, 0)], 2048).split("\n")
    assert rows[1].endswith("exit 3") and rows[2].endswith("over 2048 MB") and rows[3].endswith("ok")


@pytest.mark.slow
def test_quick_mode_runs_and_reports(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--work", str(tmp_path), "--only", "frames",
                           "audio", "--json", str(tmp_path / "m.json")], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "m.json").read_text())
    assert [r["name"] for r in report["results"]] == ["frames", "audio"]
    assert all(r["status"] == 0 and 0 < r["peak_mb"] <= 2048 for r in report["results"])
    assert report["sizes"] == {"video_seconds": 3, "audio_seconds": 4}
    assert "frames" in proc.stdout and proc.stdout.rstrip().endswith("ok")
    assert not any(p.suffix == ".mp4" for p in ROOT.rglob("long_*.mp4"))  # the inputs stay in --work
