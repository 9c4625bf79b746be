"""The four MASN HDF5 feature files: names, layouts, and a reader that pads like the original.

Layout per video key (the original ``data_utils/dataset.py`` reads the ``feat_r6_vsync2`` files): appearance
global ``<key>`` (T, 2048); motion global ``<key>`` (T, 2048); appearance local ``image_features/<key>`` (T,
10, 2048) and ``spatial_features/<key>`` (T, 10, 6); motion local ``<key>`` (T, 10, 2048). Files are opened
lazily, once per process (i.e. per DataLoader worker), and only the first ``v_max_length`` rows are read.

One set of rules decides whether a video's entries can be used (``VideoFeatures.video_arrays``): each is a
floating-point array (not a group, string, integer or complex), of the expected shape, and the five agree on T
(row t of every file is the same moment: the original indexes all five with one frame index, and the
extractors write them so) and on the objects per frame. ``check_videos`` applies them to every video before
training (``build.py``) and in ``check_data.py``; ``read`` applies them per item and also refuses NaN / inf
at every read (the original HDF5 files carry no record of a check, and the check costs two integer max
passes over rows still in the CPU cache). A reader is safe to share between the threads of the ``reader``
input pipeline: files and descriptors are opened once per process under a lock, reads are positional.
:class:`PaddedBatches` holds what this reader shares with the packed store's (``masn/data/packed.py``).
"""
from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from engine.batching import batch_empty, byte_rows, nonfinite_rows
from engine.errors import UserError
from feat_script.recipes import MASN_FILES

OBJ_MAX = 10
FEAT_DIM = 2048
BOX_DIM = 6
_OPENING = threading.Lock()  # one thread of a process opens the files and descriptors


@dataclass(frozen=True)
class FeatureLayout:
    """File names (first = the code's name, then accepted aliases), sub-folder and key prefix."""

    subdir: str
    key_prefix: str
    names: dict[str, tuple[str, ...]]


LAYOUTS = {  # file names: feat_script.recipes.MASN_FILES (what the extractors write)
    "tgif-qa": FeatureLayout("feat_r6_vsync2", "", MASN_FILES["tgif-qa"]),
    "msvd-qa": FeatureLayout("vfeat", "vid", MASN_FILES["msvd-qa"]),
    "msrvtt-qa": FeatureLayout("vfeat", "video", MASN_FILES["msrvtt-qa"]),
}


class FeatureError(UserError, ValueError):
    """A feature file that is missing, unreadable, incomplete or of the wrong shape."""


def resolve_feature_files(feat_dir: Path, dataset: str) -> dict[str, Path]:
    """Role -> path, looking in ``<feat_dir>/<subdir>/`` first, then in ``<feat_dir>/`` itself."""
    layout = LAYOUTS[dataset]
    feat_dir = Path(feat_dir)
    paths = {}
    for role, names in layout.names.items():
        candidates = [feat_dir / layout.subdir / n for n in names] + [feat_dir / n for n in names]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise FeatureError(
                f"{role} feature file not found: looked for {' or '.join(names)} in "
                f"{feat_dir / layout.subdir} and {feat_dir} (--feat_dir)")
        paths[role] = found
    return paths


def _open(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise FeatureError(f"{path}: cannot be read as HDF5 (truncated or not an HDF5 file?): {e}") from None


def _datasets(files: dict[str, h5py.File]) -> dict[str, h5py.Group]:
    """The five containers keyed by video: res_avg, i3d_avg, res_roi, bbox, i3d_roi."""
    roi = files["res_roi"]
    for group in ("image_features", "spatial_features"):
        if not isinstance(roi.get(group), h5py.Group):
            raise FeatureError(f"{roi.filename}: has no '{group}' group (expected the tgif_btup_f_obj10 layout)")
    return {"res_avg": files["res_avg"], "i3d_avg": files["i3d_avg"], "res_roi": roi["image_features"],
            "bbox": roi["spatial_features"], "i3d_roi": files["i3d_roi"]}


EXPECTED_TAIL = {"res_avg": (FEAT_DIM,), "i3d_avg": (FEAT_DIM,), "res_roi": (None, FEAT_DIM),
                 "bbox": (None, BOX_DIM), "i3d_roi": (None, FEAT_DIM)}
ORDER = ("res_avg", "i3d_avg", "res_roi", "bbox", "i3d_roi")  # items, batches and checks follow it
SOURCE_ROLE = {"res_avg": "res_avg", "i3d_avg": "i3d_avg", "res_roi": "res_roi", "bbox": "res_roi",
               "i3d_roi": "i3d_roi"}


def shape_problem(name: str, shape: tuple[int, ...]) -> str | None:
    """Why a stored array of this shape cannot be used as ``name`` (None when it can)."""
    tail = EXPECTED_TAIL[name]
    if len(shape) != 1 + len(tail) or shape[0] < 1:
        return f"shape {shape}, expected (T>=1, {', '.join('N<=10' if t is None else str(t) for t in tail)})"
    if len(tail) == 2 and not 1 <= shape[1] <= OBJ_MAX:
        return f"shape {shape}: {shape[1]} objects per frame, expected 1..{OBJ_MAX}"
    if shape[-1] != tail[-1]:
        return f"shape {shape}: last dimension {shape[-1]}, expected {tail[-1]}"
    return None


def array_problem(name: str, entry) -> str | None:
    """Why one stored entry cannot be read as ``name``: a group, a non-float dtype, a wrong shape."""
    if not isinstance(entry, h5py.Dataset):
        return "is an HDF5 group, not an array"
    if entry.dtype.kind != "f":
        return f"dtype {entry.dtype}, expected floating point"
    return shape_problem(name, entry.shape)


def streams_problem(shapes: dict[str, tuple[int, ...]]) -> str | None:
    """Why the five arrays of one video disagree (frame counts, or objects per frame); None if they agree."""
    frames = {name: shape[0] for name, shape in shapes.items()}
    objects = {name: shape[1] for name, shape in shapes.items() if len(shape) == 3}
    for what, counts in (("frame counts", frames), ("objects per frame", objects)):
        if len(set(counts.values())) > 1:
            return f"{what} differ between the files ({', '.join(f'{n} {c}' for n, c in counts.items())})"
    return None


def container_label(paths: dict[str, Path], name: str) -> str:
    group = {"res_roi": ":image_features", "bbox": ":spatial_features"}.get(name, "")
    return f"{paths[SOURCE_ROLE[name]]}{group}"


class PaddedBatches(ABC):
    """A video's five arrays padded to ``v_max_length`` (missing videos: the original's zeros if allowed),
    as items and batches; NaN / inf refused at every read unless the store was checked when written
    (``checked``). Subclasses say where the arrays are (``_locate``) and how to read one (``_fill``)."""

    checked = False
    nonfinite_fix = "extract it again (scripts/check_data.py lists every such video)"  # what a bad row needs

    def __init__(self, key_prefix: str, v_max_length: int, allow_missing: bool) -> None:
        self.key_prefix = key_prefix
        self.v_max_length = v_max_length
        self.allow_missing = allow_missing

    def key(self, video_id) -> str:
        return f"{self.key_prefix}{video_id}"

    @abstractmethod
    def label(self, name: str) -> str:
        """Where array ``name`` is stored (file, or file:group), for messages."""

    @abstractmethod
    def check_videos(self, video_ids) -> tuple[dict[str, list[str]], list[str]]:
        """Before any work: (where -> the keys of ``video_ids`` it lacks, one message per unusable video)."""

    @abstractmethod
    def close(self) -> None:
        """Release this process's handles (after the up-front checks: DataLoader workers open their own)."""

    @abstractmethod
    def whole_arrays(self, key: str) -> Iterator[tuple[str, np.ndarray]]:
        """(name, every stored row) of each array of video ``key``, one array at a time (memory bounded by
        one array: ``check_data.py`` scans a whole data set); nothing when the video is missing."""

    def nonfinite(self, name: str, key: str) -> str:
        """The problem a NaN / inf in array ``name`` of video ``key`` is, naming where it is stored."""
        return f"{self.label(name)}: video {key!r} ({name}) holds NaN or inf values"

    @abstractmethod
    def _locate(self, keys: list[str]) -> list[dict[str, tuple] | None]:
        """Per key: {name: (stored shape, where to read it)}, None when the video is missing."""

    @abstractmethod
    def _fill(self, name: str, key: str, where, dest: np.ndarray, shape: tuple[int, ...]) -> None:
        """The leading ``shape`` corner of array ``name`` of video ``key`` into ``dest`` (float32)."""

    def read(self, video_id) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
        """(res_avg (T,2048), i3d_avg, res_roi (T,10,2048), bbox (T,10,6), i3d_roi, video_length)."""
        *arrays, lengths = self.read_batch([video_id])
        return (*(a[0].numpy() for a in arrays), int(lengths[0]))

    def read_batch(self, video_ids) -> tuple[torch.Tensor, ...]:
        """The five arrays of every video zero-padded to ``v_max_length`` and stacked ([B, T, ...] float32, in
        the order of :meth:`read`), and the lengths [B]. Each array is read once, straight into its place in
        the batch and (unless ``checked``) checked for NaN / inf there, naming the first bad video and array."""
        t_max = self.v_max_length
        keys = [self.key(v) for v in video_ids]
        out = {name: batch_empty((len(keys), t_max, *padded_tail(name)), torch.float32) for name in ORDER}
        lengths = []
        for i, (key, plan) in enumerate(zip(keys, self._locate(keys))):
            if plan is None and not self.allow_missing:
                raise FeatureError(f"video {key!r} is missing from the feature files")
            lengths.append(1 if plan is None else min(t_max, plan["res_avg"][0][0]))
            for name in ORDER:
                dest = out[name][i].numpy()
                if plan is None:
                    dest[...] = 0
                    continue
                stored, where = plan[name]
                shape = (min(t_max, stored[0]), *stored[1:])
                self._fill(name, key, where, dest, shape)
                if shape != dest.shape:
                    dest[shape[0]:] = 0
                    dest[:shape[0], shape[1]:] = 0  # objects past the video's count (none for the global arrays)
                if not self.checked and nonfinite_rows(dest[None, :shape[0]])[0]:  # while still in the CPU cache
                    raise FeatureError(f"{self.nonfinite(name, key)}; {self.nonfinite_fix}")
        return (*(out[name] for name in ORDER), torch.tensor(lengths))


class VideoFeatures(PaddedBatches):
    """The four HDF5 files: reads and pads one video's five arrays."""

    def __init__(self, paths: dict[str, Path], key_prefix: str, v_max_length: int,
                 allow_missing: bool = False):
        super().__init__(key_prefix, v_max_length, allow_missing)
        self.paths = dict(paths)
        self._files: dict[str, h5py.File] | None = None
        self._pid: int | None = None
        self._fds: dict[str, int] = {}
        self._plans: dict[str, dict[str, tuple] | None] = {}

    @staticmethod
    def _unopened() -> dict:
        """What belongs to one process (handles, plans), as before it opens the files."""
        return {"_files": None, "_pid": None, "_fds": {}, "_plans": {}}

    def __getstate__(self) -> dict:
        return {**self.__dict__, **self._unopened()}

    def _data(self) -> dict[str, h5py.Group]:
        with _OPENING:
            if self._files is None or self._pid != os.getpid():  # first use, or a forked worker: its own
                self.__dict__.update(self._unopened())
                self._files, self._pid = {role: _open(p) for role, p in self.paths.items()}, os.getpid()
            return _datasets(self._files)

    def close(self) -> None:
        """Release the handles (done after the up-front checks, so DataLoader workers open their own)."""
        for f in (self._files or {}).values():
            f.close()
        if self._pid == os.getpid():
            for fd in self._fds.values():
                os.close(fd)
        self.__dict__.update(self._unopened())

    def label(self, name: str) -> str:
        return container_label(self.paths, name)

    def _stored(self, data: dict[str, h5py.Group]) -> dict[str, set[str]]:
        """Container name -> the keys it holds."""
        out = {}
        for name, container in data.items():
            try:
                out[name] = set(container.keys())
            except (OSError, RuntimeError) as err:
                raise FeatureError(f"{self.label(name)}: its list of videos cannot be read ({err}); "
                                   "the file is corrupt or truncated: extract or download it again") from None
        return out

    def missing(self, video_ids) -> dict[str, list[str]]:
        """Feature container (``file`` or ``file:group``) -> the keys of ``video_ids`` it lacks."""
        keys = sorted({self.key(v) for v in video_ids})
        out: dict[str, list[str]] = {}
        for name, present in self._stored(self._data()).items():
            lost = [k for k in keys if k not in present]
            if lost:
                out[self.label(name)] = lost
        return out

    def stored_keys(self) -> tuple[list[str], int]:
        """(the keys every container holds, sorted; how many more some container holds but not all)."""
        sets = list(self._stored(self._data()).values())
        every = set.intersection(*sets)
        return sorted(every), len(set.union(*sets) - every)

    def _corrupt(self, name: str, key: str, err: Exception) -> FeatureError:
        return FeatureError(f"{container_label(self.paths, name)}: video {key!r} cannot be read ({err}); the file "
                            "is corrupt or truncated: extract or download it again")

    def video_arrays(self, data: dict[str, h5py.Group], key: str) -> dict[str, h5py.Dataset] | None:
        """The five checked arrays of one video; None when a container lacks the key; else FeatureError."""
        raw = {}
        for name, container in data.items():
            try:
                if key not in container:
                    return None
                raw[name] = container[key]
            except (OSError, RuntimeError, KeyError, ValueError) as err:
                raise self._corrupt(name, key, err) from None
        for name, entry in raw.items():
            problem = array_problem(name, entry)
            if problem:
                raise FeatureError(f"{container_label(self.paths, name)}: video {key!r} ({name}) {problem}; "
                                   "extract it again (see docs/masn.md for the layout)")
        problem = streams_problem({name: ds.shape for name, ds in raw.items()})
        if problem:
            raise FeatureError(f"{self.paths['res_avg'].parent}: video {key!r}: {problem}; row t of every file "
                               "must describe the same moment: extract the four files with the same sampling")
        return raw

    def datasets(self, key: str) -> dict[str, h5py.Dataset] | None:
        """The five checked arrays of the video stored as ``key`` (None when a file lacks it), to read whole."""
        return self.video_arrays(self._data(), key)

    def whole_arrays(self, key: str) -> Iterator[tuple[str, np.ndarray]]:
        for name, ds in (self.datasets(key) or {}).items():
            yield name, ds[()]

    def check_videos(self, video_ids) -> tuple[dict[str, list[str]], list[str]]:
        """Before any work: (container -> keys it lacks, one message per unusable video) over ``video_ids``."""
        data = self._data()
        keys = sorted({self.key(v) for v in video_ids})
        bad = []
        for key in keys:
            try:
                self.video_arrays(data, key)
            except FeatureError as err:
                bad.append(str(err))
        return self.missing(video_ids), bad

    def _locate(self, keys: list[str]) -> list[dict[str, tuple] | None]:
        data = self._data()
        return [self._plan(data, key) for key in keys]

    def _fill(self, name: str, key: str, where, dest: np.ndarray, shape: tuple[int, ...]) -> None:
        try:
            if isinstance(where, int):
                self._read_direct(name, where, dest, shape)
            else:
                read_corner(where, dest, shape)
        except (OSError, RuntimeError, ValueError, TypeError) as err:
            raise self._corrupt(name, key, err) from None

    def _plan(self, data: dict[str, h5py.Group], key: str) -> dict[str, tuple] | None:
        """Per array of one video (checked once per process): (stored shape, its byte offset in the file when
        it can be read directly, else the h5py dataset); None when the video is missing."""
        if key not in self._plans:
            raw = self.video_arrays(data, key)
            self._plans[key] = None if raw is None else {name: (ds.shape, _source(ds)) for name, ds in raw.items()}
        return self._plans[key]

    def _read_direct(self, name: str, offset: int, dest: np.ndarray, shape: tuple[int, ...]) -> None:
        """The leading ``shape`` corner of a contiguous array at ``offset`` into ``dest`` (C-contiguous) with
        ``os.preadv``: one read when the rows are as wide as ``dest``'s, else one per frame."""
        role = SOURCE_ROLE[name]
        fd = self._fds.get(role)
        if fd is None:
            with _OPENING:
                fd = self._fds.get(role)
                if fd is None:
                    fd = self._fds[role] = os.open(self.paths[role], os.O_RDONLY)
        if shape[1:] == dest.shape[1:]:
            reads = [(byte_rows(dest[:shape[0]]).reshape(-1), offset)]
        else:  # fewer objects than OBJ_MAX: frame t's objects are the first rows of dest[t]
            row = int(np.prod(shape[1:])) * dest.itemsize
            reads = [(byte_rows(dest[t, :shape[1]]).reshape(-1), offset + t * row) for t in range(shape[0])]
        for buf, at in reads:
            if os.preadv(fd, [buf], at) != len(buf):
                raise OSError(f"truncated: {self.paths[role]} ends before byte {at + len(buf)}")


def _source(ds: h5py.Dataset) -> int | h5py.Dataset:
    """Where to read ``ds`` from: its byte offset when it can be read directly, else the dataset itself."""
    offset = direct_offset(ds)
    return ds if offset is None else offset


def direct_offset(ds: h5py.Dataset) -> int | None:
    """Where the bytes of a contiguous, unfiltered, native-float32 array start in its file, so that a read
    can skip HDF5's selection and conversion machinery (the rows are the file's bytes); None otherwise."""
    if ds.chunks is not None or ds.dtype != np.dtype(np.float32) or ds.external or ds.file.driver != "sec2" \
            or ds.file.userblock_size:
        return None
    return ds.id.get_offset()


def read_corner(ds: h5py.Dataset, dest: np.ndarray, shape: tuple[int, ...]) -> None:
    """The leading ``shape`` corner of ``ds`` into the same corner of the C-contiguous ``dest``, through h5py's
    low-level calls (its high-level selections cost about as much as copying a whole video)."""
    start = (0,) * len(shape)
    file_space = ds.id.get_space()
    file_space.select_hyperslab(start, shape)
    memory_space = h5py.h5s.create_simple(dest.shape)
    memory_space.select_hyperslab(start, shape)
    ds.id.read(memory_space, file_space, dest)


def padded_tail(name: str) -> tuple[int, ...]:
    """The shape of one padded row of ``name`` (objects padded to ``OBJ_MAX``)."""
    return tuple(OBJ_MAX if t is None else t for t in EXPECTED_TAIL[name])
