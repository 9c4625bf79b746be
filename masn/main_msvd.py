"""MSVD-QA entry point of the original (``python main_msvd.py --task MS-QA``): ``main.py --dataset msvd-qa``."""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    _root = str(Path(__file__).resolve().parent.parent)
    sys.path[:] = [_root] + [p for p in sys.path if Path(p or ".").resolve() != Path(_root) / "masn"]

from masn.main import cli  # noqa: E402

if __name__ == "__main__":
    cli("msvd-qa")
