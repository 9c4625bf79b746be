"""``python -m feat_script NAME [flags]``: run the extractor registered as NAME (``-h`` after it for its flags).

The same as ``python feat_script/extract_<name>.py [flags]``; NAME is one of ``feat_script.registry.EXTRACTORS``.
"""
from __future__ import annotations

import sys

from engine.errors import run_cli
from feat_script.base import main
from feat_script.registry import EXTRACTORS, extractor_class


def cli(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: python -m feat_script {{{','.join(EXTRACTORS)}}} [flags]  (-h after the name for its flags)")
        return 0 if argv else 2
    return run_cli(lambda: main(extractor_class(argv[0]), argv[1:]))

if __name__ == "__main__":
    sys.exit(cli())
