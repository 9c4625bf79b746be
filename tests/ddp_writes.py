"""Run an entry point (under torchrun) logging every atomic file write with the writer's rank.

    python -m torch.distributed.run --nproc_per_node 2 tests/ddp_writes.py masn/main.py ARGS...

Each checkpoint, report and run-folder JSON goes through engine.files.atomic_path; the log
(``$DDP_WRITES_LOG``, one JSON line per write) tells tests/test_ddp_reports.py which rank wrote what.
"""
from __future__ import annotations

import json
import os
import runpy
import sys

import engine.files

_atomic_path = engine.files.atomic_path


def logged_atomic_path(path):
    with open(os.environ["DDP_WRITES_LOG"], "a", encoding="utf-8") as f:
        f.write(json.dumps({"rank": int(os.environ.get("RANK", "0")), "path": str(path)}) + "\n")
    return _atomic_path(path)


engine.files.atomic_path = logged_atomic_path
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
