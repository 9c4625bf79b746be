"""Write the synthetic demo data sets (TGIF-QA and MUSIC-AVQA formats) under ``data/demo/`` (demos/data.py)."""
from __future__ import annotations

from pathlib import Path

from demos.data import make
from engine.cli import CommandParser, seed_int
from engine.errors import run_cli


def run(argv: list[str] | None) -> None:
    parser = CommandParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("data/demo"))
    parser.add_argument("--seed", type=seed_int, default=0)
    parser.add_argument("--only", choices=["masn", "avst"], default=None)
    args = parser.parse_command(argv)
    make(args.out, args.seed, args.only)


def main(argv: list[str] | None = None) -> int:
    return run_cli(run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
