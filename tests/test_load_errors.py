"""A file that is not a checkpoint is one whole line saying what it is and is not, and never passes on
torch's advice to load it with ``weights_only=False`` (which would run the code it holds)."""
from __future__ import annotations

import functools
import os
import pickle
import random
import zipfile
from pathlib import Path

import pytest
import torch

from engine.checkpoint import CheckpointError, load_checkpoint
from engine.errors import run_cli, short
from feat_script.weights import WeightsError, read_state_dict
from masn.convert_checkpoint import read_original


class Runs:
    """Pickles as a call of ``func(*args)``: what a hostile checkpoint does."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _zip_not_torch(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "hello")


NOT_CHECKPOINTS = {
    "random-bytes": (lambda p: p.write_bytes(random.Random(3).randbytes(4000)), "unknown binary data"),
    "zip-not-torch": (_zip_not_torch, "a zip archive without torch's <name>/data.pkl"),
    "zip-truncated": (lambda p: p.write_bytes(b"PK\x03\x04 cut short"), "a damaged or truncated zip archive"),
    "empty": (lambda p: p.write_bytes(b""), "an empty file"),
    "del-bytes": (lambda p: p.write_bytes(b"\x7f" * 80), "unknown binary data"),  # 127 is not printable text
    "tab-text": (lambda p: p.write_bytes(b" ~\t\r\n" * 20), "a text file"),  # the ends of the printable range
    "text": (lambda p: p.write_text("model = resnet18\n" * 40), "a text file"),
    "pickle-os-system": (lambda p: p.write_bytes(pickle.dumps({"w": Runs(os.system, "true")}, protocol=4)),
                         "a pickle (protocol 4) that imports posix.system"),
    "pickle-top-level-call": (lambda p: p.write_bytes(pickle.dumps(Runs(os.system, "true"), protocol=4)),
                              "a pickle (protocol 4) that imports posix.system"),  # exactly two strings before it
    "pickle-memoized-module": (lambda p: p.write_bytes(pickle.dumps({"a": Runs(os.system, "true"),
                                                                       "b": Runs(os.putenv, "X", "1")}, protocol=4)),
                               "imports posix.system, posix.putenv"),  # the 2nd "posix" is a memo reference
    "torch-partial-eval": (lambda p: torch.save({"w": Runs(functools.partial(eval, "1"))}, p),
                           "a torch zip checkpoint that imports functools.partial, builtins.eval"),
    "pickle-getattr": (lambda p: p.write_bytes(pickle.dumps(Runs(getattr, "text", "upper"), protocol=2)),
                       "a pickle (protocol 2) that imports builtins.getattr"),
}


def assert_whole_and_safe(message: str, path: Path, says: str) -> None:
    assert str(path) in message and says in message, message
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message, message
    assert short(message) == " ".join(message.split()), "the message would be cut"
    assert " ... (" not in message and message.rstrip().endswith((")", ".", "py", "torch.save")), message


@pytest.mark.parametrize("name", sorted(NOT_CHECKPOINTS))
def test_not_a_checkpoint_says_what_the_file_is(name, tmp_path, capsys):
    make, says = NOT_CHECKPOINTS[name]
    path = tmp_path / f"{name}.pt"
    make(path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert_whole_and_safe(str(err.value), path, says)
    assert run_cli(load_checkpoint, path) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and line.startswith(f"error: {path} is not a readable checkpoint: ")
    assert_whole_and_safe(line, path, says)


@pytest.mark.parametrize("name", sorted(NOT_CHECKPOINTS))
def test_not_a_weights_file_says_what_the_file_is(name, tmp_path):
    make, says = NOT_CHECKPOINTS[name]
    path = tmp_path / f"{name}.pth"
    make(path)
    with pytest.raises(WeightsError) as err:
        read_state_dict(path, "ResNet-18")
    message = str(err.value)
    assert_whole_and_safe(message, path, says)
    assert "(ResNet-18 weights expected)" in message


@pytest.mark.parametrize("name", sorted(NOT_CHECKPOINTS))
def test_masn_converter_says_what_the_file_is_not(name, tmp_path):
    make, says = NOT_CHECKPOINTS[name]
    path = tmp_path / f"{name}.pth"
    make(path)
    with pytest.raises(ValueError) as err:
        read_original(path)
    message = str(err.value)
    assert str(path) in message and "weights_only=False" not in message
    # the converter's own unpickler names the first global it refuses; other files are described
    refused = "refusing to load global" in message
    described = says.split(" that imports")[0] in message and "not a pickled MASN model or state_dict" in message
    assert refused or described, message
    assert refused == (name in ("pickle-os-system", "pickle-top-level-call", "pickle-memoized-module",
                                "torch-partial-eval")), message
    assert short(message) == " ".join(message.split()), message
