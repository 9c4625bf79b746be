"""The extractor registry: every extract_*.py is reachable by name, and a wrong name is one line, exit 2."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from feat_script.base import Extractor
from feat_script.registry import EXTRACTORS, extractor_class

ROOT = Path(__file__).resolve().parents[1]


def test_every_extractor_module_is_registered_and_resolves():
    modules = {p.stem for p in (ROOT / "feat_script").glob("extract_*.py")}
    registered = {target.split(":")[0].rsplit(".", 1)[1] for target in EXTRACTORS.values()}
    assert registered == modules
    for name in EXTRACTORS:
        assert issubclass(extractor_class(name), Extractor)


def test_module_cli_runs_the_named_extractor_and_refuses_unknown_names():
    run = [sys.executable, "-m", "feat_script"]
    helped = subprocess.run([*run, "frames", "-h"], capture_output=True, text=True, cwd=ROOT)
    assert helped.returncode == 0 and "extract_frames" in helped.stdout
    wrong = subprocess.run([*run, "vgish", "--videos", "x", "--out", "y"], capture_output=True, text=True, cwd=ROOT)
    assert wrong.returncode == 2
    assert wrong.stderr.strip().splitlines() == [wrong.stderr.strip()] and "unknown extractor 'vgish'" in wrong.stderr
