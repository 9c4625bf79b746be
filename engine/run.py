"""The run directory of one experiment: what was asked, on what, and what happened.

Layout of ``runs/<name>/``::

    config.json      resolved arguments (+ extra config given by the entry point)
    config.resumed.json  the arguments of the latest --resume (only harmless ones may differ)
    env.json         git commit, library versions, seed, world size, kernel choices (TF32, cuDNN)
    log.txt          the plain-text log (what the console shows, without progress bars)
    tb/              TensorBoard events (tensorboardX)
    checkpoints/     last.pt (resume point) and best.pt (selected on validation)
    test_<label>/    each evaluation of the run's weights (its own config, log and reports)
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

import torch

from engine import dist
from engine.errors import UserError
from engine.files import atomic_write_text, remove_stale_temporaries

# Settings that never change what a resumed run computes: where it is, how it reports, how the data is
# loaded, and on which device (another device can differ in float rounding only, as any rerun there).
HARMLESS = frozenset({"run_dir", "name", "resume", "quiet", "num_workers", "workers", "input", "device",
                      "save_every_steps", "log_interval", "gpu"})
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


def kernel_settings() -> dict:
    """The kernel choices in force (set by :func:`engine.seed.seed_everything`), for env.json."""
    return {"deterministic": torch.are_deterministic_algorithms_enabled(),
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "tf32_cudnn": torch.backends.cudnn.allow_tf32}


def environment(seed: int | None) -> dict:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"git_commit": git_commit(), "python": sys.version.split()[0], "platform": platform.platform(),
            "packages": versions, "seed": seed, "world_size": dist.world_size(), "kernels": kernel_settings(),
            "argv": sys.argv, "started": time.strftime("%Y-%m-%d %H:%M:%S")}


def run_dir(args: argparse.Namespace, name: str) -> Path:
    """The one rule for a run's folder: ``--run_dir``, else ``runs/<--name or name>``."""
    if getattr(args, "run_dir", None):
        return Path(args.run_dir)
    return Path("runs") / (getattr(args, "name", None) or name)


def evaluation_dir(args: argparse.Namespace, name: str, label: str) -> Path:
    """Where evaluating into a (training) run writes: ``<run_dir>/test_<label>/``, so that the
    training run's own config, log and reports are never overwritten."""
    return run_dir(args, name) / f"test_{label}"


def changed_settings(stored: dict, new: dict, harmless: set[str]) -> list[str]:
    """``key: old -> new`` for every setting both configs hold that differs, except ``harmless`` ones."""
    new = json.loads(json.dumps(_jsonable(new)))  # the same JSON round trip the stored config went through
    return [f"--{key} {stored[key]!r} -> {new[key]!r}" for key in sorted(stored.keys() & new.keys())
            if key not in harmless and stored[key] != new[key]]


def check_start(args: argparse.Namespace, name: str, config: dict | None = None,
                harmless: tuple[str, ...] = ()) -> None:
    """Refuse (on every rank, before anything is written) a run that may not start in its folder: a
    new run where checkpoints exist (pass ``--resume``), or a ``--resume`` whose settings differ from
    the stored ``config.json`` in anything but :data:`HARMLESS` and ``harmless``, or a ``--resume`` with
    nothing to resume on any rank (a rank that alone lacks the checkpoint is the trainer's to name).
    Entry points call it early to fail before loading data; :class:`Run` calls it again."""
    folder = run_dir(args, name)
    last = folder / "checkpoints" / "last.pt"
    views = dist.all_gather_objects((_refusal(args, folder, {**_jsonable(vars(args)), **_jsonable(config or {})},
                                              HARMLESS | set(harmless)), last.exists()))
    problems = [problem for problem, _ in views if problem]
    if problems:
        raise problems[0]
    if getattr(args, "resume", False) and not any(seen for _, seen in views):
        raise UserError(f"{last}: nothing to resume (no checkpoint there); drop --resume to start a new run, "
                        "or give the --run_dir / --name of the run to continue")


def _refusal(args: argparse.Namespace, folder: Path, config: dict, harmless: set[str]) -> Exception | None:
    resume = bool(getattr(args, "resume", False))
    last = folder / "checkpoints" / "last.pt"
    if last.exists() and not resume:
        return FileExistsError(f"{last.parent} already holds checkpoints: pass --resume to continue that run, "
                               "or choose another --run_dir / --name")
    stored = folder / "config.json"
    if not resume or not last.exists() or not stored.is_file():
        return None
    try:
        old = json.loads(stored.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return UserError(f"{stored}: unreadable ({err}); --resume compares the new settings with it")
    changed = changed_settings(old, config, harmless)
    if changed:
        return UserError(f"{folder}: --resume with settings that change the result: {'; '.join(changed)}; "
                         "resume with the stored settings, or start a new --run_dir")
    return None


class Run:
    """One experiment's folder, logger and TensorBoard writer (rank 0 writes, others stay silent).

    Nothing is written before :func:`check_start` passed. Stale temporaries of interrupted
    checkpoint writes are removed on start and resume.
    """

    def __init__(self, args: argparse.Namespace, name: str, config: dict | None = None,
                 harmless: tuple[str, ...] = ()) -> None:
        if dist.launched_by_torchrun() and dist.world_size() == 1:
            raise RuntimeError("under torchrun, call engine.device.training_device (it joins the process group) "
                               "before creating the Run, or every rank would write the run folder as rank 0")
        check_start(args, name, config, harmless)
        self.args = args
        self.is_main = dist.rank() == 0
        self.dir = run_dir(args, name)
        self.ckpt_dir = self.dir / "checkpoints"
        self.config = {**_jsonable(vars(args)), **_jsonable(config or {})}
        self.quiet = bool(getattr(args, "quiet", False))
        self.resuming = bool(getattr(args, "resume", False)) and (self.ckpt_dir / "last.pt").exists()
        self._writer = None
        if self.is_main:
            self.dir.mkdir(parents=True, exist_ok=True)
            for folder in (self.dir, self.ckpt_dir):
                remove_stale_temporaries(folder)
            self.write_json("config.resumed.json" if self.resuming else "config.json", self.config)
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
        return atomic_write_text(self.dir / rel, text)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
