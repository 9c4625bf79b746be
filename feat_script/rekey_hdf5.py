"""Rename the per-video entries of a MASN HDF5 from TGIF gif names to TGIF-QA ``key`` values.

    python -m feat_script.rekey_hdf5 data/tgif-qa/feats/feat_r6_vsync2/*.hdf5 --csv_dir data/tgif-qa/csv

The extractors name each entry after the video file (``tumblr_xxx``), while MASN's loader looks up
``str(key)`` from the TGIF-QA CSVs. This rewrites datasets at the top level and one group level
down (``image_features/<id>``, ``spatial_features/<id>``) using the gif_name -> key mapping of
every ``*.csv`` in ``--csv_dir``; entries that already are keys are kept, unknown names are
dropped and counted. Each file is rewritten under a temporary name and renamed (atomic).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import h5py

from engine.cli import CommandParser, accept_both_spellings
from engine.errors import run_cli
from feat_script.convert_butd_tsv import TsvError, read_keys
from feat_script.stores import atomic_file


def _copy_renamed(src: h5py.Group, dst: h5py.Group, keys: dict[str, str], stats: dict[str, int]) -> None:
    known = set(keys.values())
    for name, item in src.items():
        if isinstance(item, h5py.Group):
            _copy_renamed(item, dst.create_group(name), keys, stats)
            continue
        new = name if name in known else keys.get(name)
        if new is None:
            stats["dropped"] += 1
            continue
        if new in dst:
            raise TsvError(f"{src.file.filename}: two entries map to the key {new} (one is {name})")
        src.copy(item, dst, name=new)
        stats["renamed" if new != name else "kept"] += 1


def rekey(path: Path, keys: dict[str, str], out: Path | None = None) -> dict[str, int]:
    """Write ``out`` (default: replace ``path``) with entries renamed to TGIF keys."""
    stats = {"renamed": 0, "kept": 0, "dropped": 0}
    with atomic_file(out or path) as tmp:
        with h5py.File(path, "r") as src, h5py.File(tmp, "w") as dst:
            _copy_renamed(src, dst, keys, stats)
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path, help="HDF5 files written by the MASN extractors")
    parser.add_argument("--csv-dir", type=Path, required=True, help="folder of the TGIF-QA *.csv files")
    args = accept_both_spellings(parser).parse_command(argv)
    keys = read_keys(args.csv_dir)
    for path in args.files:
        if not path.is_file():
            parser.exit(2, f"error: {path}: no such file\n")
        stats = rekey(path, keys)
        print(f"{path}: {stats['renamed']} renamed, {stats['kept']} already keys, "
              f"{stats['dropped']} not in the CSVs dropped")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
