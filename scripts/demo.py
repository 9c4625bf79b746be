"""``make demo``: generate the synthetic data, train and test every model on it, print results.

Everything here runs on generated data with randomly initialised backbones: the numbers show
that each stage works and learns the planted signal, not the papers' results.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from demos.avst import run as run_avst
from demos.data import make as make_demo_data
from demos.folders import fresh_folder
from demos.masn import run as run_masn
from engine.cli import CommandParser, accept_both_spellings
from engine.errors import run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/demo"), help="where the synthetic data sets go")
    parser.add_argument("--runs", type=Path, default=Path("runs/demo"),
                        help="where the runs go; a folder an earlier demo wrote is replaced, any other is refused")
    parser.add_argument("--only", choices=["masn", "avst"], default=None)
    parser.add_argument("--quick", action="store_true", help="one epoch per model: smoke size (the test suite's)")
    return accept_both_spellings(parser)


def run(args: argparse.Namespace) -> None:
    print("=" * 78)
    print("DEMO on SYNTHETIC data (generated, not TGIF-QA / MUSIC-AVQA); random initialisation.")
    print("=" * 78)
    start = time.time()
    for part in ("masn", "avst"):  # refused before any data is written when a user's folder is in the way
        if args.only in (None, part):
            fresh_folder(args.runs / part, "--runs")
    make_demo_data(args.data, only=args.only)
    if args.only in (None, "masn"):
        run_masn(args.data / "tgif-qa", args.runs / "masn", quick=args.quick)
    if args.only in (None, "avst"):
        run_avst(args.data / "music-avqa", args.runs / "avst", quick=args.quick)
    print(f"demo finished in {time.time() - start:.0f} s; runs under {args.runs}/")


def main(argv: list[str] | None = None) -> int:
    return run_cli(lambda: run(build_parser().parse_command(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
