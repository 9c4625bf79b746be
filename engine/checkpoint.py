"""Checkpoint files: written atomically, read without unpickling arbitrary objects."""
from __future__ import annotations

import io
import pickletools
import warnings
import zipfile
from pathlib import Path

import torch

from engine.errors import UserError
from engine.files import atomic_write

FORMAT = "avqa-repro/1"


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that is missing, unreadable, or does not fit the model it is loaded into."""


def save_checkpoint(path: str | Path, payload: dict) -> Path:
    """Save ``payload`` (tensors, dicts, lists, str, numbers, None) atomically."""
    payload = {"format": FORMAT, **payload}
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``; any failure names the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # e.g. torch's note on an unusual pickle protocol: the error line says it
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch's restricted unpickler fails on garbage with many types (IndexError, ...)
        raise CheckpointError(f"{path} is not a readable checkpoint: {why_unreadable(path, err)}") from err
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} holds a {type(payload).__name__}, not a checkpoint dict")
    return payload


def why_unreadable(path: Path, err: BaseException) -> str:
    """What a file that ``torch.load(weights_only=True)`` refused is, and is not, from its bytes (read
    with ``pickletools``, which runs nothing). Torch's own text is not passed on: it advises loading
    the file with ``weights_only=False``, which would run whatever code the file holds."""
    kind, pickled = _contents(path)
    foreign = [name for name in _globals(pickled) if not name.startswith(_TENSOR_GLOBALS)]
    if foreign:
        return (f"{kind} that imports {', '.join(foreign[:3])} (code, not tensors or plain values), so it was not "
                "loaded. MASN authors' whole-model files: convert them with masn/convert_checkpoint.py")
    return (f"{kind}, not a torch checkpoint of tensors and plain values ({type(err).__name__}). "
            "Give a checkpoint this program wrote or a state_dict saved with torch.save")


_TENSOR_GLOBALS = ("torch.", "collections.OrderedDict", "builtins.set", "builtins.frozenset")


def file_kind(path: Path) -> str:
    """``a zip archive ...``, ``a pickle ...``, ``an empty file`` ...: what the bytes say the file is."""
    return _contents(path)[0]


def _contents(path: Path) -> tuple[str, bytes]:
    """(``file_kind``, the pickle the file holds or b""; at most ``_SCANNED`` bytes of it)."""
    with open(path, "rb") as f:
        data = f.read(_SCANNED)
    if not data:
        return "an empty file (0 bytes)", b""
    if data.startswith(b"PK\x03\x04") and not zipfile.is_zipfile(path):
        return "a damaged or truncated zip archive", b""
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                pickles = [name for name in archive.namelist() if name.endswith("/data.pkl")]
                if pickles:
                    with archive.open(pickles[0]) as pickled:
                        return "a torch zip checkpoint", pickled.read(_SCANNED)
                return f"a zip archive without torch's <name>/data.pkl ({len(archive.namelist())} entries)", b""
        except (zipfile.BadZipFile, OSError):
            return "a damaged or truncated zip archive", b""
    if data[:1] == b"\x80" and len(data) > 1:
        return f"a pickle (protocol {data[1]})", data
    if all(32 <= b < 127 or b in b"\t\r\n" for b in data[:64]):
        return "a text file", b""
    return "a file of unknown binary data (neither a zip archive nor a pickle)", b""


_SCANNED = 16 << 20  # bytes of a pickle searched for the globals it names (the weights follow them)


def _py3_name(module: str, name: str) -> str:
    """``module.name`` as Python 3 imports it (protocol-2 pickles name ``__builtin__``, as Python 2 did)."""
    return f"{_PY2_MODULES.get(module, module)}.{name}"


_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg", "commands": "subprocess"}


def _globals(pickled: bytes, max_pickles: int = 8) -> list[str]:
    """``module.name`` of every global the pickles in ``pickled`` would import (a legacy torch file is
    several pickles in a row), in order; a damaged stream gives those before the damage."""
    found: list[str] = []
    stream = io.BytesIO(pickled)
    for _ in range(max_pickles):
        strings: list[str] = []  # the strings pushed so far: STACK_GLOBAL takes the last two
        memo: dict[int, str | None] = {}
        last: str | None = None  # the object on top of the stack, where it is a string
        try:
            for opcode, arg, _pos in pickletools.genops(stream):
                if opcode.name in ("GLOBAL", "INST"):
                    found.append(_py3_name(*str(arg).split(" ", 1)))
                elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(_py3_name(strings[-2], strings[-1]))
                if opcode.name == "MEMOIZE":
                    memo[len(memo)] = last
                elif opcode.name in ("BINPUT", "LONG_BINPUT", "PUT"):
                    memo[int(arg)] = last
                else:
                    if opcode.name in ("BINGET", "LONG_BINGET", "GET"):
                        last = memo.get(int(arg))
                    elif isinstance(arg, str) and opcode.name not in ("GLOBAL", "INST"):
                        last = arg
                    else:
                        last = None
                    if last is not None:
                        strings.append(last)
        except (ValueError, EOFError, KeyError, IndexError, UnicodeDecodeError):
            break
        if stream.tell() >= len(pickled):
            break
    return list(dict.fromkeys(found))


def model_state(payload: dict) -> dict[str, torch.Tensor]:
    """The model weights of one of our checkpoints, or of a bare state_dict file."""
    state = payload.get("model", payload)
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError("checkpoint holds no model state_dict (no 'model' entry of tensors)")
    return state
