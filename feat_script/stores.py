"""Where extracted features go: one ``.npy`` per video, a packed memory-mappable array, or HDF5.

Every store answers ``done()`` (the ids already complete and verified to open), ``write(video_id,
payload)`` (atomic: written to a temporary name, fsynced, renamed) and ``finalize()``.
A payload maps an output key to an array; the key ``""`` is the extractor's main output.

Ownership. A store only ever removes or replaces what it wrote: each id is appended to the ledger
``<out>.written.jsonl`` before its output is renamed into place, and ``done()`` verifies (and removes
when broken) only ledger ids. ``foreign()`` lists what the output location holds that the ledger
does not name (other ids, other files); the pipeline refuses such an output unless told otherwise,
and never touches those entries.

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
  and its header ``<out>/<kind>.index.json`` (``engine.packed``'s format, rows checked finite as they
  are merged) (kind = the key, or ``default_kind`` for ``""``); staging in ``<out>/parts/``.
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
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Protocol

import numpy as np

from engine.errors import UserError
from engine.files import atomic_path
from engine.packed import PackedWriter, load_index
from feat_script.decode import DecodeError
from feat_script.streams import Spill, iter_blocks, iter_rows, raw_blocks

Payload = Mapping[str, np.ndarray]

_HOST = socket.gethostname().replace(".", "_")


class StoreError(UserError, RuntimeError):
    """An existing output the store cannot read or may not touch; the message says what to do."""


class Store(Protocol):
    path: Path

    def done(self) -> set[str]: ...

    def foreign(self) -> tuple[set[str], list[Path]]:
        """(ids present but not in the ledger, other files). The output is listed *before* the ledger
        is read: a concurrent shard appends to the ledger before its rename, so whatever the listing
        saw is already in the ledger read after it."""
        ...

    def write(self, video_id: str, payload: Payload) -> None: ...

    def finalize(self) -> None: ...


def sidecar(out: Path, suffix: str) -> Path:
    """``<out><suffix>``, beside the output (``feat.manifest.json`` for ``feat/`` or ``feat.h5``)."""
    out = Path(out)
    return out.with_name(out.name + suffix)


class Ledger:
    """``<out>.written.jsonl``: one JSON line per id a store wrote (appended before the rename, so
    every output of ours is named here, whatever kill came in between)."""

    def __init__(self, out: Path) -> None:
        self.path = sidecar(out, ".written.jsonl")

    def ids(self) -> set[str]:
        if not self.path.is_file():
            return set()
        return {json.loads(line)["id"] for line in self.path.read_text().splitlines() if line.strip()}

    def add(self, video_id: str) -> None:
        append_line(self.path, json.dumps({"id": video_id}))


def append_line(path: Path, line: str) -> None:
    """Append one line with a single O_APPEND write (whole lines across concurrent shards)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _naming(path):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """An OSError that names no file (ENOSPC from a write) is re-raised naming ``path``."""
    try:
        yield
    except OSError as err:
        if err.filename is None and err.errno:
            raise OSError(err.errno, err.strerror or os.strerror(err.errno), str(path)) from err
        raise


def _is_ours(entry: Path) -> bool:
    """Temporaries (``.<name>.<host>-<pid>.tmp``) and lock files of any store."""
    return entry.name == ".lock" or (entry.name.startswith(".") and ".tmp" in entry.name and "-" in entry.name)


def temp_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.{_HOST}-{os.getpid()}.tmp")


@contextlib.contextmanager
def atomic_file(final: Path) -> Iterator[Path]:
    """``engine.files.atomic_path`` with a host-and-pid temporary name (so a later run can tell a dead
    writer's leftovers from a live shard's) and errors naming ``final`` rather than its temporary."""
    with _naming(final), atomic_path(final, temp_name(final)) as tmp:
        yield tmp


def write_json_atomic(path: Path, obj: object) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_npy_atomic(path: Path, rows: np.ndarray | Spill) -> None:
    """``np.save`` of an array, or the same bytes written block by block from a stream of known
    ``shape`` and ``dtype`` (a ``Spill``)."""
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        if isinstance(rows, np.ndarray):
            np.save(f, np.ascontiguousarray(rows))
        else:
            write_npy_blocks(f, rows.shape, rows.dtype, iter(rows))


def write_npy_blocks(f, shape: tuple[int, ...], dtype: np.dtype, blocks: Iterator[np.ndarray]) -> None:
    """Write what ``np.save`` writes for a C-order array of ``shape``, from its rows in blocks."""
    np.lib.format.write_array_header_1_0(
        f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)})
    written = 0
    for block in blocks:
        np.ascontiguousarray(block, dtype).tofile(f)
        written += len(block)
    if written != shape[0]:
        raise ValueError(f"{written} rows written, {shape[0]} announced")


def npy_blocks(path: Path, start: int = 0, stop: int | None = None,
               ) -> tuple[tuple[int, ...], np.dtype, Iterator[np.ndarray]]:
    """(shape, dtype, the rows ``start:stop`` in blocks) of a C-order ``.npy``: a large file copied
    without holding it, nor mapping it into memory (mapped pages count in the resident set)."""
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    shape, dtype, offset = array.shape, array.dtype, array.offset
    del array
    stop = shape[0] if stop is None else stop
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
    return shape, dtype, raw_blocks(path, offset + start * row_bytes, shape[1:], dtype, stop - start)


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
        self,
        path: Path,
        keys: tuple[str, ...] = ("",),
        row_shapes: Mapping[str, tuple] | None = None,
        ledger: Ledger | None = None,
    ):
        self.path = Path(path)
        self.keys = keys
        self.row_shapes = dict(row_shapes or {})
        self.ledger = ledger or Ledger(self.path)
        self.spill_dir = self.path  # where a long video's output waits, block by block (its temporaries)

    def file(self, video_id: str, key: str = "") -> Path:
        return (self.path / key if key else self.path) / f"{video_id}.npy"

    def _folder(self, key: str) -> Path:
        return self.path / key if key else self.path

    def done(self) -> set[str]:
        owned, per_key = self.ledger.ids(), []
        for key in self.keys:
            remove_stale_temps(self._folder(key))
            ids = set()
            for vid in owned:
                f = self.file(vid, key)
                if npy_opens(f, self.row_shapes.get(key)):
                    ids.add(vid)
                elif f.exists():
                    f.unlink()
            per_key.append(ids)
        return set.intersection(*per_key) if per_key else set()

    def foreign(self) -> tuple[set[str], list[Path]]:
        ids, strays = set(), []
        key_dirs = {self.path / k for k in self.keys if k}
        for key in self.keys:
            folder = self._folder(key)
            for entry in sorted(folder.iterdir()) if folder.is_dir() else ():
                if entry.suffix == ".npy" and entry.is_file():
                    ids.add(entry.stem)
                elif entry not in key_dirs and not _is_ours(entry):
                    strays.append(entry)
        return ids - self.ledger.ids(), strays  # the ledger is read after the listing: see ``foreign``

    def write(self, video_id: str, payload: Payload) -> None:
        self.ledger.add(video_id)
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
        self.ledger = Ledger(self.path)
        self.staging = NpyDirStore(sidecar(self.path, ".parts"), keys, row_shapes, self.ledger)
        self.spill_dir = self.staging.path

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
            raise StoreError(
                f"{self.path}: the existing HDF5 output does not open ({err}); move it away or choose another --out"
            ) from err
        if "" in self.keys:
            sets[self.keys.index("")] -= {k for k in self.keys if k}
        return set.intersection(*sets)

    def done(self) -> set[str]:
        remove_stale_temps(self.path.parent)
        return (self._final_ids() & self.ledger.ids()) | self.staging.done()

    def foreign(self) -> tuple[set[str], list[Path]]:
        final = self._final_ids()
        ids, strays = self.staging.foreign()
        return ids | (final - self.ledger.ids()), strays

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
                            shape, dtype, blocks = npy_blocks(self.staging.file(vid, key))
                            dataset, at = group.create_dataset(vid, shape=shape, dtype=dtype), 0
                            for block in blocks:
                                dataset[at : at + len(block)] = block
                                at += len(block)
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
        self.ledger = Ledger(self.path)
        self.staging = NpyDirStore(self.path / "parts", keys, row_shapes, self.ledger)
        self.spill_dir = self.staging.path

    def kind(self, key: str) -> str:
        return key or self.default_kind

    def array_file(self, key: str) -> Path:
        return self.path / f"{self.kind(key)}.npy"

    def index_file(self, key: str) -> Path:
        return self.path / f"{self.kind(key)}.index.json"

    def index(self, key: str = "") -> dict:
        f = self.index_file(key)
        if not f.exists():
            return {"rows": 0, "videos": {}}
        fix = "; move the folder away or choose another --out"
        index = load_index(f, StoreError, fix)
        if not isinstance(index.get("videos"), dict):
            raise StoreError(f"{f}: not a valid packed index (its videos are no mapping){fix}")
        return index

    def _packed_ids(self) -> set[str]:
        return set.intersection(*[set(self.index(key)["videos"]) for key in self.keys])

    def done(self) -> set[str]:
        remove_stale_temps(self.path)
        return (self._packed_ids() & self.ledger.ids()) | self.staging.done()

    def foreign(self) -> tuple[set[str], list[Path]]:
        ids, _ = self.staging.foreign()
        packed = {f(k) for k in self.keys for f in (self.array_file, self.index_file)}
        if not self.ledger.ids() and any(f.exists() for f in packed):
            taken = sorted(str(f) for f in packed if f.exists())
            raise StoreError(f"--out {self.path} holds {', '.join(taken)}, not written by this extractor, which "
                             "would rewrite them; nothing was touched. Choose another --out")
        ids |= set().union(*[self.index(key)["videos"] for key in self.keys]) - self.ledger.ids()  # index before ledger
        ours = {self.path / "parts"} | packed
        strays = [e for e in sorted(self.path.iterdir()) if e not in ours and not _is_ours(e)] \
            if self.path.is_dir() else []
        return ids, strays

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
        keep = {v: r for v, r in index["videos"].items() if v not in staged}
        sources = [(v, stop - start, npy_blocks(self.array_file(key), start, stop)[2])
                   for v, (start, stop) in keep.items()]
        for vid in staged:
            shape, dtype, blocks = npy_blocks(self.staging.file(vid, key))
            sources.append((vid, shape[0], blocks))
        blocks = ((vid, block) for vid, _, video_blocks in sources for block in video_blocks)
        write_packed(self.path, {self.kind(key): (shape[1:], sum(n for _, n, _ in sources), blocks)}, dtype)


Arrays = Mapping[str, tuple[tuple[int, ...], int, Iterable[tuple[str, np.ndarray]]]]


def write_packed(out: Path, arrays: Arrays, dtype: np.dtype | str,
                 refuse: Callable[[str, str, str], Exception] | None = None) -> dict[str, dict]:
    """Write ``<out>/<stem>.npy`` and its header ``<stem>.index.json`` (``engine.packed``) for each stem of
    ``arrays`` = {stem: (row shape, rows, (video, block) pairs)}; returns the headers. The arrays replace the
    old ones only once every one is written, the headers after them. A non-finite block raises
    ``refuse(stem, video, why)``; without ``refuse`` the store is written unchecked."""
    headers = {}
    with contextlib.ExitStack() as renames:
        for stem, (row_shape, rows, blocks) in arrays.items():
            tmp = renames.enter_context(atomic_file(out / f"{stem}.npy"))
            stop = None if refuse is None else (lambda video, why, stem=stem: refuse(stem, video, why))
            with open(tmp, "wb") as f:
                writer = PackedWriter(f, rows, row_shape, dtype, stop)
                for video, block in blocks:
                    writer.add(video, block)
            headers[stem] = writer.header()
    for stem, header in headers.items():
        write_json_atomic(out / f"{stem}.index.json", header)
    return headers


class FramesStore:
    """``<out>/<vid>/%0Nd.jpg`` written to a temporary folder that is renamed into place."""

    def __init__(self, path: Path, digits: int = 6, quality: int = 75):
        self.path = Path(path)
        self.digits = digits
        self.quality = quality
        self.ledger = Ledger(self.path)

    def done(self) -> set[str]:
        from PIL import Image

        remove_stale_temps(self.path)
        ids = set()
        for vid in self.ledger.ids():
            folder = self.path / vid
            jpgs = sorted(folder.glob("*.jpg")) if folder.is_dir() else []
            try:
                with Image.open(jpgs[-1]) as im:
                    im.verify()
                ids.add(vid)
            except (IndexError, OSError, SyntaxError):
                if folder.is_dir():
                    shutil.rmtree(folder)
        return ids

    def foreign(self) -> tuple[set[str], list[Path]]:
        ids, strays = set(), []
        for entry in sorted(self.path.iterdir()) if self.path.is_dir() else ():
            if entry.is_dir() and not _is_ours(entry):
                ids.add(entry.name)
            elif not _is_ours(entry):
                strays.append(entry)
        return ids - self.ledger.ids(), strays

    def write(self, video_id: str, payload: Payload) -> None:
        from PIL import Image

        self.ledger.add(video_id)
        final = self.path / video_id
        tmp = temp_name(final)
        tmp.mkdir(parents=True)
        try:
            with _naming(final):
                for i, frame in enumerate(iter_rows(payload[""]), start=1):
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
        self.ledger = Ledger(self.path)

    def file(self, video_id: str) -> Path:
        return self.path / f"{video_id}.wav"

    def done(self) -> set[str]:
        remove_stale_temps(self.path)
        ids = set()
        for vid in self.ledger.ids():
            f = self.file(vid)
            try:
                with wave.open(str(f)) as w:
                    ok = w.getnframes() > 0 and w.getframerate() == self.rate
            except (wave.Error, EOFError, OSError):
                ok = False
            if ok:
                ids.add(vid)
            elif f.exists():
                f.unlink()
        return ids

    def foreign(self) -> tuple[set[str], list[Path]]:
        ids, strays = set(), []
        for entry in sorted(self.path.iterdir()) if self.path.is_dir() else ():
            if entry.suffix == ".wav" and entry.is_file():
                ids.add(entry.stem)
            elif not _is_ours(entry):
                strays.append(entry)
        return ids - self.ledger.ids(), strays

    def write(self, video_id: str, payload: Payload) -> None:
        self.ledger.add(video_id)
        with atomic_file(self.file(video_id)) as tmp:
            written = 0
            with wave.open(str(tmp), "wb") as w:
                for block in iter_blocks(payload[""]):
                    samples = np.ascontiguousarray(block, dtype="<i2")
                    if not written:
                        w.setnchannels(samples.shape[1])
                        w.setsampwidth(2)
                        w.setframerate(self.rate)
                    w.writeframes(samples.tobytes())
                    written += len(samples)
                if not written:
                    w.setnchannels(1)
                    w.setsampwidth(2)
                    w.setframerate(self.rate)
            if not written:
                raise DecodeError(f"{video_id}: the audio track is empty")

    def finalize(self) -> None:
        return None
