"""Pack per-video AVST features into one memory-mappable array per kind plus an index.

``<out>/vggish.npy`` [rows, 128] and ``<out>/res18_14x14.npy`` [rows, 512, 14, 14] hold every video's rows
one after the other; ``<out>/<kind>.index.json`` gives each video's row range (feat_script's ``packed-v1``
layout, the one ``extract_vggish`` / ``extract_14x14 --store packed`` write). Videos with fewer than 60
rows are read with their last row repeated. ``--dtype float16`` halves the size (the loaders cast back to float32).
Every row is checked finite while it is copied (the store is marked checked: its reads are not scanned again). Arrays
are written to a temporary name and renamed, so an interrupted run leaves no half-written store.

    python scripts/pack_avst_features.py --label_json data/json/avqa-train.json data/json/avqa-val.json \
        data/json/avqa-test.json --audio_dir data/feats/vggish --video_res14x14_dir data/feats/res18_14x14 \
        --out data/feats/avst_packed [--dtype float16]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from avst.data.annotations import load_records, video_list
from avst.data.features import NpyFeatures
from avst.data.packing import pack
from engine.cli import CommandParser
from engine.errors import run_cli
from engine.packed import DTYPES


def main(argv: list[str] | None = None) -> int:
    p = CommandParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--label_json", nargs="+", required=True, help="JSON files whose videos to pack")
    p.add_argument("--audio_dir", required=True)
    p.add_argument("--video_res14x14_dir", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="float16 stores half the bytes")
    args = p.parse_command(argv)
    videos = list(dict.fromkeys(v for path in args.label_json for v in video_list(load_records(path))))
    sources = {"audio": NpyFeatures(args.audio_dir, "audio"),
               "visual": NpyFeatures(args.video_res14x14_dir, "visual")}
    short = pack(videos, sources, args.out, np.dtype(args.dtype))
    print(f"packed {len(videos)} videos into {args.out} ({len(short)} shorter than 60 rows, padded with "
          "their last row)")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
