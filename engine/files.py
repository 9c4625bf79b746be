"""Files written so that a crash or a kill never leaves a half-written file in place of a good one.

``atomic_write`` is the one way the repository replaces a file: write beside it, fsync, rename, fsync
the folder. A kill between the first and the last step leaves a ``.<name>.<random>.tmp`` beside the
target; ``remove_stale_temporaries`` deletes those (and only those) when a run starts or resumes.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

_TMP_SUFFIX = ".tmp"
_TMP_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")  # 8 random characters (mkstemp's in older versions)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems cannot fsync a directory; the rename still holds
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path, tmp: Path | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (``tmp`` if given); on success fsync it and rename it over
    ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Named, not created: some writers need to create the file themselves (h5py mode "a").
    tmp = tmp or path.with_name(f".{path.name}.{secrets.token_hex(4)}{_TMP_SUFFIX}")
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp_path)`` then rename over ``path``: a crash leaves the old file intact."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the leftovers of interrupted :func:`atomic_write` calls in ``folder`` (not recursive)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if p.is_file() and _TMP_NAME.fullmatch(p.name)]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in ``chunk``-sized blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def cache_home() -> Path:
    """Where files derived from a user's inputs are kept between runs: ``$XDG_CACHE_HOME/avqa-repro``
    (default ``~/.cache/avqa-repro``), never beside the inputs in the user's data folders."""
    base = os.environ.get("XDG_CACHE_HOME") or ""
    return (Path(base) if Path(base).is_absolute() else Path.home() / ".cache") / "avqa-repro"


def distinct_names(paths: list[str | Path]) -> list[str]:
    """One output name per input path, never two alike: the file's stem, and where stems repeat as
    many of its folders as tell it apart (``a/x/test.json`` -> ``a_x_test``), else its position."""
    parts = [Path(p).with_suffix("").parts[1 if Path(p).anchor else 0:] for p in paths]  # no "/" part
    names = [part[-1] for part in parts]
    for depth in range(2, max(map(len, parts)) + 1):
        clash = {name for name in names if names.count(name) > 1}
        if not clash:
            break
        names = ["_".join(part[-depth:]) if name in clash else name for part, name in zip(parts, names)]
    if len(set(names)) < len(names):
        names = [f"{i}_{name}" for i, name in enumerate(names, start=1)]
    return names
