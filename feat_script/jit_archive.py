"""The tensors of a TorchScript archive, read without running anything in it.

OpenAI ships CLIP's weights (``ViT-L-14-336px.pt``) as TorchScript archives. ``torch.jit.load``
would compile the archive's code and run its ``__setstate__`` methods, and ``torch.load(...,
weights_only=True)`` refuses such archives; this reader unpickles the archive's ``data.pkl`` with an
unpickler that knows only tensors, storages, ``OrderedDict`` and stand-ins for the scripted
classes (modules), then flattens the module tree into a ``{dotted.name: tensor}`` state dict.
Anything else in the pickle is refused with one line naming the file.
"""
from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from engine.errors import UserError

STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}


class ArchiveError(UserError, ValueError):
    """A file that is not a TorchScript archive of plain modules and tensors."""


class _Scripted:
    """Stands for an object of a scripted class (a module): keeps its attributes, runs nothing."""

    def __init__(self, *args: Any) -> None:
        self.attributes: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        self.attributes = state if isinstance(state, dict) else {}


class _StorageType:
    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: tuple, stride: tuple, *_: Any) -> torch.Tensor:
    return storage.as_strided(size, stride, offset)


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, path: Path) -> None:
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix, self.path = archive, prefix, path

    def find_class(self, module: str, name: str) -> Any:
        if module == "__torch__" or module.startswith("__torch__."):
            return _Scripted
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(STORAGE_DTYPES[name])
        if (module, name) == ("collections", "OrderedDict"):
            return dict
        raise ArchiveError(f"{self.path}: holds {module}.{name}, which is not a tensor or a module; refused "
                           "(nothing in it was run). Pass OpenAI's CLIP .pt file or a state_dict")

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise ArchiveError(f"{self.path}: unexpected storage reference {str(pid)[:60]}")
        data = bytearray(self.archive.read(f"{self.prefix}data/{pid[2]}"))
        return torch.frombuffer(data, dtype=pid[1].dtype) if data else torch.empty(0, dtype=pid[1].dtype)


def is_torchscript(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with ``constants.pkl`` and ``data.pkl``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return any(n.endswith("/constants.pkl") for n in names) and any(n.endswith("/data.pkl") for n in names)


def _flatten(obj: _Scripted, prefix: str, out: dict[str, torch.Tensor]) -> None:
    for name, value in obj.attributes.items():
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
        elif isinstance(value, _Scripted):
            _flatten(value, f"{prefix}{name}.", out)


def read_torchscript_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor attribute of the archive's module tree, by dotted name (parameters, buffers and
    any other tensor attributes)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            [pkl] = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            root = _Unpickler(archive.read(pkl), archive, pkl[: -len("data.pkl")], path).load()
    except (zipfile.BadZipFile, ValueError, pickle.UnpicklingError, KeyError, EOFError) as err:
        if isinstance(err, ArchiveError):
            raise
        raise ArchiveError(f"{path}: not a readable TorchScript archive ({type(err).__name__}: {err})") from err
    if not isinstance(root, _Scripted):
        raise ArchiveError(f"{path}: the archive's root is not a module")
    tensors: dict[str, torch.Tensor] = {}
    _flatten(root, "", tensors)
    return tensors
