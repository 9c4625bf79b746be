"""Bounded memory for any video length: a video's outputs past a bound wait in a spill file, block
by block, and the stores write them block by block, with the same bytes as the in-memory path and
the same crash safety (a kill mid-spill leaves nothing counted done; the rerun is identical)."""
from __future__ import annotations

import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from feat_script import batching, streams
from feat_script.base import Extractor, main
from feat_script.batching import RowBatcher
from feat_script.decode import read_frames
from feat_script.preprocess import resize_frames
from feat_script.stores import NpyDirStore, PackedStore
from feat_script.synthetic_video import make_pattern_video

ROW_SHAPE = (8, 4, 4)  # 512 bytes a row
TINY = {"batching.SPILL_BYTES": 1000, "streams.BLOCK_BYTES": 1500}  # spill every 2 rows, read 2-row blocks


class Tiny(Extractor):
    """1-fps frames at 16x16, a random conv net with a map output: the real loop in a second."""

    name = "tinymap"

    def load(self, video: Path) -> dict[str, np.ndarray]:
        return {"frames": resize_frames(read_frames(video, rate=1), 16, 16).astype(np.float32)}

    def build_model(self) -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.AdaptiveAvgPool2d(4))

    def forward(self, model: torch.nn.Module, chunk: torch.Tensor) -> torch.Tensor:
        return model(chunk.permute(0, 3, 1, 2))

    def row_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"": ROW_SHAPE}


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("spillvids")
    for name, seconds in (("a", 3), ("b", 5), ("c", 2)):
        make_pattern_video(folder / f"{name}.mp4", seconds=seconds, audio=None)
    return folder


def cli(videos: Path, out: Path, store: str) -> int:
    return main(Tiny, ["--quiet", "--workers", "0", "--random-init", "--exact", "--batch-size", "2",
                       "--store", store, "--videos", str(videos), "--out", str(out)])


def outputs(out: Path) -> dict[str, bytes]:
    """Every output file's bytes (not the manifest, ledger or failures list)."""
    files = [out] if out.is_file() else sorted(p for p in out.rglob("*") if p.is_file())
    return {str(p.relative_to(out.parent)): p.read_bytes() for p in files}


def force_spill(monkeypatch) -> list[int]:
    """Tiny bounds; returns the list the spill appends are counted in."""
    for name, value in TINY.items():
        module, attr = name.split(".")
        monkeypatch.setattr({"batching": batching, "streams": streams}[module], attr, value)
    appends: list[int] = []
    append = streams.Spill.append
    monkeypatch.setattr(streams.Spill, "append", lambda self, block: (appends.append(len(block)), append(self, block)))
    return appends


@pytest.fixture(scope="module")
def reference(videos, tmp_path_factory) -> dict[str, np.ndarray]:
    """The arrays of the in-memory path (``np.save`` of whole arrays, nothing spilled)."""
    out = tmp_path_factory.mktemp("reference") / "npy"
    assert cli(videos, out, "npy") == 0
    return {p.stem: np.load(p) for p in out.glob("*.npy")}


def read_all(out: Path, store: str, ids) -> dict[str, np.ndarray]:
    if store == "npy":
        return {vid: np.load(out / f"{vid}.npy") for vid in ids}
    if store == "packed":
        return {vid: np.asarray(PackedStore(out, default_kind=Tiny.name).read(vid)) for vid in ids}
    import h5py

    with h5py.File(out) as f:
        return {vid: f[vid][()] for vid in ids}


@pytest.mark.parametrize("store", ["npy", "hdf5", "packed"])
def test_spilled_outputs_are_byte_identical_to_in_memory(store, videos, reference, tmp_path, monkeypatch):
    suffix = ".h5" if store == "hdf5" else ""
    assert cli(videos, tmp_path / f"mem{suffix}", store) == 0
    expected = outputs(tmp_path / f"mem{suffix}")
    appends = force_spill(monkeypatch)
    assert cli(videos, tmp_path / f"spill{suffix}", store) == 0
    assert sum(appends) == sum(len(read_frames(v, rate=1)) for v in videos.iterdir())  # every row spilled
    got = outputs(tmp_path / f"spill{suffix}")
    assert [k.replace("spill", "mem", 1) for k in got] == list(expected)
    assert list(got.values()) == list(expected.values())
    assert not list(tmp_path.rglob("*.tmp*"))  # the spill files are gone
    spilled = read_all(tmp_path / f"spill{suffix}", store, reference)
    assert all(np.array_equal(spilled[vid], reference[vid]) for vid in reference)


def _held_peak(rows: int, tmp_path: Path) -> int:
    """Peak traced bytes while ``rows`` rows of 16 KB outputs go through the batcher and the npy store."""
    def forward(chunk: torch.Tensor) -> torch.Tensor:  # numpy-backed outputs: tracemalloc sees them
        return torch.from_numpy(np.repeat(chunk.numpy()[:, :1], 4096, axis=1).astype(np.float32))

    def blocks():
        for start in range(0, rows, 4):
            yield torch.arange(start, min(rows, start + 4), dtype=torch.float32)[:, None]

    store = NpyDirStore(tmp_path / f"out{rows}")
    tracemalloc.start()
    batcher = RowBatcher(forward, 4, torch.device("cpu"), spill=store.spill_dir, spill_bytes=1 << 18)
    [(_, out)] = batcher.add("v", blocks()) + batcher.finish()
    store.write("v", {"": out})
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert np.array_equal(store.read("v")[:, 0], np.arange(rows, dtype=np.float32))
    return peak


def test_memory_held_for_outputs_does_not_grow_with_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(streams, "BLOCK_BYTES", 1 << 18)
    short, long = _held_peak(100, tmp_path), _held_peak(600, tmp_path)  # 1.6 MB and 9.8 MB of output
    assert long < 1.2 * short, (short, long)
    assert long < 2 << 20


CHILD = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from feat_script import batching, streams
from test_feat_spill import Tiny, cli
from pathlib import Path
batching.SPILL_BYTES, streams.BLOCK_BYTES = 1000, 1500
append, calls = streams.Spill.append, []
def append_then_die(self, block):
    append(self, block)
    calls.append(1)
    if len(calls) == {kill_at}:
        os.kill(os.getpid(), signal.SIGKILL)
streams.Spill.append = append_then_die
cli(Path(sys.argv[1]), Path(sys.argv[2]), "npy")
"""


@pytest.mark.slow
def test_kill_mid_spill_leaves_nothing_done_and_the_rerun_is_identical(videos, tmp_path):
    assert cli(videos, tmp_path / "clean", "npy") == 0
    child = tmp_path / "child.py"
    child.write_text(CHILD.format(tests=str(Path(__file__).parent), kill_at=4))  # in video b's spill
    proc = subprocess.run([sys.executable, str(child), str(videos), str(tmp_path / "out")], capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert list((tmp_path / "out").glob(".spill*.tmp"))  # killed with a spill file in place
    done = NpyDirStore(tmp_path / "out", ("",), {"": ROW_SHAPE}).done()
    assert done <= {"a"}  # only a video written whole before the kill counts
    assert not list((tmp_path / "out").glob(".spill*"))  # the dead run's spill file is cleaned up
    assert cli(videos, tmp_path / "out", "npy") == 0
    got, expected = outputs(tmp_path / "out"), outputs(tmp_path / "clean")
    assert [k.replace("out", "clean", 1) for k in got] == list(expected)
    assert list(got.values()) == list(expected.values())
