"""Convert the four MASN HDF5 feature files into a packed store (``masn/data/packed.py``, read with ``--packed``).

    python -m masn.data.pack --feat_dir data/TGIFQA --dataset tgif-qa --out data/TGIFQA/packed [--dtype float16]

Every video the four files all hold is copied whole (every frame; objects past a video's count as zeros,
as the reader pads them), every row checked finite on the way, so the store is marked checked and its reads
are not scanned again. Videos some file lacks are left out (read as missing, as from the HDF5 files).
Refused before anything is written: a non-empty ``--out``, unusable arrays (the training loader's checks).
A NaN / inf row, or a value beyond float16 with ``--dtype float16``, stops the copy and leaves nothing
behind. Arrays are written to temporary names and renamed, then their headers.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from engine.cli import CommandParser
from engine.errors import run_cli
from engine.packed import DTYPES, NONFINITE
from feat_script.stores import write_packed
from masn.data.features import LAYOUTS, ORDER, FeatureError, VideoFeatures, padded_tail, resolve_feature_files
from masn.data.packed import PackedVideoFeatures


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(prog="python -m masn.data.pack", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--feat_dir", type=Path, required=True,
                   help="folder of the four HDF5 feature files (in feat_r6_vsync2/ or vfeat/, or flat)")
    p.add_argument("--dataset", choices=tuple(LAYOUTS), required=True, help="names the four files")
    p.add_argument("--out", type=Path, required=True, help="a new or empty folder for the store")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="float16 stores half the bytes")
    return p


def require_empty(out: Path) -> None:
    """``--out`` must be new or an empty folder: nothing the user has there is replaced."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        held = ", ".join(sorted(p.name for p in out.iterdir())[:3]) if out.is_dir() else ""
        what = f"a folder holding {held}" if held else "a file"
        raise FeatureError(f"--out {out}: is {what}; nothing was written: choose a new or empty folder")


def padded(array: np.ndarray, name: str) -> np.ndarray:
    """One video's whole array with its objects padded to the reader's count (zeros past its own)."""
    tail = padded_tail(name)
    if array.shape[1:] == tail:
        return array
    out = np.zeros((len(array), *tail), array.dtype)
    out[:, :array.shape[1]] = array
    return out


def convert(feat_dir: Path, dataset: str, out: Path, dtype: str) -> tuple[int, int]:
    """Write the store; returns (videos packed, videos left out because some file lacks them)."""
    require_empty(out)
    features = VideoFeatures(resolve_feature_files(feat_dir, dataset), "", 1)
    try:
        keys, partial = features.stored_keys()
        if not keys:
            raise FeatureError(f"--feat_dir {feat_dir}: no video is in all four feature files; nothing to pack")
        _, bad = features.check_videos(keys)
        if bad:
            raise FeatureError(f"{len(bad)} video(s) have unusable features, the first: {bad[0]}; nothing was written")
        rows = sum(features.datasets(key)["res_avg"].shape[0] for key in keys)

        def videos(name: str) -> Iterator[tuple[str, np.ndarray]]:
            for key in keys:
                yield key, padded(features.datasets(key)[name][()], name)

        def refuse(name: str, key: str, why: str) -> FeatureError:
            fix = "extract it again" if why == NONFINITE else "convert with --dtype float32"
            return FeatureError(f"{features.label(name)}: video {key!r} ({name}) holds {why}; {fix}; "
                                "nothing was written")

        arrays = {name: (padded_tail(name), rows, videos(name)) for name in ORDER}
        with _removed_on_error(out):
            write_packed(out, arrays, dtype, refuse)
    finally:
        features.close()
    PackedVideoFeatures(out, "", 1)  # the reader's own header checks
    return len(keys), partial


@contextlib.contextmanager
def _removed_on_error(out: Path) -> Iterator[None]:
    """A folder this run creates is removed again if the copy stops (it is empty then: temporaries go)."""
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()
        raise


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_command(argv)
    packed, partial = convert(args.feat_dir, args.dataset, args.out, args.dtype)
    print(f"packed {packed} videos ({args.dtype}) into {args.out}"
          + (f"; {partial} video(s) some file lacks were left out (read as missing)" if partial else ""))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
