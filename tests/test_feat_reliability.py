"""Extractors lose nothing, mix nothing and fail in one line: foreign files in --out, resumes with
other settings, seeded random weights, colliding ids, bad flags and files, a full disk."""
from __future__ import annotations

import errno
import os
import random
import subprocess
import sys
import wave
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from feat_script.base import Extractor, main
from feat_script.decode import read_frames
from feat_script.extract_audio import Audio
from feat_script.extract_frames import Frames
from feat_script.manifest import read_failures, read_manifest
from feat_script.synthetic_video import make_pattern_video
from feat_script.weights import build_loaded


class Mean(Extractor):
    """Mean colour of each 1-fps frame through a random linear layer: the real pipeline in a second."""

    name = "mean"

    def load(self, video: Path) -> dict[str, np.ndarray]:
        frames = read_frames(video, rate=1)
        return {"frames": frames.reshape(len(frames), -1, 3).mean(1, dtype=np.float32)}

    def build_model(self) -> torch.nn.Module:
        self.weights_path = self.config.weights
        return build_loaded(lambda: torch.nn.Linear(3, 4), self.weights_path, "mean")

    def row_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"": (4,)}


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    for name in ("a", "b"):
        make_pattern_video(folder / f"{name}.mp4", seconds=2)
    return folder


def cli(cls: type[Extractor], videos: Path, out: Path, *flags: str) -> int:
    return main(cls, ["--quiet", "--workers", "0", "--videos", str(videos), "--out", str(out), *flags])


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every entry under ``root`` with its bytes (None for folders)."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def one_error_line(capsys, *names: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    for name in names:
        assert str(name) in err[0], err[0]
    return err[0]


def _wav_8k(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\1\0" * 800)


def _foreign(kind: str, out: Path) -> None:
    """What a user might keep where --out points: entries the old stores deleted or overwrote."""
    if kind == "npy":
        out.mkdir()
        np.save(out / "a.npy", np.zeros((2, 7), np.float32))  # an id of ours, another shape
        np.save(out / "zz.npy", np.zeros(3))
        (out / "notes.txt").write_text("mine")
    elif kind == "packed":
        out.mkdir()
        np.save(out / "mean.npy", np.ones((5, 4), np.float32))
        (out / "notes.txt").write_text("mine")
    elif kind == "hdf5":
        with h5py.File(out, "w") as f:
            f["a"] = np.zeros((1, 2))
            f["mine"] = np.arange(3)
    elif kind == "frames":
        (out / "a").mkdir(parents=True)  # a folder without a valid last JPEG
        (out / "a" / "notes.txt").write_text("mine")
        (out / "holiday").mkdir()
    elif kind == "wav":
        _wav_8k(out / "a.wav")  # not 16 kHz
        _wav_8k(out / "other.wav")


KINDS = {"npy": (Mean, ["--random-init"]), "packed": (Mean, ["--random-init", "--store", "packed"]),
         "hdf5": (Mean, ["--random-init", "--store", "hdf5"]), "frames": (Frames, []), "wav": (Audio, [])}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_foreign_entries_in_out_are_refused_and_kept(kind, tmp_path, videos, capsys):
    out = tmp_path / ("out.h5" if kind == "hdf5" else "out")
    _foreign(kind, out)
    before = snapshot(tmp_path)
    cls, flags = KINDS[kind]
    assert cli(cls, videos, out, *flags) == 2
    one_error_line(capsys, out, "nothing was touched")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_allow_foreign_writes_beside_them_and_lists_the_clash(kind, tmp_path, videos):
    out = tmp_path / ("out.h5" if kind == "hdf5" else "out")
    _foreign(kind, out)
    foreign = {k: v for k, v in snapshot(out.parent).items() if not k.startswith("out.")} \
        if kind != "hdf5" else None
    cls, flags = KINDS[kind]
    if kind == "packed":  # its arrays would be rewritten: refused even with the flag
        before = snapshot(tmp_path)
        assert cli(cls, videos, out, *flags, "--allow-foreign") == 2
        assert snapshot(tmp_path) == before
        return
    assert cli(cls, videos, out, *flags, "--allow-foreign") == 1  # the clash is a failure
    if kind == "hdf5":
        with h5py.File(out) as f:
            np.testing.assert_array_equal(f["mine"][()], np.arange(3))
            np.testing.assert_array_equal(f["a"][()], np.zeros((1, 2)))
            assert f["b"].shape[1] == 4
    else:
        after = snapshot(out.parent)
        assert {k: after.get(k) for k in foreign} == foreign  # every foreign byte is still there
    assert [f["video_id"] for f in read_failures(out)] == ["a"]
    # a second run resumes over its own outputs and still leaves the foreign ones alone
    assert cli(cls, videos, out, *flags, "--allow-foreign") == 1  # the clash is a failure
    if kind != "hdf5":
        after = snapshot(out.parent)
        assert {k: after.get(k) for k in foreign} == foreign


def test_resume_with_other_settings_is_refused_and_lists_them(tmp_path, videos, capsys):
    out = tmp_path / "frames"
    assert cli(Frames, videos, out) == 0
    before = snapshot(tmp_path)
    assert cli(Frames, videos, out, "--jpeg-quality", "90") == 2
    line = one_error_line(capsys, out, "sampling.jpeg_quality: 75 -> 90")
    assert "mode" not in line
    assert snapshot(tmp_path) == before
    assert cli(Frames, videos, out) == 0  # the same settings resume


def test_resume_with_other_weights_is_refused(tmp_path, videos, capsys):
    for seed in (0, 1):
        torch.manual_seed(seed)
        torch.save(torch.nn.Linear(3, 4).state_dict(), tmp_path / f"w{seed}.pt")
    out = tmp_path / "feats"
    assert cli(Mean, videos, out, "--weights", str(tmp_path / "w0.pt")) == 0
    assert cli(Mean, videos, out, "--weights", str(tmp_path / "w1.pt")) == 2
    one_error_line(capsys, out, "weights.sha256")
    assert cli(Mean, videos, out, "--random-init") == 2
    one_error_line(capsys, "weights.random_init_seed")


def test_random_init_is_seeded_so_a_resumed_run_uses_the_same_model(tmp_path, videos, capsys):
    one = tmp_path / "one"
    one.mkdir()
    os.symlink(videos / "a.mp4", one / "a.mp4")
    resumed, straight = tmp_path / "resumed", tmp_path / "straight"
    torch.manual_seed(123)  # whatever the state before, the run draws the weights from --seed
    assert cli(Mean, one, resumed, "--random-init") == 0
    assert cli(Mean, videos, resumed, "--random-init") == 0
    assert cli(Mean, videos, straight, "--random-init") == 0
    for vid in ("a", "b"):
        np.testing.assert_array_equal(np.load(resumed / f"{vid}.npy"), np.load(straight / f"{vid}.npy"))
    assert read_manifest(resumed)["settings"]["weights"] == {"random_init_seed": 0}
    assert cli(Mean, videos, resumed, "--random-init", "--seed", "1") == 2
    one_error_line(capsys, "random_init_seed: 0 -> 1")


def test_random_networks_built_in_two_threads_at_once_are_the_seeded_ones():
    """Each build seeds the process's one generator and restores it: two at once (as the answerers build)
    would interleave, and the weights would depend on timing."""
    from concurrent.futures import ThreadPoolExecutor

    from feat_script.recipes import AVST, build

    def pair():
        common = {"random_init": True, "device": "cpu", "rows": AVST.rows}
        return [build(AVST.streams[k], **common) for k in ("audio", "visual")]

    alone = [dict(x.ready()[0].state_dict()) for x in pair()]
    for _ in range(3):
        with ThreadPoolExecutor(2) as pool:
            together = [f.result()[0].state_dict() for f in [pool.submit(x.ready) for x in pair()]]
        for one, other in zip(alone, together):
            assert all(torch.equal(one[k], other[k]) for k in one)


@pytest.mark.parametrize("name", [".hidden.mp4", "image_features.mp4"])
def test_ids_that_cannot_name_an_output_are_refused(name, tmp_path, capsys):
    from feat_script.extract_objects import ObjectsExtractor

    videos = tmp_path / "v"
    videos.mkdir()
    (videos / "x.mp4").write_bytes(b"")
    (videos / name).write_bytes(b"")
    listing = tmp_path / "list.txt"
    listing.write_text(f"v/x.mp4\nv/{name}\n")
    assert main(ObjectsExtractor, ["--quiet", "--videos", str(listing), "--out", str(tmp_path / "o.h5"),
                                   "--stream", "appearance", "--random-init"]) == 2
    one_error_line(capsys, name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["list.txt", "v"]


@pytest.mark.parametrize("device", ["gpu", "cuda:7", "tpu"])
def test_bad_device_is_one_line(device, tmp_path, videos, capsys):
    assert cli(Mean, videos, tmp_path / "o", "--random-init", "--device", device) == 2
    one_error_line(capsys, f"--device {device}")
    assert not (tmp_path / "o").exists()


def test_out_that_is_a_file_or_not_writable(tmp_path, videos, capsys):
    file_out = tmp_path / "taken"
    file_out.write_text("mine")
    assert cli(Frames, videos, file_out) == 2
    one_error_line(capsys, file_out, "is a file")
    assert cli(Mean, videos, tmp_path, "--random-init", "--store", "hdf5") == 2
    one_error_line(capsys, tmp_path, "is a folder")
    assert file_out.read_text() == "mine"
    locked = _read_only_folder(tmp_path / "locked")
    try:
        before = snapshot(tmp_path)
        assert cli(Frames, videos, locked / "frames") == 2
        one_error_line(capsys, locked, "cannot write")
        assert cli(Frames, videos, locked) == 2
        one_error_line(capsys, locked, "cannot write")
        assert snapshot(tmp_path) == before
    finally:
        if os.path.ismount(locked):
            subprocess.run(["umount", str(locked)], check=True)
        locked.chmod(0o755)


def _read_only_folder(path: Path) -> Path:
    """A folder nobody can write in: mode 555, or, for root (whom modes do not stop), a read-only tmpfs."""
    path.mkdir()
    path.chmod(0o555)
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)],
                                 capture_output=True)
        if mounted.returncode != 0:
            pytest.skip("running as root without mount: no way to make a read-only folder")
    return path


# bytes that torch's restricted unpickler fails on in different ways: an opcode on an empty stack
# (IndexError), a header it warns about, a truncated dict, and seeded random blobs
MALFORMED = {"empty-stack": b"\x80\x02b.", "odd-protocol": b"\x80\x07" + bytes(range(60)),
             "truncated": b"\x80\x02}q\x00(X\x01\x00\x00\x00a",
             **{f"random-{seed}": random.Random(seed).randbytes(300) for seed in range(12)}}


@pytest.mark.parametrize("content", [*MALFORMED, "other-network", "tensor"])
def test_garbage_weights_are_one_line_naming_the_file(content, tmp_path, videos, capsys):
    weights = tmp_path / "w.pth"
    if content in MALFORMED:
        weights.write_bytes(MALFORMED[content])
    elif content == "other-network":
        torch.save(torch.nn.Linear(5, 2).state_dict(), weights)
    else:
        torch.save(torch.zeros(3), weights)
    before = snapshot(tmp_path)
    assert cli(Mean, videos, tmp_path / "o", "--weights", str(weights)) == 2
    one_error_line(capsys, weights)
    assert snapshot(tmp_path) == before


def test_disk_full_is_one_line_and_keeps_what_was_written(tmp_path, videos, capsys, monkeypatch):
    out = tmp_path / "feats"
    single = tmp_path / "single"
    single.mkdir()
    os.symlink(videos / "a.mp4", single / "a.mp4")
    assert cli(Mean, single, out, "--random-init") == 0
    before = snapshot(out)

    def full(file, array, *args, **kwargs):
        file.write(b"\x93NUMPY partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", full)
    assert cli(Mean, videos, out, "--random-init") == 2
    one_error_line(capsys, out / "b.npy", "no space left")
    assert snapshot(out) == before  # a.npy intact, no temporary left behind
    monkeypatch.undo()
    assert cli(Mean, videos, out, "--random-init") == 0  # space again: the run finishes the set
    assert sorted(p.name for p in out.iterdir()) == ["a.npy", "b.npy"]


def test_corrupt_existing_hdf5_output_is_one_line(tmp_path, videos, capsys):
    out = tmp_path / "o.h5"
    assert cli(Mean, videos, out, "--random-init", "--store", "hdf5") == 0
    out.write_bytes(out.read_bytes()[:1000])
    before = snapshot(tmp_path)
    assert cli(Mean, videos, out, "--random-init", "--store", "hdf5") == 2
    one_error_line(capsys, out, "does not open")
    assert snapshot(tmp_path) == before


def test_corrupt_packed_index_is_one_line(tmp_path, videos, capsys):
    out = tmp_path / "packed"
    assert cli(Mean, videos, out, "--random-init", "--store", "packed") == 0
    (out / "mean.index.json").write_text("{not json")
    before = snapshot(tmp_path)
    assert cli(Mean, videos, out, "--random-init", "--store", "packed") == 2
    one_error_line(capsys, out / "mean.index.json")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("bad", ["missing", "empty-stack", "odd-protocol", "truncated", "random-0", "folder",
                                 "wrong-keys"])  # a subprocess each: the reader's full set is tested above
def test_vggish_converter_bad_input_is_one_line(bad, tmp_path):
    src = tmp_path / "vggish-src.pth"
    if bad in MALFORMED:
        src.write_bytes(MALFORMED[bad])
    elif bad == "folder":
        src.mkdir()
    elif bad == "wrong-keys":
        torch.save({"features.0.weight": torch.zeros(64, 1, 3, 3)}, src)
    before = snapshot(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "feat_script.vggish.convert", str(src),
                           "--out", str(tmp_path / "vggish.pt")], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(src) in lines[0], lines
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("bad", ["binary", "out-is-folder", "empty-csv-dir", "tsv-is-folder"])
def test_butd_converter_bad_input_is_one_line(bad, tmp_path, capsys):
    from engine.errors import run_cli
    from feat_script import convert_butd_tsv

    tsv, out, csv_dir = tmp_path / "in.tsv", tmp_path / "obj.hdf5", tmp_path / "csv"
    tsv.write_bytes(b"gif/f0\t320\t240\t0\t\t\n" + (random.Random(7).randbytes(64) if bad == "binary" else b""))
    argv = [str(tsv), "--out", str(out)]
    if bad == "out-is-folder":
        out.mkdir()
    elif bad == "empty-csv-dir":
        csv_dir.mkdir()
        argv += ["--csv_dir", str(csv_dir)]
    elif bad == "tsv-is-folder":
        tsv.unlink()
        tsv.mkdir()
    before = snapshot(tmp_path)
    assert run_cli(convert_butd_tsv.main, argv) == 2
    named = {"binary": tsv, "out-is-folder": out, "empty-csv-dir": csv_dir, "tsv-is-folder": tsv}[bad]
    one_error_line(capsys, named)
    assert snapshot(tmp_path) == before


def test_disk_full_while_writing_frames_names_the_folder(tmp_path, videos, capsys, monkeypatch):
    from PIL import Image

    def full(self, fp, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full)
    out = tmp_path / "frames"
    assert cli(Frames, videos, out) == 2
    one_error_line(capsys, out / "a", "no space left")
    assert [p.name for p in out.iterdir()] == []  # the temporary folder is gone
