"""Write the synthetic demo data sets (TGIF-QA and MUSIC-AVQA formats) under ``data/demo/`` (demos/data.py)."""
from __future__ import annotations

import argparse
from pathlib import Path

from demos.data import make


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("data/demo"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=["masn", "avst"], default=None)
    args = parser.parse_args(argv)
    make(args.out, args.seed, args.only)


if __name__ == "__main__":
    main()
