"""Which shard of the video list a process extracts, and the run's summary over its shards.

The shard is ``--shard i/n`` when given; else it comes from the launcher: a Slurm array task
(``SLURM_ARRAY_TASK_ID`` counted from ``SLURM_ARRAY_TASK_MIN`` in steps of ``SLURM_ARRAY_TASK_STEP``, of
``SLURM_ARRAY_TASK_COUNT``), torchrun (``RANK`` of ``WORLD_SIZE``), or both (torchrun inside every array
task: ``task x WORLD_SIZE + RANK`` of ``COUNT x WORLD_SIZE``); else ``0/1``. Every shard lists the same
sorted videos and takes every n-th (``take_shard``), so the shards cover each video exactly once. The GPU
is the process's ``LOCAL_RANK`` (``engine.device.resolve_device``).

Each shard appends its counts to ``<out>.shards.jsonl`` when it finishes (one ``O_APPEND`` write: whole
lines across processes and nodes on a shared filesystem). The shard that finds every shard of its run
there prints the run's summary; a run is the launcher's job (``SLURM_ARRAY_JOB_ID``,
``TORCHELASTIC_RUN_ID``) and shard count, so the records of an earlier run do not count.
"""
from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path

from engine.errors import UserError
from feat_script.stores import append_line, sidecar

COUNTED = ("listed_in_shard", "written", "failed", "already_done")


def _integer(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    text = env.get(name)
    if text is None and default is not None:
        return default
    try:
        return int(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UserError(f"${name}={text!r}: not an integer; launch through sbatch --array / torchrun, or give "
                        "--shard i/n") from None


def shard_spec(flag: str | None, env: Mapping[str, str] = os.environ) -> str:
    """``"i/n"``: ``flag`` when given, else from the launcher's environment (see the module docstring)."""
    if flag is not None:
        return flag
    index, count = 0, 1
    if "SLURM_ARRAY_TASK_ID" in env:
        task, low = _integer(env, "SLURM_ARRAY_TASK_ID"), _integer(env, "SLURM_ARRAY_TASK_MIN", 0)
        step, count = _integer(env, "SLURM_ARRAY_TASK_STEP", 1), _integer(env, "SLURM_ARRAY_TASK_COUNT")
        if step < 1 or (task - low) % step or not 0 <= (task - low) // step < count:
            raise UserError(f"$SLURM_ARRAY_TASK_ID={task} is not one of the {count} tasks from {low} in steps of "
                            f"{step}; give --shard i/n")
        index = (task - low) // step
    if "RANK" in env or "WORLD_SIZE" in env:
        rank, world = _integer(env, "RANK"), _integer(env, "WORLD_SIZE")
        if world < 1 or not 0 <= rank < world:
            raise UserError(f"$RANK={rank} of $WORLD_SIZE={world}: need 0 <= RANK < WORLD_SIZE; give --shard i/n")
        index, count = index * world + rank, count * world
    return f"{index}/{count}"


def run_id(env: Mapping[str, str] = os.environ) -> str:
    """The launcher's job id that every shard of one run shares ("" for shards started by hand)."""
    return env.get("SLURM_ARRAY_JOB_ID") or env.get("TORCHELASTIC_RUN_ID") or ""


def record_shard(out: Path, shard: str, counts: Mapping[str, int], env: Mapping[str, str] = os.environ) -> str:
    """Append this shard's counts to ``<out>.shards.jsonl``; the line to print: this shard's counts, then
    the run's totals once every one of its shards has reported (each video counted once: it is listed by
    exactly one shard), else how many have."""
    log = sidecar(out, ".shards.jsonl")
    entry = {"shard": shard, "run": run_id(env), "host": socket.gethostname(), "pid": os.getpid(),
             "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **{k: counts[k] for k in COUNTED}}
    append_line(log, json.dumps(entry))
    n = int(shard.split("/")[1])
    latest: dict[str, dict] = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        seen = json.loads(line)
        if seen.get("run") == entry["run"] and seen.get("shard", "").endswith(f"/{n}"):
            latest[seen["shard"]] = seen
    mine = (f"shard {shard}: {counts['written']} written, {counts['failed']} failed, {counts['already_done']} "
            f"done before, of {counts['listed_in_shard']} listed")
    if len(latest) < n:
        return f"{mine}; {len(latest)} of {n} shards finished"
    total = {k: sum(s[k] for s in latest.values()) for k in COUNTED}
    return (f"{mine}; all {n} shards finished: {total['listed_in_shard']} videos, {total['written']} written, "
            f"{total['failed']} failed, {total['already_done']} done before ({log})")
