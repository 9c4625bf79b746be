"""engine.errors: the one rule every CLI follows (user error: one line, exit 2; bug: traceback)."""
from __future__ import annotations

import errno

import pytest
import torch

from engine.errors import EXIT_USER_ERROR, MAX_MESSAGE_CHARS, UserError, run_cli


def test_user_error_is_one_line_and_exit_2(capsys):
    def main():
        raise UserError("data/x.json: lacks key 'answer';\nadd it or regenerate the file")

    assert run_cli(main) == EXIT_USER_ERROR == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: data/x.json: lacks key")


def test_bug_keeps_its_traceback():
    def main():
        raise KeyError("internal")

    with pytest.raises(KeyError):
        run_cli(main)


def test_environment_errors_are_user_errors(capsys):
    def full_disk():
        raise OSError(errno.ENOSPC, "No space left on device", "/tmp/out.h5")

    def missing():
        open("/nonexistent/dir/file.json")

    assert run_cli(full_disk) == 2
    assert "/tmp/out.h5: no space left" in capsys.readouterr().err
    assert run_cli(missing) == 2
    assert "/nonexistent/dir/file.json" in capsys.readouterr().err


def test_long_messages_are_cut(capsys):
    def main():
        raise UserError("unknown values: " + " ".join(f"v{i}" for i in range(20000)))

    assert run_cli(main) == 2
    line = capsys.readouterr().err.strip()
    assert len(line) <= MAX_MESSAGE_CHARS + len("error: ")


def test_result_is_the_exit_status():
    assert run_cli(lambda: 1) == 1
    assert run_cli(lambda: {"acc": 0.5}) == 0
    assert run_cli(lambda a, b=0: a + b, 3, b=4) == 7


class _Broken(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        raise UserError(f"feats/v{i}.npy: holds NaN; re-extract it")


def test_errors_raised_in_a_dataloader_worker_keep_one_line(capsys):
    """PyTorch re-raises a worker's error with the worker's traceback in its text; the user sees the message."""
    def main():
        next(iter(torch.utils.data.DataLoader(_Broken(), num_workers=1)))

    assert run_cli(main) == 2
    assert capsys.readouterr().err == "error: feats/v0.npy: holds NaN; re-extract it\n"


def test_console_entry_points_name_callables():
    """Every [project.scripts] entry imports and is callable (a renamed cli() would break the install)."""
    import importlib
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+; pyproject also allows 3.10

    scripts = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts
    for target in scripts.values():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), target
