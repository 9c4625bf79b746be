"""Ours against a reference, timed alternately in one process so that load changes on a shared machine
hit both alike; medians of wall and process-CPU time (the steadier figure on a shared machine)."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

CPU = torch.device("cpu")


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so a timer sees the whole step."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(steps: dict[str, Callable[[], object]], repeats: int, device: torch.device = CPU,
                warmup: int = 1) -> dict[str, dict[str, float]]:
    """``{"wall": {name: median s}, "cpu": {name: median s}}`` over ``repeats`` rounds of every step in turn,
    after ``warmup`` untimed rounds."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    times: dict[str, dict[str, list[float]]] = {clock: {name: [] for name in steps} for clock in ("wall", "cpu")}
    for _ in range(repeats):
        for name, step in steps.items():
            synchronize(device)
            wall, cpu = time.perf_counter(), time.process_time()
            step()
            synchronize(device)
            times["wall"][name].append(time.perf_counter() - wall)
            times["cpu"][name].append(time.process_time() - cpu)
    return {clock: {name: statistics.median(t) for name, t in per.items()} for clock, per in times.items()}


def ratio_lines(medians: dict[str, dict[str, float]], reference: str = "original", ours: str = "ours") -> list[str]:
    """One line per clock: both medians in ms and reference / ours (above 1: ours is faster)."""
    return [f"  {clock:4s}: {reference} {m[reference] * 1e3:8.1f} ms, {ours} {m[ours] * 1e3:8.1f} ms, "
            f"{reference} / {ours} {m[reference] / m[ours]:.2f}x" for clock, m in medians.items()]
