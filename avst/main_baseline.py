"""The baseline (``net_grd_baseline``): ``avst/main_avst.py --model baseline`` with its 20 epochs."""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avst.main_avst import main  # noqa: E402
from engine.errors import run_cli  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(run_cli(main, ["--model", "baseline", *sys.argv[1:]]))
