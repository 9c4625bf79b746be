"""No file a user gives is ever unpickled: every loader refuses a hostile pickle without running it.

The hostile files hold an object whose unpickling calls ``open(marker, "w")``; each loader must
refuse the file (an error, or exit status 2 for a CLI) and the marker must not exist afterwards.
"""
from __future__ import annotations

import io
import pickle
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from avst.model.checkpoint import read_state
from engine.checkpoint import load_checkpoint
from engine.errors import run_cli
from feat_script.base import main as extract_main
from feat_script.extract_14x14 import Res18x14
from feat_script.extract_i3d import I3dExtractor
from feat_script.extract_objects import ObjectsExtractor
from feat_script.extract_r2plus1d import R2Plus1D
from feat_script.extract_resnet import ResNetGlobal
from feat_script.extract_vggish import VggishExtractor
from feat_script.stores import NpyDirStore, npy_opens
from feat_script.vggish import convert as vggish_convert
from feat_script.vggish import load_pca, vggish
from masn import answer_index
from masn.convert_checkpoint import RestrictedUnpickler, _StandIn, read_original

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "pwned"


@pytest.fixture
def hostile(tmp_path, marker) -> dict[str, Path]:
    """The same payload as a torch file, a plain pickle, an object .npy and an object .npz."""
    files = {"pth": tmp_path / "hostile.pth", "pkl": tmp_path / "hostile.pkl", "npy": tmp_path / "hostile.npy",
             "npz": tmp_path / "hostile.npz"}
    torch.save({"conv1.weight": _Exploit(marker), "pca_eigen_vectors": _Exploit(marker)}, files["pth"])
    files["pkl"].write_bytes(pickle.dumps({"answers": _Exploit(marker)}))
    array = np.empty(2, dtype=object)
    array[0] = _Exploit(marker)
    np.save(files["npy"], array, allow_pickle=True)
    np.savez(files["npz"], pca_eigen_vectors=array, pca_means=array)
    assert not marker.exists()
    return files


LOADERS = {
    "vggish --pca .pth": lambda f: load_pca(f["pth"]),
    "vggish --pca .npz": lambda f: load_pca(f["npz"]),
    "vggish weights": lambda f: vggish(f["pth"]),
    "vggish converter source": lambda f: vggish_convert.convert(f["pth"]),
    "engine checkpoint": lambda f: load_checkpoint(f["pth"]),
    "avst checkpoint": lambda f: read_state(f["pth"]),
    "masn authors' pickle (restricted unpickler)": lambda f: read_original(f["pth"]),
    "masn answer index": lambda f: answer_index.load_answer_index(f["pkl"]),
    "npy store verify": lambda f: npy_opens(f["npy"]) or (_ for _ in ()).throw(ValueError("refused")),
    "npy store read": lambda f: NpyDirStore(f["npy"].parent).read("hostile"),
}


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_loader_refuses_a_hostile_pickle(name, hostile, marker):
    with pytest.raises(Exception):  # noqa: B017, PT011 - any refusal will do; what matters is the marker
        LOADERS[name](hostile)
    assert not marker.exists(), f"{name} ran the pickle's code"


@pytest.fixture
def one_video(tmp_path) -> Path:
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "v.mp4").write_bytes(b"")  # never decoded: the weights are read first
    return folder


CLIS = {
    "extract_vggish --pca": (VggishExtractor, ["--recipe", "standard", "--random-init", "--pca", "{pth}"]),
    "extract_vggish --weights": (VggishExtractor, ["--weights", "{pth}"]),
    "extract_resnet --weights": (ResNetGlobal, ["--weights", "{pth}"]),
    "extract_14x14 --weights": (Res18x14, ["--weights", "{pth}"]),
    "extract_r2plus1d --weights": (R2Plus1D, ["--weights", "{pth}"]),
    "extract_i3d --weights": (I3dExtractor, ["--weights", "{pth}"]),
    "extract_objects --weights": (ObjectsExtractor, ["--stream", "appearance", "--weights", "{pth}",
                                                     "--detector-weights", "{pth}"]),
    "extract_objects --detector-weights": (ObjectsExtractor, ["--stream", "appearance", "--random-init",
                                                              "--detector-weights", "{pth}"]),
}


@pytest.mark.parametrize("name", sorted(CLIS))
def test_extractor_cli_refuses_hostile_weights(name, hostile, marker, one_video, tmp_path, capsys):
    cls, flags = CLIS[name]
    argv = ["--quiet", "--workers", "0", "--videos", str(one_video), "--out", str(tmp_path / "out"),
            *[f.format(pth=hostile["pth"]) for f in flags]]
    assert extract_main(cls, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(hostile["pth"]) in err[0], err
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_converters_refuse_hostile_files(hostile, marker, tmp_path, capsys):
    assert run_cli(vggish_convert.main, [str(hostile["pth"]), "--out", str(tmp_path / "vggish.pt")]) == 2
    assert run_cli(answer_index.main, [str(hostile["pkl"]), str(tmp_path / "answers.json")]) == 2
    assert not marker.exists()
    assert not (tmp_path / "vggish.pt").exists() and not (tmp_path / "answers.json").exists()


# ------------------------------------------------------------------ every branch of every restricted unpickler
# Each payload creates ``marker`` when unpickled by plain ``pickle.load`` (proven in a subprocess); each
# restricted loader must refuse it with the marker still absent. Built opcode by opcode (protocol 4), so
# a payload names exactly the globals it says, in the order it says.


def _text(value: str) -> bytes:
    data = value.encode("utf-8")
    return pickle.BINUNICODE + len(data).to_bytes(4, "little") + data


def _global(module: str, name: str) -> bytes:
    return _text(module) + _text(name) + pickle.STACK_GLOBAL


def _call(func: bytes, *args: bytes) -> bytes:
    return func + pickle.MARK + b"".join(args) + pickle.TUPLE + pickle.REDUCE


def _partial(func: bytes, *args: bytes) -> bytes:
    """``functools.partial(func, *args)()``."""
    return _call(_call(_global("functools", "partial"), func, *args))


def _pickle(body: bytes) -> bytes:
    return pickle.PROTO + bytes([4]) + body + pickle.STOP


def _payloads(marker: Path) -> dict[str, bytes]:
    code, touch = _text(f"open({str(marker)!r}, 'w').close()"), _text(f"touch {marker}")
    argv = pickle.EMPTY_LIST + pickle.MARK + _text("touch") + _text(str(marker)) + pickle.APPENDS
    getattr_ = _global("builtins", "getattr")
    # only allow-listed globals (torch._utils._rebuild_tensor, builtins.getattr): its __globals__ reach eval
    module_globals = _call(getattr_, _global("torch._utils", "_rebuild_tensor"), _text("__globals__"))
    builtins_dict = _call(_call(getattr_, module_globals, _text("get")), _text("__builtins__"))
    eval_ = _call(_call(getattr_, builtins_dict, _text("get")), _text("eval"))
    imported_os = _call(_global("builtins", "__import__"), _text("os")) + pickle.MEMOIZE + pickle.POP
    direct = {"builtins.eval": (_global("builtins", "eval"), code),
              "builtins.exec": (_global("builtins", "exec"), code),
              "os.system": (_global("os", "system"), touch), "posix.system": (_global("posix", "system"), touch),
              "subprocess.Popen": (_global("subprocess", "Popen"), argv)}
    return {
        **{name: _pickle(_call(func, arg)) for name, (func, arg) in direct.items()},
        **{f"functools.partial({name})": _pickle(_partial(func, arg)) for name, (func, arg) in direct.items()},
        "builtins.getattr via allow-listed globals": _pickle(_call(eval_, code)),
        "builtins.__import__": _pickle(imported_os + _call(_call(getattr_, pickle.BINGET + b"\0", _text("system")),
                                                           touch)),
        # dotted names (protocol 4) under a module the unpicklers allow, one per allow-list branch
        "torch.nn.modules stand-in prefix": _pickle(_call(_global("torch.nn.modules.module",
                                                                  "torch.serialization.os.system"), touch)),
        "torch._utils tensor rebuilders": _pickle(_call(_global("torch._utils", "torch.serialization.os.system"),
                                                        touch)),
        "torch dtype / device / Size": _pickle(_call(_global("torch", "serialization.os.system"), touch)),
    }


PAYLOADS = sorted(_payloads(Path("m")))


def _appears(marker: Path, seconds: float) -> bool:
    """Whether ``marker`` exists within ``seconds`` (subprocess.Popen's child writes it a moment later)."""
    deadline = time.monotonic() + seconds
    while not marker.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _as_torch_zip(payload: bytes, path: Path) -> Path:
    """A torch zip checkpoint whose ``data.pkl`` is ``payload``."""
    torch.save({"w": torch.zeros(1)}, path)
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, payload if name.endswith("/data.pkl") else data)
    return path


def _inert(obj: object) -> object:
    """The restricted unpickler's result; a stand-in of a torch.nn class it made instead of the global
    the file named counts as refused (it holds state and runs nothing)."""
    if isinstance(obj, _StandIn):
        raise pickle.UnpicklingError(f"inert stand-in for {obj.qualname}")
    return obj


RESTRICTED = {
    "masn RestrictedUnpickler": lambda path: _inert(RestrictedUnpickler(io.BytesIO(path.read_bytes())).load()),
    "masn converter, pickle file": read_original,
    "masn converter, torch zip": lambda path: read_original(_as_torch_zip(path.read_bytes(), path.with_suffix(".zip"))),
    "engine load_checkpoint, pickle file": load_checkpoint,
    "engine load_checkpoint, torch zip": lambda path: load_checkpoint(_as_torch_zip(path.read_bytes(),
                                                                                  path.with_suffix(".zip"))),
    "masn answer index converter": lambda path: answer_index._PlainUnpickler(io.BytesIO(path.read_bytes())).load(),
}


def test_every_payload_runs_under_plain_pickle(tmp_path):
    """One subprocess loads them all (torch is imported once); each payload has its own marker."""
    markers = {name: tmp_path / f"ran-{i}" for i, name in enumerate(PAYLOADS)}
    files = []
    for i, name in enumerate(PAYLOADS):
        files.append(tmp_path / f"payload-{i}.pkl")
        files[-1].write_bytes(_payloads(markers[name])[name])
    script = "import pickle, sys\nfor path in sys.argv[1:]:\n    try:\n        pickle.load(open(path, 'rb'))\n" \
             "    except Exception:\n        pass\n"
    subprocess.run([sys.executable, "-c", script, *map(str, files)], cwd=tmp_path, capture_output=True, timeout=300)
    silent = [name for name, marker in markers.items() if not _appears(marker, 10)]
    assert not silent, f"these do not run under plain pickle.load, so refusing them proves nothing: {silent}"


@pytest.mark.parametrize("loader", sorted(RESTRICTED))
@pytest.mark.parametrize("payload", PAYLOADS)
def test_restricted_loaders_refuse_every_payload(payload, loader, tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "payload.pkl"
    path.write_bytes(_payloads(marker)[payload])
    with pytest.raises(Exception):  # noqa: B017 - any refusal will do; what matters is the marker
        RESTRICTED[loader](path)
    assert not _appears(marker, 0.3 if "Popen" in payload else 0), f"{loader} ran {payload}"


def test_answer_index_cli_refuses_every_payload(tmp_path, capsys):
    marker = tmp_path / "ran"
    for name, payload in _payloads(marker).items():
        path = tmp_path / "payload.pkl"
        path.write_bytes(payload)
        assert run_cli(answer_index.main, [str(path), str(tmp_path / "answers.json")]) == 2, name
        assert not marker.exists() and not (tmp_path / "answers.json").exists(), name
        assert capsys.readouterr().err.startswith(f"error: {path}: not a plain pickled"), name
