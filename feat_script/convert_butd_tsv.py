"""Bottom-up-attention TSV -> MASN's per-video ``tgif_btup_f_obj10.hdf5``.

    python -m feat_script.convert_butd_tsv tgifqa_1.tsv.0 tgifqa_1.tsv.1 \\
        --out data/tgif-qa/feats/tgif_btup_f_obj10.hdf5 --csv_dir data/tgif-qa/csv

The input is what peteanderson80/bottom-up-attention's ``generate_tsv.py`` writes: one line per
frame, tab separated, ``image_id image_w image_h num_boxes boxes features`` with boxes [N, 4]
and features [N, 2048] as base64 float32. ``image_id`` is ``<gif_name>/<frame_name>``.

The output is the layout MASN's loader reads (and the step the original never shipped):
``image_features/<key>`` [T, 10, 2048] and ``spatial_features/<key>`` [T, 10, 6], float32, with
frames in natural order of their names. Per frame the **first 10 boxes in file order** are kept
(generate_tsv.py writes the boxes above its confidence threshold in proposal order, or the top
boxes by confidence when too few pass) and missing ones are zero rows. Keys are the TGIF ``key``
of each GIF, read from the TGIF-QA CSVs given with ``--csv_dir`` (GIFs absent from them are
skipped and counted), or the gif_name as-is without it. A repeated image_id keeps its first line,
as in the original converter.

Streaming: lines are decoded one at a time into a staging HDF5 beside the output, then grouped
per video; the output is written under a temporary name and renamed, so a failure leaves nothing.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import os
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from engine.cli import CommandParser, accept_both_spellings
from engine.errors import UserError, run_cli
from feat_script.base import merge_id_maps
from feat_script.boxes import OBJECTS_PER_FRAME, natural_key, pad_rows, spatial_features
from feat_script.stores import atomic_file

FIELDS = ("image_id", "image_w", "image_h", "num_boxes", "boxes", "features")
FEATURE_DIM = 2048


class TsvError(UserError, ValueError):
    """A malformed line, reported with its file and line number."""


def _decode(field: str, count: int, width: int, where: str, name: str) -> np.ndarray:
    try:
        raw = base64.b64decode(field, validate=True)
    except (binascii.Error, ValueError) as err:
        raise TsvError(f"{where}: field '{name}' is not valid base64 ({err})") from err
    if len(raw) != count * width * 4:
        raise TsvError(f"{where}: field '{name}' holds {len(raw) // 4} float32 values, "
                       f"expected num_boxes * {width} = {count * width}")
    return np.frombuffer(raw, dtype=np.float32).reshape(count, width)


def read_tsv_rows(path: Path) -> Iterator[tuple[str, str, np.ndarray, np.ndarray]]:
    """Yield ``(gif_name, frame_name, features [10, 2048], spatial [10, 6])`` line by line."""
    with open(path, "rb") as tsv:
        for number, raw in enumerate(tsv, start=1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("ascii")
            except UnicodeDecodeError as err:
                raise TsvError(f"{where}: not an ASCII TSV line ({err.reason} at byte {err.start}); "
                               "give the TSV files of bottom-up-attention's generate_tsv.py") from None
            parts = line.rstrip("\r\n").split("\t")
            if parts == [""]:
                continue
            if len(parts) != len(FIELDS):
                raise TsvError(f"{where}: {len(parts)} tab-separated fields, expected {len(FIELDS)} {FIELDS}")
            image_id, width, height, count, boxes, feats = parts
            if "/" not in image_id:
                raise TsvError(f"{where}: image_id '{image_id}' is not <gif_name>/<frame_name>")
            try:
                width, height, count = float(width), float(height), int(count)
            except ValueError as err:
                raise TsvError(f"{where}: image_w, image_h, num_boxes must be numbers ({err})") from err
            if width <= 0 or height <= 0 or count < 0:
                raise TsvError(f"{where}: bad image size {width}x{height} or num_boxes {count}")
            boxes = _decode(boxes, count, 4, where, "boxes")
            feats = _decode(feats, count, FEATURE_DIM, where, "features")
            gif_name, frame_name = image_id.rsplit("/", 1)
            yield gif_name, frame_name, pad_rows(feats), pad_rows(spatial_features(boxes, width, height))


def read_keys(csv_dir: Path) -> dict[str, str]:
    """gif_name -> str(key) from every TGIF-QA ``*.csv`` (tab separated) in ``csv_dir``."""
    files = sorted(csv_dir.glob("*.csv"))
    if not files:
        raise TsvError(f"--csv_dir {csv_dir}: no TGIF-QA *.csv files there")
    return merge_id_maps(files)


def _stage(tsv_paths: list[Path], staging: h5py.File) -> dict[str, list[tuple[str, int]]]:
    """Append every frame to flat staging arrays; return gif_name -> [(frame_name, row)]."""
    feats = staging.create_dataset("features", (0, OBJECTS_PER_FRAME, FEATURE_DIM), "f4",
                                   maxshape=(None, OBJECTS_PER_FRAME, FEATURE_DIM),
                                   chunks=(1, OBJECTS_PER_FRAME, FEATURE_DIM))
    spatial = staging.create_dataset("spatial", (0, OBJECTS_PER_FRAME, 6), "f4",
                                     maxshape=(None, OBJECTS_PER_FRAME, 6), chunks=(64, OBJECTS_PER_FRAME, 6))
    rows: dict[str, list[tuple[str, int]]] = defaultdict(list)
    seen: set[tuple[str, str]] = set()
    buffer: list[tuple[np.ndarray, np.ndarray]] = []

    def flush() -> None:
        if buffer:
            start = feats.shape[0]
            for ds in (feats, spatial):
                ds.resize(start + len(buffer), axis=0)
            feats[start:] = np.stack([f for f, _ in buffer])
            spatial[start:] = np.stack([s for _, s in buffer])
            buffer.clear()

    count = 0
    for path in tsv_paths:
        for gif, frame, feat, spat in tqdm(read_tsv_rows(path), desc=path.name, unit="frame", disable=None):
            if (gif, frame) in seen:
                continue
            seen.add((gif, frame))
            rows[gif].append((frame, count))
            buffer.append((feat, spat))
            count += 1
            if len(buffer) == 256:
                flush()
    flush()
    return rows


def _take_rows(dataset: h5py.Dataset, rows: list[int]) -> np.ndarray:
    """``dataset[rows]`` in the given order (h5py reads only increasing indices)."""
    index = np.asarray(rows)
    order = np.argsort(index)
    data = dataset[index[order]]
    result = np.empty_like(data)
    result[order] = data
    return result


def convert(tsv_paths: list[Path], out: Path, keys: dict[str, str] | None = None) -> dict[str, int]:
    """Write ``out`` atomically; return counts of videos, frames and skipped GIFs."""
    for path in tsv_paths:
        if not path.is_file():
            raise FileNotFoundError(f"TSV not found: {path}")
    if out.is_dir():
        raise TsvError(f"--out {out}: is a folder; give the HDF5 file to write")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, staging_path = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".staging")
    os.close(fd)
    stats = {"videos": 0, "frames": 0, "skipped_gifs": 0}
    try:
        with h5py.File(staging_path, "w") as staging, atomic_file(out) as tmp_out:
            rows = _stage(tsv_paths, staging)
            with h5py.File(tmp_out, "w") as dst:
                image_group = dst.create_group("image_features")
                spatial_group = dst.create_group("spatial_features")
                for gif in sorted(rows):
                    key = gif if keys is None else keys.get(gif)
                    if key is None:
                        stats["skipped_gifs"] += 1
                        continue
                    if key in image_group:
                        raise TsvError(f"--csv_dir: two GIFs map to the HDF5 key {key} (second: {gif}); "
                                       "fix the CSVs")
                    ordered = [row for _, row in sorted(rows[gif], key=lambda fr: natural_key(fr[0]))]
                    image_group[key] = _take_rows(staging["features"], ordered)
                    spatial_group[key] = _take_rows(staging["spatial"], ordered)
                    stats["videos"] += 1
                    stats["frames"] += len(ordered)
    finally:
        os.remove(staging_path)
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tsv", nargs="+", type=Path, help="bottom-up-attention TSV shards")
    parser.add_argument("--out", type=Path, required=True, help="output HDF5 (tgif_btup_f_obj10.hdf5)")
    parser.add_argument("--csv-dir", type=Path, help="TGIF-QA CSVs: key the output by their 'key' column")
    args = accept_both_spellings(parser).parse_command(argv)
    keys = read_keys(args.csv_dir) if args.csv_dir else None
    stats = convert(args.tsv, args.out, keys)
    print(f"wrote {args.out}: {stats['videos']} videos, {stats['frames']} frames, "
          f"{stats['skipped_gifs']} GIFs not in the CSVs skipped")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
