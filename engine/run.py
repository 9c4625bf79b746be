"""The run directory of one experiment: what was asked, on what, and what happened.

Layout of ``runs/<name>/``::

    config.json      resolved arguments (+ extra config given by the entry point)
    env.json         git commit, library versions, seed, world size, device
    log.txt          the plain-text log (what the console shows, without progress bars)
    tb/              TensorBoard events (tensorboardX)
    checkpoints/     last.pt (resume point) and best.pt (selected on validation)
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from engine import dist
from engine.checkpoint import atomic_write

_PACKAGES = ("torch", "torchvision", "numpy", "h5py", "pandas", "tensorboardX", "moviepy", "ffmpeg-python")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def git_commit(root: Path | None = None) -> str:
    """HEAD of the git checkout whose top is ``root`` (default: this code's), with '+dirty' when the
    tree has changes; "unknown" outside git (an sdist or a copy, even one unpacked inside another
    repository) or without git."""
    root = (root or Path(__file__).resolve().parent.parent).resolve()
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=root, capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        if Path(top).resolve() != root:
            return "unknown"
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def environment(seed: int | None) -> dict:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"git_commit": git_commit(), "python": sys.version.split()[0], "platform": platform.platform(),
            "packages": versions, "seed": seed, "world_size": dist.world_size(),
            "argv": sys.argv, "started": time.strftime("%Y-%m-%d %H:%M:%S")}


class Run:
    """One experiment's folder, logger and TensorBoard writer (rank 0 writes, others stay silent)."""

    def __init__(self, args: argparse.Namespace, name: str, config: dict | None = None) -> None:
        if dist.launched_by_torchrun() and dist.world_size() == 1:
            raise RuntimeError("under torchrun, call engine.device.resolve_device (it joins the process group) "
                               "before creating the Run, or every rank would write the run folder as rank 0")
        self.args = args
        self.is_main = dist.rank() == 0
        self.dir = Path(args.run_dir) if getattr(args, "run_dir", None) else Path("runs") / (
            getattr(args, "name", None) or name)
        self.ckpt_dir = self.dir / "checkpoints"
        self.config = {**_jsonable(vars(args)), **_jsonable(config or {})}
        self.quiet = bool(getattr(args, "quiet", False))
        self._writer = None
        if self.is_main:
            self.dir.mkdir(parents=True, exist_ok=True)
            resumed = (self.dir / "config.json").exists() and getattr(args, "resume", False)
            self.write_json("config.resumed.json" if resumed else "config.json", self.config)
            self.write_json("env.json", environment(getattr(args, "seed", None)))
            from tensorboardX import SummaryWriter
            self._writer = SummaryWriter(str(self.dir / "tb"))
        dist.barrier()

    def log(self, msg: str) -> None:
        if not self.is_main:
            return
        print(msg, flush=True)
        with open(self.dir / "log.txt", "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%H:%M:%S')} {msg}\n")

    def scalars(self, values: dict[str, float], step: int, prefix: str = "") -> None:
        if self._writer is None:
            return
        for key, value in values.items():
            if isinstance(value, (int, float)):
                self._writer.add_scalar(f"{prefix}{key}", value, step)

    def write_json(self, rel: str, obj: Any) -> Path | None:
        text = json.dumps(_jsonable(obj), indent=2, ensure_ascii=False) + "\n"
        return self.write_text(rel, text)

    def write_text(self, rel: str, text: str) -> Path | None:
        if not self.is_main:
            return None
        return atomic_write(self.dir / rel, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
