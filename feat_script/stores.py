"""Where extracted features go: one ``.npy`` per video, a packed memory-mappable array, or HDF5.

Every store answers ``done()`` (the ids already complete and verified to open), ``write(video_id,
payload)`` (atomic: written to a temporary name, fsynced, renamed) and ``finalize()``.
A payload maps an output key to an array; the key ``""`` is the extractor's main output.

Crash safety. A killed run leaves at most temporary files (named ``.<name>.<host>-<pid>.tmp*``,
removed by the next run on the same host once that pid is gone), never a half-written entry.
HDF5 files are not crash-safe while open for writing (a kill can corrupt the whole file), so the
HDF5 and packed stores write each video to a staging folder of ``.npy`` files first and merge them
in ``finalize()`` into a temporary copy that replaces the output in one rename (under a file lock,
so shards that finish together merge one after the other). A merge rewrites the output file:
cost proportional to its size, and twice its size on disk for a moment.

Layouts (``<vid>`` = video id = file name without extension):
- ``NpyDirStore``: ``<out>/<vid>.npy`` for key ``""``, ``<out>/<key>/<vid>.npy`` for other keys.
- ``Hdf5Store``: dataset ``/<vid>`` for key ``""``, ``/<key>/<vid>`` for other keys (MASN's
  layouts); staging in ``<out>.parts/``.
- ``PackedStore``: per key, ``<out>/<kind>.npy`` (rows of all videos, concatenated, memory-mappable)
  and ``<out>/<kind>.index.json`` = ``{"format": "packed-v1", "dtype", "row_shape", "rows",
  "videos": {vid: [start, stop]}}`` (kind = the key, or ``default_kind`` for ``""``); staging in
  ``<out>/parts/``.
- ``FramesStore``: ``<out>/<vid>/%0Nd.jpg`` (1-based), the folder renamed into place when complete.
- ``WavStore``: ``<out>/<vid>.wav``, 16-bit PCM.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import socket
import wave
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Protocol

import numpy as np

Payload = Mapping[str, np.ndarray]

_HOST = socket.gethostname().replace(".", "_")

PACKED_FORMAT = "packed-v1"


class Store(Protocol):
    path: Path

    def done(self) -> set[str]: ...

    def write(self, video_id: str, payload: Payload) -> None: ...

    def finalize(self) -> None: ...


def _tmp_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.{_HOST}-{os.getpid()}.tmp")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on success fsync it and rename it to ``final``."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(final)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json_atomic(path: Path, obj: object) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(array))


def remove_stale_temps(folder: Path) -> None:
    """Delete temporaries left by dead processes of this host (live ones may be other shards')."""
    if not folder.is_dir():
        return
    for entry in folder.glob(f".*.{_HOST}-*.tmp*"):
        pid = entry.name.rsplit(f".{_HOST}-", 1)[1].split(".tmp", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as err:
        return err.errno == errno.EPERM
    return True


def npy_opens(path: Path, row_shape: tuple[int, ...] | None = None) -> bool:
    """True when ``path`` is a complete ``.npy`` (header and data size agree) of the expected rows."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return False
    return row_shape is None or tuple(array.shape[1:]) == tuple(row_shape)


class NpyDirStore:
    """One ``.npy`` per video and key (the layout AVST's loaders read)."""

    def __init__(
        self, path: Path, keys: tuple[str, ...] = ("",), row_shapes: Mapping[str, tuple] | None = None
    ):
        self.path = Path(path)
        self.keys = keys
        self.row_shapes = dict(row_shapes or {})

    def file(self, video_id: str, key: str = "") -> Path:
        return (self.path / key if key else self.path) / f"{video_id}.npy"

    def done(self) -> set[str]:
        per_key = []
        for key in self.keys:
            folder = self.path / key if key else self.path
            remove_stale_temps(folder)
            ids = set()
            for f in folder.glob("*.npy") if folder.is_dir() else ():
                if npy_opens(f, self.row_shapes.get(key)):
                    ids.add(f.stem)
                else:
                    f.unlink()
            per_key.append(ids)
        return set.intersection(*per_key) if per_key else set()

    def write(self, video_id: str, payload: Payload) -> None:
        for key in self.keys:
            save_npy_atomic(self.file(video_id, key), payload[key])

    def read(self, video_id: str, key: str = "") -> np.ndarray:
        return np.load(self.file(video_id, key), allow_pickle=False)

    def remove(self, video_id: str) -> None:
        for key in self.keys:
            self.file(video_id, key).unlink(missing_ok=True)

    def finalize(self) -> None:
        return None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class Hdf5Store:
    """MASN's HDF5 layouts, written crash-safely through a staging folder (see module docstring)."""

    def __init__(
        self, path: Path, keys: tuple[str, ...] = ("",), row_shapes: Mapping[str, tuple] | None = None
    ):
        self.path = Path(path)
        self.keys = keys
        self.staging = NpyDirStore(self.path.with_name(self.path.name + ".parts"), keys, row_shapes)

    def _final_ids(self) -> set[str]:
        import h5py

        if not self.path.exists():
            return set()
        try:
            with h5py.File(self.path, "r") as f:
                sets = [
                    set((f[key] if key else f).keys()) if (not key or key in f) else set()
                    for key in self.keys
                ]
        except OSError as err:
            raise RuntimeError(
                f"{self.path}: existing HDF5 output does not open ({err}); move it away"
            ) from err
        if "" in self.keys:
            sets[self.keys.index("")] -= {k for k in self.keys if k}
        return set.intersection(*sets)

    def done(self) -> set[str]:
        remove_stale_temps(self.path.parent)
        return self._final_ids() | self.staging.done()

    def write(self, video_id: str, payload: Payload) -> None:
        self.staging.write(video_id, payload)

    def finalize(self) -> None:
        import h5py

        with _locked(self.path.with_name(self.path.name + ".lock")):
            staged = sorted(self.staging.done())
            if not staged:
                return
            with atomic_file(self.path) as tmp:
                if self.path.exists():
                    shutil.copyfile(self.path, tmp)
                with h5py.File(tmp, "a") as f:
                    for vid in staged:
                        for key in self.keys:
                            group = f.require_group(key) if key else f
                            if vid in group:
                                del group[vid]
                            group.create_dataset(vid, data=self.staging.read(vid, key))
            for vid in staged:
                self.staging.remove(vid)
            with contextlib.suppress(OSError):
                for key in self.keys:
                    if key:
                        (self.staging.path / key).rmdir()
                self.staging.path.rmdir()


class PackedStore:
    """One memory-mappable array per key plus a JSON index of row ranges (see module docstring)."""

    def __init__(
        self,
        path: Path,
        keys: tuple[str, ...] = ("",),
        row_shapes: Mapping[str, tuple] | None = None,
        default_kind: str = "features",
    ):
        self.path = Path(path)
        self.keys = keys
        self.default_kind = default_kind
        self.staging = NpyDirStore(self.path / "parts", keys, row_shapes)

    def kind(self, key: str) -> str:
        return key or self.default_kind

    def array_file(self, key: str) -> Path:
        return self.path / f"{self.kind(key)}.npy"

    def index_file(self, key: str) -> Path:
        return self.path / f"{self.kind(key)}.index.json"

    def index(self, key: str = "") -> dict:
        f = self.index_file(key)
        if not f.exists():
            return {"format": PACKED_FORMAT, "rows": 0, "videos": {}}
        try:
            return json.loads(f.read_text())
        except json.JSONDecodeError as err:
            raise RuntimeError(f"{f}: packed index is not valid JSON ({err})") from err

    def done(self) -> set[str]:
        remove_stale_temps(self.path)
        packed = set.intersection(*[set(self.index(key)["videos"]) for key in self.keys])
        return packed | self.staging.done()

    def write(self, video_id: str, payload: Payload) -> None:
        self.staging.write(video_id, payload)

    def read(self, video_id: str, key: str = "") -> np.ndarray:
        start, stop = self.index(key)["videos"][video_id]
        return np.load(self.array_file(key), mmap_mode="r")[start:stop]

    def finalize(self) -> None:
        with _locked(self.path / ".lock"):
            staged = sorted(self.staging.done())
            if not staged:
                return
            for key in self.keys:
                self._merge_key(key, staged)
            for vid in staged:
                self.staging.remove(vid)

    def _merge_key(self, key: str, staged: list[str]) -> None:
        index = self.index(key)
        old = np.load(self.array_file(key), mmap_mode="r") if index["rows"] else None
        keep = {v: r for v, r in index["videos"].items() if v not in staged}
        parts = [np.load(self.staging.file(v, key), mmap_mode="r") for v in staged]
        first = parts[0]
        rows = sum(stop - start for start, stop in keep.values()) + sum(len(p) for p in parts)
        videos: dict[str, list[int]] = {}
        with atomic_file(self.array_file(key)) as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=first.dtype, shape=(rows, *first.shape[1:]))
            cursor = 0
            for vid, (start, stop) in keep.items():
                out[cursor : cursor + stop - start] = old[start:stop]
                videos[vid] = [cursor, cursor + stop - start]
                cursor += stop - start
            for vid, part in zip(staged, parts):
                out[cursor : cursor + len(part)] = part
                videos[vid] = [cursor, cursor + len(part)]
                cursor += len(part)
            out.flush()
            del out
        write_json_atomic(
            self.index_file(key),
            {
                "format": PACKED_FORMAT,
                "dtype": str(first.dtype),
                "row_shape": list(first.shape[1:]),
                "rows": rows,
                "videos": videos,
            },
        )


class FramesStore:
    """``<out>/<vid>/%0Nd.jpg`` written to a temporary folder that is renamed into place."""

    def __init__(self, path: Path, digits: int = 6, quality: int = 75):
        self.path = Path(path)
        self.digits = digits
        self.quality = quality

    def done(self) -> set[str]:
        from PIL import Image

        remove_stale_temps(self.path)
        ids = set()
        for folder in self.path.iterdir() if self.path.is_dir() else ():
            if folder.name.startswith(".") or not folder.is_dir():
                continue
            jpgs = sorted(folder.glob("*.jpg"))
            try:
                with Image.open(jpgs[-1]) as im:
                    im.verify()
                ids.add(folder.name)
            except (IndexError, OSError, SyntaxError):
                shutil.rmtree(folder)
        return ids

    def write(self, video_id: str, payload: Payload) -> None:
        from PIL import Image

        final = self.path / video_id
        tmp = _tmp_name(final)
        tmp.mkdir(parents=True)
        try:
            for i, frame in enumerate(payload[""], start=1):
                Image.fromarray(frame).save(tmp / f"{i:0{self.digits}d}.jpg", quality=self.quality)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)

    def finalize(self) -> None:
        return None


class WavStore:
    """``<out>/<vid>.wav``, 16-bit PCM at ``rate`` Hz, channels as given."""

    def __init__(self, path: Path, rate: int = 16000):
        self.path = Path(path)
        self.rate = rate

    def done(self) -> set[str]:
        remove_stale_temps(self.path)
        ids = set()
        for f in self.path.glob("*.wav") if self.path.is_dir() else ():
            try:
                with wave.open(str(f)) as w:
                    ok = w.getnframes() > 0 and w.getframerate() == self.rate
            except (wave.Error, EOFError, OSError):
                ok = False
            if ok:
                ids.add(f.stem)
            else:
                f.unlink()
        return ids

    def write(self, video_id: str, payload: Payload) -> None:
        samples = np.ascontiguousarray(payload[""], dtype="<i2")
        with atomic_file(self.path / f"{video_id}.wav") as tmp, wave.open(str(tmp), "wb") as w:
            w.setnchannels(samples.shape[1])
            w.setsampwidth(2)
            w.setframerate(self.rate)
            w.writeframes(samples.tobytes())

    def finalize(self) -> None:
        return None
