"""Model selection: which epoch's weights a run keeps. One rule for ``best.pt`` and every report.

Ties go to the LATER epoch (the original AVST's ``if acc >= best``): of several epochs with the same
best value, the last one is selected. Non-finite values are never selected.
"""
from __future__ import annotations

import math


def improves(value: float, best: float | None, mode: str) -> bool:
    """Whether ``value`` replaces ``best`` (``mode`` "max" or "min"; an equal value replaces it)."""
    if mode not in ("max", "min"):
        raise ValueError(f"select_mode must be 'max' or 'min', not {mode!r}")
    if not math.isfinite(value):
        return False
    return best is None or (value >= best if mode == "max" else value <= best)


def select_epoch(history: list[dict], split: str, metric: str, mode: str) -> dict | None:
    """The history entry selected on ``history[i][split][metric]``; None when no entry qualifies."""
    chosen, best = None, None
    for entry in history:
        value = (entry.get(split) or {}).get(metric)
        if value is not None and improves(value, best, mode):
            chosen, best = entry, value
    return chosen
