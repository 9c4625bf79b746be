"""``python -m feat_script NAME [flags]``: run the extractor registered as NAME (``-h`` after it for its flags).

The same as ``python feat_script/extract_<name>.py [flags]``; NAME is one of ``feat_script.registry.EXTRACTORS``.
``python -m feat_script recipe NAME ...`` writes a model's whole feature set (``feat_script.run_recipe``).
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
        print("       python -m feat_script recipe {qa-tiger,tspm} --videos DIR --out ROOT [flags]")
        return 0 if argv else 2
    if argv[0] == "recipe":
        from feat_script.run_recipe import cli as recipe_cli

        return recipe_cli(argv[1:])
    return run_cli(lambda: main(extractor_class(argv[0]), argv[1:]))

if __name__ == "__main__":
    sys.exit(cli())
