"""No file a user gives is ever unpickled: every loader refuses a hostile pickle without running it.

The hostile files hold an object whose unpickling calls ``open(marker, "w")``; each loader must
refuse the file (an error, or exit status 2 for a CLI) and the marker must not exist afterwards.
"""
from __future__ import annotations

import pickle
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
from masn.convert_checkpoint import read_original

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
