"""Check a data set before a long run: ``check_data.py {tgif-qa,msvd-qa,msrvtt-qa,music-avqa} ...``.

Exit status is non-zero on any problem; ``--json`` prints one machine-readable object.
"""
from __future__ import annotations

import sys

from engine.errors import run_cli


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    datasets = ("tgif-qa", "msvd-qa", "msrvtt-qa", "music-avqa")
    if not argv or argv[0] not in datasets:
        print(f"usage: check_data.py {{{','.join(datasets)}}} [options]  (-h after the name for options)")
        return 2
    if argv[0] == "music-avqa":
        from avst.data.check import main as check
    else:
        from masn.data.check import main as check
    return check(argv)


if __name__ == "__main__":
    sys.exit(run_cli(main))
