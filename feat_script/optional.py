"""Optional dependencies, imported when first needed, so ``feat_script`` imports without them."""
from __future__ import annotations

import importlib
from types import ModuleType

from engine.errors import UserError

EXTRAS = {"open_clip": "clip", "timm": "clip"}  # module -> the pyproject extra that installs it


def require(module: str) -> ModuleType:
    """``import module``, or one line saying which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise UserError(f"{module} is not installed (needed here: {err}); install it with "
                        f"pip install -e '.[{EXTRAS[module]}]'") from err
