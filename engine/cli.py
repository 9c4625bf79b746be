"""Command-line options every trainer shares, added to each entry point's own parser."""
from __future__ import annotations

import argparse


def add_engine_args(parser: argparse.ArgumentParser, default_seed: int = 1) -> argparse.ArgumentParser:
    """Add the engine's run, reproducibility, precision and device options to ``parser``."""
    group = parser.add_argument_group("run (engine)")
    group.add_argument("--run_dir", default=None,
                       help="experiment folder (default: runs/<name>); holds config, logs, TensorBoard, checkpoints")
    group.add_argument("--name", default=None, help="experiment name used for the default --run_dir")
    group.add_argument("--seed", type=int, default=default_seed,
                       help="seeds python, numpy, torch and DataLoader workers")
    group.add_argument("--deterministic", action="store_true",
                       help="deterministic kernels only (slower; errors on ops without one)")
    group.add_argument("--resume", action="store_true",
                       help="continue from <run_dir>/checkpoints/last.pt (weights, optimizer, RNG, position)")
    group.add_argument("--amp", choices=["off", "bf16", "fp16"], default="off",
                       help="mixed precision (fp16 uses a GradScaler)")
    group.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    group.add_argument("--quiet", action="store_true", help="no progress bars")
    group.add_argument("--save_every_steps", type=int, default=0,
                       help="also checkpoint every N optimizer steps inside an epoch (0: only at epoch end)")
    return parser
