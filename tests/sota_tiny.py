"""The skip rule for the tests of the ``clip`` extra: without open_clip or timm they skip with one line,
except in CI (CI=true), where they run and fail. Small network configurations: benchkit.small_sota."""
from __future__ import annotations

import importlib.util
import os

import pytest


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):  # a module blocked in sys.modules
        return True


_MISSING = [m for m in ("open_clip", "timm") if _missing(m)]
needs_clip_extra = pytest.mark.skipif(
    bool(_MISSING) and os.environ.get("CI") != "true",
    reason=f"{', '.join(_MISSING)} not installed (pip install -e '.[clip]')",
)
