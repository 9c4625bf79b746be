"""Shared test settings: small thread counts keep the suite fast and repeatable on 2 cores, and every
subprocess a test starts (a CLI, tests/engine_toy.py, tests/ddp_writes.py) imports this checkout's
packages, whatever `pip install -e` points at."""
import os
from pathlib import Path

import torch

torch.set_num_threads(1)
ROOT = str(Path(__file__).resolve().parents[1])
os.environ["PYTHONPATH"] = os.pathsep.join([ROOT, *filter(None, [os.environ.get("PYTHONPATH")])])
