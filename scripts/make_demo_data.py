"""Write the synthetic demo data sets (TGIF-QA and MUSIC-AVQA formats) under ``data/demo/``.

The data are generated, not real: small sets in exactly the real formats, with a planted
signal that a model can only pick up from the video (and audio) features.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from avst.data.synthetic import make_demo as make_avst_demo
from masn.data.synthetic import make_demo as make_masn_demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("data/demo"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=["masn", "avst"], default=None)
    args = parser.parse_args(argv)
    if args.only in (None, "masn"):
        print(make_masn_demo(args.out / "tgif-qa", seed=args.seed))
    if args.only in (None, "avst"):
        print(make_avst_demo(args.out / "music-avqa", seed=args.seed))


if __name__ == "__main__":
    main()
